"""Train a classifier on bars and export it to ONNX: the core of leased ML models.

Pure: the caller hands in closed bars (it read the files or the database); nothing here opens a
file, a socket or a database. The steps, and why each is as it is:

* **Features** (:func:`feature_matrix`) are computed by the engine's own incremental indicators
  (:class:`engine.indicators.IndicatorSet`, TA-Lib parity), fed bar by bar in time order the way
  the live pipeline feeds them, so a model sees at training time exactly the values it will see
  live. A feature is a bar field (``open high low close volume``) or one indicator column in any
  spelling :func:`engine.indicators.parse` accepts (``rsi_14``, ``ema(50)``, ``macd_hist_12_26_9``).
* **Labels** (:func:`labels`): 1 when ``close[t + horizon] > close[t]``, else -1. A zero return is
  labelled -1: the question a model answers is "will it rise?", and keeping flat rows (common on
  illiquid 1m bars) keeps every bar's row instead of silently thinning quiet periods.
* **Split** (:func:`train`): rows of all symbols are pooled and ordered by bar time; the first 80 %
  train and the last 20 % validate, never shuffled. The cut is a bar time: every row at or after
  it validates, so one instant never sits on both sides. Training rows whose label window reaches
  the first validation bar (``open_ns`` of bar ``t + horizon`` >= the cut) are dropped ("purged"):
  their label would be computed from prices the validation part also sees, a look-ahead.
* **Fit**: a fixed ``random_state`` so the same bars give the same model and the same digest.
* **Export**: skl2onnx, one float input ``features`` ``[None, F]``, outputs ``label`` (int64 -1/1)
  and ``probabilities`` (float ``[N, 2]``, columns -1 then 1; no ZipMap, which would give a list of
  dicts a batch evaluator cannot use). The export is then run by onnxruntime on the validation rows
  and must agree with scikit-learn on at least 99.5 % of them (the rest are float32 rounding next
  to a threshold); a worse model raises :class:`~engine.errors.Inconsistency` and is never handed out.
"""

from __future__ import annotations

import hashlib
import math
import resource
import sys
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Callable, Mapping, Sequence

import numpy as np
import onnxruntime as ort
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.base import ClassifierMixin
from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from engine.domain import Bar
from engine.errors import ConfigError, Inconsistency
from engine.indicators import IndicatorSet, parse

#: bar fields usable as features, read from the bar itself
BAR_FIELDS = ("open", "high", "low", "close", "volume")
#: share of the time-ordered rows that train; the rest validate
TRAIN_SHARE = 0.8
#: fewest usable rows on each side of the split; below it metrics mean nothing
MIN_TRAIN_ROWS = 50
MIN_VALIDATION_ROWS = 20
#: most validation rows whose ONNX label may differ from scikit-learn's
MAX_DISAGREEMENT = 0.005
#: ONNX opsets of the export: the default domain and the ML domain (trees, linear classifiers).
#: onnxruntime >= 1.20 runs both; pinned so a newer skl2onnx cannot raise them past a runtime.
TARGET_OPSET = {"": 17, "ai.onnx.ml": 3}
INPUT_NAME = "features"
_BATCH = 1024  # bars per IndicatorSet.update call, as the backtest feeds them


class Algorithm(StrEnum):
    """The classifiers a model can be trained with."""

    RANDOM_FOREST = "RANDOM_FOREST"
    GRADIENT_BOOSTING = "GRADIENT_BOOSTING"
    LOGISTIC_REGRESSION = "LOGISTIC_REGRESSION"

    @classmethod
    def parse(cls, value: str) -> Algorithm:
        """``"random_forest"`` -> :attr:`RANDOM_FOREST`; ConfigError listing the known ones."""
        try:
            return cls(str(value).strip().upper())
        except ValueError:
            raise ConfigError(f"unknown algorithm {value!r}; use one of {', '.join(a.value for a in cls)}") from None


Progress = Callable[[int, str], None]


@dataclass(frozen=True, slots=True)
class TrainedModel:
    """A fitted model exported to ONNX, with what it scored and what it cost.

    ``validation_*`` arrays are aligned, one entry per validation row in (time, symbol) order:
    the bar's ``open_ns``, its symbol, the ONNX label (-1/1) and the ONNX probability of 1 (up),
    so a later backtest can replay the model's calls without running it again. ``split_ns`` is the
    first validation bar's time; ``train_last_ns`` the last training bar's and ``train_label_end_ns``
    the latest bar any training label reads (both before ``split_ns``: no look-ahead).
    ``onnx_disagreement`` is the share of validation rows where the ONNX label differs from
    scikit-learn's although scikit-learn's call was not a tie; ``onnx_ties`` the share where
    scikit-learn's probability was exactly 0.5 (a forest split 50/50: scikit-learn says -1, the
    float32 sum in ONNX may tip to 1; neither is wrong). Metrics are scikit-learn's.
    """

    algorithm: Algorithm
    features: tuple[str, ...]
    horizon: int
    onnx: bytes
    sha256: str
    train_metrics: dict[str, float]
    validation_metrics: dict[str, float]
    feature_importance: dict[str, float]
    train_rows: int
    validation_rows: int
    purged_rows: int
    dropped_rows: int
    split_ns: int
    train_last_ns: int
    train_label_end_ns: int
    validation_times: np.ndarray
    validation_symbols: tuple[str, ...]
    validation_predictions: np.ndarray
    validation_probabilities: np.ndarray
    onnx_disagreement: float
    onnx_ties: float
    cpu_seconds: float
    peak_rss_bytes: int


def feature_matrix(bars: Sequence[Bar], features: Sequence[str]) -> np.ndarray:
    """Each feature's value at each bar: float64 ``[len(bars), len(features)]``, NaN before warm-up.

    ``bars`` are one symbol's closed bars of one timeframe in time order. Indicators run through
    one fresh :class:`IndicatorSet` in micro-batches, the path of the live pipeline and the
    backtest, so the values are the live ones (state per indicator is independent of what else
    the set holds). Raises ConfigError for mixed series, bars out of order, an unknown feature or
    a spec with several outputs (``macd(12,26,9)``: name one, ``macd_hist_12_26_9``).
    """
    names = _check_features(features)
    _check_series(bars)
    n = len(bars)
    fields = np.array([(b.open, b.high, b.low, b.close, b.volume) for b in bars], dtype=np.float64).reshape(n, 5)
    if not np.isfinite(fields).all():
        raise ConfigError("feature_matrix: bar prices and volumes must be finite")
    out = np.empty((n, len(names)), dtype=np.float64)
    columns = {name: _column(name) for name in names if name.lower() not in BAR_FIELDS}
    if columns:
        indicators = IndicatorSet(list(dict.fromkeys(columns.values())), capacity=1)
        rows = np.empty((n, len(indicators.columns)), dtype=np.float64)
        for start in range(0, n, _BATCH):
            part = fields[start : start + _BATCH].T
            idx = np.zeros(part.shape[1], dtype=np.int64)
            rows[start : start + _BATCH] = indicators.update(idx, *(np.ascontiguousarray(c) for c in part))
    for j, name in enumerate(names):
        if name.lower() in BAR_FIELDS:
            out[:, j] = fields[:, BAR_FIELDS.index(name.lower())]
        else:
            out[:, j] = rows[:, indicators.columns.index(columns[name])]
    return out


def labels(closes: Sequence[float] | np.ndarray, horizon: int) -> np.ndarray:
    """int64 ``[len(closes) - horizon]``: 1 if ``close[t + horizon] > close[t]``, else -1 (a zero return too).

    The last ``horizon`` closes have no future and get no label (the array is shorter).
    """
    if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
        raise ConfigError(f"horizon must be an integer >= 1 (bars ahead), got {horizon!r}")
    c = np.asarray(closes, dtype=np.float64)
    if c.shape[0] <= horizon:
        return np.empty(0, dtype=np.int64)
    return np.where(c[horizon:] > c[:-horizon], 1, -1).astype(np.int64)


def train(
    bars_by_symbol: Mapping[str, Sequence[Bar]],
    features: Sequence[str],
    algorithm: Algorithm | str,
    horizon: int,
    *,
    on_progress: Progress | None = None,
    seed: int = 7,
) -> TrainedModel:
    """Fit ``algorithm`` to predict the sign of the ``horizon``-bar return from ``features``.

    Split, fit, export and check as the module docstring says. ``on_progress(percent, step)`` is
    called with non-decreasing percents from 0 to 100. Raises ConfigError for an unknown algorithm
    or feature, a bad horizon, or too few usable rows (with the counts), and Inconsistency when the
    ONNX export disagrees with scikit-learn.
    """
    cpu_start = time.process_time()
    report = on_progress or (lambda percent, step: None)
    algo = Algorithm.parse(algorithm)
    names = _check_features(features)
    labels([], horizon)  # validates the horizon
    report(0, "computing features")
    x, y, times, ends, symbols, dropped = _rows(bars_by_symbol, names, horizon, report)
    report(40, "splitting by time")
    split = _split(times, ends, len(y))
    train_idx, val_idx, split_ns, purged = split
    _check_rows(y, train_idx, val_idx, dropped, purged)
    x_train, y_train, x_val, y_val = x[train_idx], y[train_idx], x[val_idx], y[val_idx]
    report(45, f"fitting {algo.value} on {len(train_idx)} rows")
    model = _estimator(algo, seed)
    model.fit(x_train, y_train)
    report(75, "scoring")
    train_metrics = _metrics(model, x_train, y_train)
    validation_metrics = _metrics(model, x_val, y_val)
    importance = _importance(model, names)
    report(85, "exporting to ONNX")
    blob = export_onnx(model, len(names))
    report(90, "checking the ONNX export")
    onnx_labels, onnx_probabilities = run_onnx(blob, x_val)
    disagreement, ties = onnx_disagreement(model, x_val, onnx_labels)
    if disagreement > MAX_DISAGREEMENT:
        raise Inconsistency(f"ONNX export of {algo.value} disagrees with scikit-learn on "
                            f"{disagreement:.2%} of validation rows (at most {MAX_DISAGREEMENT:.1%} allowed)")
    report(100, "done")
    return TrainedModel(
        algorithm=algo, features=tuple(names), horizon=horizon, onnx=blob,
        sha256=hashlib.sha256(blob).hexdigest(), train_metrics=train_metrics,
        validation_metrics=validation_metrics, feature_importance=importance,
        train_rows=len(train_idx), validation_rows=len(val_idx), purged_rows=purged, dropped_rows=dropped,
        split_ns=split_ns, train_last_ns=int(times[train_idx].max()),
        train_label_end_ns=int(ends[train_idx].max()), validation_times=times[val_idx].copy(),
        validation_symbols=tuple(symbols[i] for i in val_idx), validation_predictions=onnx_labels,
        validation_probabilities=onnx_probabilities[:, 1].astype(np.float64),
        onnx_disagreement=disagreement, onnx_ties=ties, cpu_seconds=time.process_time() - cpu_start,
        peak_rss_bytes=_peak_rss_bytes(),
    )


def export_onnx(model: ClassifierMixin, n_features: int) -> bytes:
    """The ONNX bytes of a fitted classifier: input ``features`` float ``[None, n]``, outputs
    ``label`` int64 and ``probabilities`` float ``[None, 2]`` (no ZipMap)."""
    onx = convert_sklearn(
        model,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        options={"zipmap": False},
        target_opset=TARGET_OPSET,
        name="sharewise_model",  # skl2onnx's default is a random uuid: the same fit must give the same digest
    )
    return onx.SerializeToString()


def onnx_disagreement(model: ClassifierMixin, x: np.ndarray, onnx_labels: np.ndarray) -> tuple[float, float]:
    """(share of rows where ONNX and scikit-learn labels differ outside ties, share of ties) on ``x``.

    A tie is a row scikit-learn scores within 1e-6 of 0.5: its label there is argmax's first
    class, the ONNX one depends on float32 rounding of the sum of votes.
    """
    if not len(x):
        return 0.0, 0.0
    up = model.predict_proba(x)[:, list(model.classes_).index(1)]
    tie = np.abs(up - 0.5) <= 1e-6
    differ = onnx_labels != model.predict(x)
    return float(np.mean(differ & ~tie)), float(np.mean(tie))


def onnx_session(blob: bytes) -> ort.InferenceSession:
    """An onnxruntime session on one thread: a leased model shares its worker with the pipeline."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(blob, sess_options=options, providers=["CPUExecutionProvider"])


def run_onnx(blob: bytes, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels (int64) and probabilities (float32 ``[n, 2]``) of an exported model on rows ``x``."""
    if not len(x):
        return np.empty(0, dtype=np.int64), np.empty((0, 2), dtype=np.float32)
    label, probabilities = onnx_session(blob).run(None, {INPUT_NAME: np.ascontiguousarray(x, dtype=np.float32)})
    return np.asarray(label, dtype=np.int64), np.asarray(probabilities)


# --- helpers ---------------------------------------------------------------------------------


def _check_features(features: Sequence[str]) -> list[str]:
    names = [str(f).strip() for f in features]
    if not names:
        raise ConfigError("a model needs at least one feature")
    if len(set(n.lower() for n in names)) != len(names):
        raise ConfigError(f"features repeat a name: {', '.join(names)}")
    for name in names:
        if name.lower() not in BAR_FIELDS:
            _column(name)
    return names


def _column(name: str) -> str:
    """The single indicator column a feature names; ConfigError if it names none or several."""
    spec = parse(name)
    if len(spec.columns) != 1:
        raise ConfigError(f"feature {name!r} has {len(spec.columns)} outputs ({', '.join(spec.columns)}); "
                          "name one of them")
    return spec.columns[0]


def _check_series(bars: Sequence[Bar]) -> None:
    if not bars:
        return
    first = bars[0]
    last_ns = None
    for bar in bars:
        if bar.symbol != first.symbol or bar.timeframe is not first.timeframe:
            raise ConfigError(f"feature_matrix takes one series; got {first.symbol} {first.timeframe.label} "
                              f"and {bar.symbol} {bar.timeframe.label}")
        if last_ns is not None and bar.open_ns <= last_ns:
            raise ConfigError(f"bars of {bar.symbol} are not in time order at open_ns {bar.open_ns}")
        last_ns = bar.open_ns


def _rows(
    bars_by_symbol: Mapping[str, Sequence[Bar]], names: list[str], horizon: int, report: Progress
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str], int]:
    """Usable rows of every symbol in (time, symbol) order: features, labels, bar time, the open_ns
    of the label's last bar, symbols; and how many labelled rows were dropped for a NaN feature."""
    xs, ys, times, ends, symbols = [], [], [], [], []
    dropped = 0
    ordered = sorted(bars_by_symbol)
    for k, symbol in enumerate(ordered):
        bars = list(bars_by_symbol[symbol])
        if any(b.symbol != symbol for b in bars):
            raise ConfigError(f"bars given under {symbol!r} belong to another symbol")
        x = feature_matrix(bars, names)
        y = labels([b.close for b in bars], horizon)
        opens = np.array([b.open_ns for b in bars], dtype=np.int64)
        x = x[: len(y)]
        keep = ~np.isnan(x).any(axis=1)
        dropped += int(len(y) - keep.sum())
        xs.append(x[keep])
        ys.append(y[keep])
        times.append(opens[: len(y)][keep])
        ends.append(opens[horizon:][keep])
        symbols.extend([symbol] * int(keep.sum()))
        report(40 * (k + 1) // len(ordered), f"features of {symbol}")
    if not ys:
        return np.empty((0, len(names))), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), [], 0
    x_all, y_all = np.concatenate(xs), np.concatenate(ys)
    t_all, e_all = np.concatenate(times), np.concatenate(ends)
    sym = np.array(symbols, dtype=object)
    order = np.lexsort((sym, t_all))  # by time, then symbol
    return x_all[order], y_all[order], t_all[order], e_all[order], [symbols[i] for i in order], dropped


def _split(times: np.ndarray, ends: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """Training and validation row indices, the cut (first validation bar time), purged row count.

    Rows are already in time order. The cut is the time of the row at 80 %; rows at or after it
    validate. Earlier rows train unless their label's last bar opens at or after the cut.
    """
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64), 0, 0
    cut = int(times[min(int(math.floor(n * TRAIN_SHARE)), n - 1)])
    before = times < cut
    clean = before & (ends < cut)
    return np.flatnonzero(clean), np.flatnonzero(~before), cut, int(before.sum() - clean.sum())


def _check_rows(y: np.ndarray, train_idx: np.ndarray, val_idx: np.ndarray, dropped: int, purged: int) -> None:
    if len(train_idx) < MIN_TRAIN_ROWS or len(val_idx) < MIN_VALIDATION_ROWS:
        raise ConfigError(
            f"too few rows to train: {len(train_idx)} training and {len(val_idx)} validation rows "
            f"(need at least {MIN_TRAIN_ROWS} and {MIN_VALIDATION_ROWS}); {len(y)} bars had a label and every "
            f"feature defined, {dropped} were dropped during indicator warm-up, {purged} purged at the split. "
            "Give more bars or features with shorter windows")
    if len(np.unique(y[train_idx])) < 2:
        raise ConfigError(f"too few rows to train: all {len(train_idx)} training rows have label "
                          f"{int(y[train_idx][0])}; the horizon or the period gives no up and down moves")


def _estimator(algo: Algorithm, seed: int) -> ClassifierMixin:
    """The classifier of ``algo``; single-threaded, seeded. Logistic regression gets its features
    standardised first (prices and volumes differ by orders of magnitude; the scaler is part of
    the exported graph, so the ONNX model takes raw features too)."""
    if algo is Algorithm.RANDOM_FOREST:
        return RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1)
    if algo is Algorithm.GRADIENT_BOOSTING:
        return GradientBoostingClassifier(random_state=seed)
    return Pipeline([("scale", StandardScaler()), ("model", LogisticRegression(max_iter=1000, random_state=seed))])


def _metrics(model: ClassifierMixin, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """accuracy, precision, recall, f1 (of class 1, up) and ROC AUC; AUC is NaN when ``y`` has one class."""
    predicted = model.predict(x)
    up = model.predict_proba(x)[:, list(model.classes_).index(1)]
    auc = float(roc_auc_score(y, up)) if len(np.unique(y)) == 2 else float("nan")
    return {
        "accuracy": float(accuracy_score(y, predicted)),
        "precision": float(precision_score(y, predicted, pos_label=1, zero_division=0)),
        "recall": float(recall_score(y, predicted, pos_label=1, zero_division=0)),
        "f1": float(f1_score(y, predicted, pos_label=1, zero_division=0)),
        "roc_auc": auc,
    }


def _importance(model: ClassifierMixin, names: list[str]) -> dict[str, float]:
    """Impurity importances of trees; |coefficient| on standardised features for logistic regression."""
    final = model.steps[-1][1] if isinstance(model, Pipeline) else model
    if hasattr(final, "feature_importances_"):
        values = np.asarray(final.feature_importances_, dtype=np.float64)
    else:
        values = np.abs(np.asarray(final.coef_, dtype=np.float64)).ravel()
    return {name: float(v) for name, v in zip(names, values)}


def _peak_rss_bytes() -> int:
    """Peak resident set size of this process; ru_maxrss is KiB on Linux and bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)
