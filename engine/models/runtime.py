"""Leased ML models at run time: an ONNX model's session, its deployments' windows, evaluation in micro-batches.

* :class:`ModelRuntime` — one onnxruntime session per model file, shared by every deployment of the model:
  the file's sha256 is checked before it is loaded (a tampered file is refused), the session runs on one
  thread with no custom-op library, and :meth:`ModelRuntime.predict` evaluates a whole micro-batch of feature
  rows in one run, turning the outputs into a side and a confidence per row (docs/models.md):
  CLASSIFICATION maps the predicted label through ``labels`` (default ``{"1": "BUY", "-1": "SELL"}``) with the
  label's probability as confidence (with a ``threshold``, a lower probability gives no side); REGRESSION gives BUY at r ≥ threshold, SELL at r ≤ −threshold and
  confidence min(1, |r| / (2 × threshold)).
* :class:`Lease` and :class:`ModelCatalog` — what the loader needs to build a model deployment: the models by
  id (with their runtime) and the leases, so a lessee's row runs only on bars whose IST date lies in an active
  lease, checked in market time (engine.models.strategy).

Only ONNX is ever loaded; the bytes come from the caller (the core reads no file).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Mapping

import numpy as np

from engine.errors import ConfigError

DEFAULT_LABELS = {"1": "BUY", "-1": "SELL"}


@dataclass(frozen=True, slots=True)
class ModelMeta:
    """An ``ai_studio_mlmodel`` row as deployments need it."""

    id: str
    owner_id: str
    name: str
    sha256: str
    model_type: str  # CLASSIFICATION | REGRESSION
    features: tuple[str, ...]
    threshold: float | None = None
    labels: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_LABELS))


@dataclass(frozen=True, slots=True)
class Lease:
    """An ``ai_studio_modellease`` row: ``lessee_id`` may run ``model_id`` on bars dated ``start``..``end`` (IST)."""

    id: str
    model_id: str
    lessee_id: str
    start: date
    end: date
    is_active: bool = True

    def covers(self, day: date) -> bool:
        return self.is_active and self.start <= day <= self.end


class ModelRuntime:
    """One model's onnxruntime session (see the module docstring)."""

    def __init__(self, meta: ModelMeta, data: bytes) -> None:
        import onnxruntime as ort

        if hashlib.sha256(data).hexdigest() != meta.sha256:
            raise ConfigError(f"model {meta.id} ({meta.name}): the stored file does not match its sha256 {meta.sha256}:"
                              " it was altered; refusing to load it")
        if meta.model_type == "REGRESSION" and not (meta.threshold and meta.threshold > 0):
            raise ConfigError(f"model {meta.id} ({meta.name}): a REGRESSION model needs a threshold > 0")
        self.meta = meta
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            self.session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
            raise ConfigError(f"model {meta.id} ({meta.name}) cannot be loaded: {exc}") from None
        [self.input] = [i.name for i in self.session.get_inputs()]
        outputs = self.session.get_outputs()
        if meta.model_type == "CLASSIFICATION":
            self.label_index = next(i for i, o in enumerate(outputs) if o.type in ("tensor(int64)", "tensor(string)"))
            self.prob_index = next((i for i, o in enumerate(outputs) if i != self.label_index), None)
        else:
            self.label_index = next(i for i, o in enumerate(outputs) if o.type in ("tensor(float)", "tensor(double)"))
            self.prob_index = None
        self.runs = 0

    def predict(self, rows: np.ndarray) -> list[tuple[str | None, float]]:
        """(side or None, confidence) of each feature row (float32 [n, F]), in one session run."""
        out = self.session.run(None, {self.input: np.ascontiguousarray(rows, dtype=np.float32)})
        self.runs += 1
        if self.meta.model_type != "CLASSIFICATION":
            assert self.meta.threshold is not None
            t = self.meta.threshold
            values = np.asarray(out[self.label_index], dtype=np.float64).reshape(len(rows), -1)[:, 0]
            return [("BUY" if r >= t else "SELL" if r <= -t else None, min(1.0, abs(float(r)) / (2 * t)))
                    for r in values]
        labels = np.asarray(out[self.label_index]).reshape(-1)
        probs = out[self.prob_index] if self.prob_index is not None else None
        result = []
        floor = self.meta.threshold or 0.0
        for i, label in enumerate(labels.tolist()):
            key = label if isinstance(label, str) else str(int(label))
            confidence = _confidence(probs, i, label)
            result.append((self.meta.labels.get(key) if confidence >= floor else None, confidence))
        return result


def _confidence(probs: Any, i: int, label: Any) -> float:
    """The predicted label's probability: from skl2onnx's ZipMap (a list of {label: p}) or a [n, C] tensor
    (whose largest column is the predicted label's); 1.0 when the model gives none."""
    if probs is None:
        return 1.0
    if isinstance(probs, list):
        row = probs[i]
        return float(row.get(label, max(row.values())))
    return float(np.max(np.asarray(probs)[i]))


@dataclass(slots=True)
class ModelCatalog:
    """The models (with runtimes) and leases a loader can deploy; ``errors``: models that could not be loaded,
    by id, with the reason (a row naming one is an invalid row saying it)."""

    models: dict[str, tuple[ModelMeta, ModelRuntime]] = field(default_factory=dict)
    leases: list[Lease] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    def leases_of(self, model_id: str, user_id: str) -> list[Lease]:
        return [lease for lease in self.leases if lease.model_id == model_id and lease.lessee_id == user_id]
