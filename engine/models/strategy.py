"""A model deployment's strategy: features in, ONNX out, signals with the model's fields (docs/models.md).

The runner (engine.strategy.runner) evaluates :class:`ModelStrategy` deployments in micro-batches: per
closed-bar batch it gathers, for every deployment of one model, the bars it may evaluate (the features are all
known, and the bar's IST date lies in one of the lessee's active leases, or the row is the owner's), runs the
model once on all their feature rows (:meth:`engine.models.runtime.ModelRuntime.predict`) and turns each
prediction into a signal with :meth:`ModelStrategy.intents_for`. :meth:`ModelStrategy.on_bar` does the same
for one bar, for callers that evaluate bar by bar.
"""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date
import numpy as np

from engine.domain import DAY_NS, IST_OFFSET_NS, Bar
from engine.models.features import BAR_FIELDS, feature_columns
from engine.models.runtime import Lease, ModelMeta, ModelRuntime
from engine.strategy.api import IndicatorView, Risk, SignalIntent, SignalType, Strategy

#: ``lease_for`` of a bar no lease covers
NOT_LEASED = "not_leased"


class ModelStrategy(Strategy):
    """One deployment of a model: ``leases`` None for the owner's row, else the lessee's leases of the model."""

    name = "ml_model"
    version = "1"

    def __init__(self, meta: ModelMeta, runtime: ModelRuntime, leases: list[Lease] | None,
                 risk: Risk | None = None) -> None:
        super().__init__(risk=risk)
        self.meta = meta
        self.model_runtime = runtime
        self.leases = leases
        self.feature_cols = feature_columns(meta.features)
        epoch = date(1970, 1, 1).toordinal()
        self._days = [(lease.start.toordinal() - epoch, lease.end.toordinal() - epoch) if lease.is_active else (1, 0)
                      for lease in leases or ()]  # IST day numbers since the epoch; an inactive lease covers none
        self.revision_extra = {"sha256": meta.sha256, "leases": None if leases is None else sorted(
            (lease.id, lease.start.isoformat(), lease.end.isoformat(), lease.is_active) for lease in leases)}

    def indicators(self) -> list[str]:
        return [f for f in self.meta.features if f.lower() not in BAR_FIELDS]

    def lease_for(self, bar: Bar) -> Lease | None | str:
        """The lease this bar runs under (None: the owner's row), or :data:`NOT_LEASED` (in market time: the bar's
        IST date)."""
        if self.leases is None:
            return None
        day = (bar.open_ns + IST_OFFSET_NS) // DAY_NS
        return next((lease for lease, (first, last) in zip(self.leases, self._days) if first <= day <= last),
                    NOT_LEASED)

    def features(self, ind: IndicatorView) -> list[float] | None:
        """The bar's feature values in the model's order; None while any is unknown (warm-up)."""
        values = [ind[c] for c in self.feature_cols]
        return None if any(math.isnan(v) for v in values) else values

    def intents_for(self, bar: Bar, ind: IndicatorView, side: str | None, confidence: float, values: list[float],
                    lease: Lease | None) -> list[SignalIntent]:
        if side is None:
            return []
        intent = self.intent(SignalType(side), bar, ind, min(1.0, max(0.0, confidence)), "model")
        market_data = {"model_id": self.meta.id, "model_sha256": self.meta.sha256,
                       "lease_id": None if lease is None else lease.id,
                       "features": dict(zip(self.meta.features, values))}
        return [replace(intent, market_data=market_data)]

    def on_bar(self, bar: Bar, ind: IndicatorView) -> list[SignalIntent]:
        lease = self.lease_for(bar)
        values = self.features(ind) if lease != NOT_LEASED else None
        if values is None:
            return []
        [(side, confidence)] = self.model_runtime.predict(np.asarray([values], dtype=np.float32))
        return self.intents_for(bar, ind, side, confidence, values, lease)  # type: ignore[arg-type]
