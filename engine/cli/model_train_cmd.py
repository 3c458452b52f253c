"""``sharewise model train``: train a classifier on a tick or bar file, store it as ONNX, record the run.

The training itself is :func:`engine.models.training.train` (features, labels, the time-ordered split,
the ONNX export and its check are described there). This command is the bookkeeping around it, written to
the database as it goes so the run can be watched from elsewhere:

1. the arguments are checked first (algorithm, features, timeframe, horizon): a typo costs no rows;
2. a model row (``ai_studio_mlmodel``, TRAINING) and its job (``ai_studio_trainingjob``, RUNNING, 0 %);
3. the file is read into closed bars of ``--timeframe`` the way ``sharewise backtest`` reads it;
4. training reports its progress; the job's ``progress`` and ``logs`` are written at most every
   :data:`WRITE_EVERY_S` seconds, and at each new 10 % step (every log entry is kept: ``{"at", "message",
   "progress"}``);
5. the ONNX file is stored under ``$SHAREWISE_HOME/models/<sha256>.onnx`` and checked like an import;
6. model COMPLETED, job COMPLETED at 100 %, and one ``ai_studio_computeusage`` row bills the CPU time at
   ``SHAREWISE_CPU_HOUR_PRICE`` — in one transaction.

A bad file, too few rows, or any other error marks the model FAILED and the job FAILED with the message
(exit 2 for a user error); Ctrl-C marks the job CANCELLED and the model FAILED (exit 130).

What the model row holds (``model show --json`` prints it):

* ``performance_metrics``: the validation part's accuracy, precision, recall, f1 (of "up") and ROC AUC;
* ``backtest_results``: the model's own calls on the validation part — how many BUY (label 1) and SELL
  (label -1) it predicted, the share of each that the labels bore out (``buy_hit_rate``, ``sell_hit_rate``;
  null without calls), ``hit_rate`` over all calls, and the validation period's first and last bar times.
  It is not a trading backtest (no fills, charges or P&L): ``sharewise backtest`` with a model strategy is;
* ``training_config``: what ``model import`` stores about the file (``db.models.onnx_config``) plus how it
  was trained: horizon, timeframe, row counts, the split time and the last training bar's time (always
  before it), the source file's name.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Callable, Coroutine, Mapping, Sequence, TypeVar

import numpy as np
import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from engine.cli.console import clean_errors, err, out
from engine.cli.environment import load_settings
from engine.cli.model_cmd import DEFAULT_LABELS
from engine.cli.orders_cmd import _print_json, _user_id
from engine.domain import IST, Bar, Timeframe, ns_to_datetime
from engine.errors import ConfigError, EngineError
from engine.settings import Settings

#: least seconds between two progress writes to the job row (a new 10 % step is written at once)
WRITE_EVERY_S = 0.5
HOURS = Decimal("0.0001")  # ai_studio_trainingjob.compute_hours is DECIMAL(8,4)
PAISA = Decimal("0.01")

T = TypeVar("T")


@clean_errors
def train_model(
    file: Path = typer.Argument(..., metavar="FILE.csv",
                                help="Ticks CSV (time,symbol,price,qty) or bars CSV "
                                     "(time,open,high,low,close,volume; optional symbol)."),
    owner: str = typer.Option(..., "--owner", help="Email of the user who owns the model."),
    name: str = typer.Option(..., "--name", help="The model's name."),
    algorithm: str = typer.Option(..., "--algorithm", help="RANDOM_FOREST, GRADIENT_BOOSTING or LOGISTIC_REGRESSION."),
    features: str = typer.Option(..., "--features",
                                 help="Input columns in order, comma separated: close, volume, rsi_14, ema(50), "
                                      "macd(12,26,9).hist …"),
    timeframe: str = typer.Option("5m", "--timeframe", "-t", help="Bar timeframe: 1m, 5m, 15m, 1h or 1d."),
    horizon: int = typer.Option(5, "--horizon", help="Bars ahead whose close the model predicts up (1) or not (-1)."),
    json_out: bool = typer.Option(False, "--json",
                                  help="Print {model_id, job_id, sha256, metrics, rows, compute_hours, cost}."),
) -> None:
    """Train a classifier on a tick or bar file; store it as ONNX; record the job, its progress and its compute."""
    from engine.models import feature_columns
    from engine.models.training import Algorithm

    algo = Algorithm.parse(algorithm)
    columns = feature_columns(features.split(","))
    tf = Timeframe.parse(timeframe)
    if horizon < 1:
        raise ConfigError(f"--horizon must be at least 1 bar, got {horizon}")
    if not name.strip():
        raise ConfigError("--name must not be empty")
    settings = load_settings()
    spec = _Spec(file=file, owner=owner, name=name.strip(), algorithm=algo.value, features=columns, timeframe=tf,
                 horizon=horizon)
    result = _run(settings, spec, show_bar=not json_out and err.is_terminal)
    if json_out:
        _print_json(result)
        return
    metrics = result["metrics"]
    err.print(f"trained model {result['model_id']} ({escape(spec.name)}, {spec.algorithm}) on "
              f"{result['rows']['train']} rows, validated on {result['rows']['validation']}: accuracy "
              f"{metrics['accuracy']:.3f}, f1 {metrics['f1']:.3f}; {result['compute_hours']} CPU hours, "
              f"₹{result['cost']}", soft_wrap=True)
    out.print(result["model_id"])


@dataclass(frozen=True, slots=True)
class _Spec:
    """What to train, checked."""

    file: Path
    owner: str
    name: str
    algorithm: str
    features: list[str]
    timeframe: Timeframe
    horizon: int


@dataclass(slots=True)
class ProgressLog:
    """Collects training steps and decides when to write them: every :data:`WRITE_EVERY_S` seconds, at each
    new 10 % step, never more often (a training step can be milliseconds apart from the next)."""

    write: Callable[[int, list[dict[str, Any]]], None]
    show: Callable[[int, str], None]
    clock: Callable[[], float] = time.monotonic
    every_s: float = WRITE_EVERY_S
    pending: list[dict[str, Any]] = field(default_factory=list)
    written: int = 0
    last_write: float = float("-inf")

    def __call__(self, percent: int, message: str) -> None:
        """Record one step; write the pending ones when it is time."""
        self.pending.append(log_entry(message, percent))
        self.show(percent, message)
        now = self.clock()
        if percent // 10 > self.written // 10 or now - self.last_write >= self.every_s:
            self.write(percent, self.drain())
            self.written, self.last_write = max(self.written, percent), now

    def drain(self) -> list[dict[str, Any]]:
        """The entries not written yet, handed over once."""
        entries, self.pending = self.pending, []
        return entries


def log_entry(message: str, progress: int | None = None) -> dict[str, Any]:
    """One entry of ``ai_studio_trainingjob.logs``: when (IST, ISO 8601), what, and the progress then."""
    entry: dict[str, Any] = {"at": datetime.now(IST).isoformat(timespec="milliseconds"), "message": message}
    if progress is not None:
        entry["progress"] = progress
    return entry


class _Database:
    """One connection on an event loop of its own, called synchronously between training steps.

    Training is CPU-bound and synchronous; running it on this thread, with the loop idle meanwhile, keeps
    Ctrl-C a plain KeyboardInterrupt in the training code (no executor thread to wait for).
    """

    def __init__(self, dsn: str) -> None:
        from db.connect import connect
        from db.migrate import migrate

        self._loop = asyncio.new_event_loop()
        try:
            self.run(migrate(dsn))
            self._conn = self.run(connect(dsn))
        except BaseException:
            self._loop.close()
            raise

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(work)

    def close(self) -> None:
        try:
            if not self._loop.is_closed() and not self._loop.is_running():
                self.run(self._conn.close(timeout=5))
        except Exception:  # the connection may already be gone; there is nothing left to save on it
            pass
        finally:
            self._loop.close()

    @property
    def conn(self) -> Any:
        return self._conn


def _run(settings: Settings, spec: _Spec, *, show_bar: bool) -> dict[str, Any]:
    """Train and record the run as the module docstring says; the --json document."""
    from engine.cli.runtime import services

    with services(settings, kafka=False) as rt:
        assert rt.dsn
        db = _Database(rt.dsn)
        try:
            return _train_and_record(settings, rt.dsn, db, spec, show_bar=show_bar)
        finally:
            db.close()


def _train_and_record(settings: Settings, dsn: str, db: _Database, spec: _Spec, *,
                      show_bar: bool) -> dict[str, Any]:
    from db.training import record_progress, start_training

    owner_id = db.run(_user_id(db.conn, spec.owner))
    hyperparameters = {"threshold": None, "labels": dict(DEFAULT_LABELS), "horizon": spec.horizon,
                       "timeframe": spec.timeframe.label}
    model_id, job_id = db.run(start_training(
        db.conn, owner_id=owner_id, name=spec.name, algorithm=spec.algorithm, features=spec.features,
        hyperparameters=hyperparameters, job_name=f"train {spec.name} ({spec.algorithm})",
        first_log=log_entry(f"job started: {spec.algorithm} on {spec.file.name}", 0)))
    cpu_start = time.process_time()
    columns = (TextColumn("training"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
               TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=err, disable=not show_bar, transient=True) as bar:
        task = bar.add_task("reading", total=100)

        def show(percent: int, message: str) -> None:
            bar.update(task, completed=percent, description=escape(message))
            if not show_bar:
                err.print(f"{percent:>3}% {escape(message)}", soft_wrap=True)

        progress = ProgressLog(write=lambda p, logs: db.run(record_progress(db.conn, job_id, p, logs)), show=show)
        try:
            stored = _train(settings, spec, progress)
        except KeyboardInterrupt:
            _give_up(dsn, model_id, job_id, "CANCELLED", "cancelled", progress.drain(), cpu_start)
            raise
        except EngineError as exc:
            _give_up(dsn, model_id, job_id, "FAILED", str(exc), progress.drain(), cpu_start)
            raise
        except Exception as exc:  # a bug or a broken library: still no model left TRAINING forever
            _give_up(dsn, model_id, job_id, "FAILED", f"{type(exc).__name__}: {exc}", progress.drain(), cpu_start)
            raise
    cpu_seconds = time.process_time() - cpu_start
    return _finish(settings, db, spec, owner_id, model_id, job_id, stored, cpu_seconds, progress.drain())


@dataclass(frozen=True, slots=True)
class _Stored:
    """A trained model, stored and checked, with what its rows need."""

    trained: Any  # engine.models.training.TrainedModel (imported lazily: scikit-learn is slow to load)
    info: Any  # engine.models.ModelInfo
    file_path: str
    backtest_results: dict[str, Any]


def _train(settings: Settings, spec: _Spec, progress: ProgressLog) -> _Stored:
    """Read the bars, train, store the ONNX file and check it like an import."""
    from engine.cli.files import bars_file
    from engine.cli.model_store import relative_path, store_model
    from engine.models import inspect_model
    from engine.models.training import train

    progress(0, f"reading {spec.file.name}")
    by_symbol = group_bars(bars_file(spec.file, spec.timeframe, settings.allowed_lateness_s))
    if not by_symbol:
        raise ConfigError(f"{spec.file}: no closed {spec.timeframe.label} bars to train on")
    bars = sum(len(b) for b in by_symbol.values())
    progress(0, f"read {bars} {spec.timeframe.label} bars of {len(by_symbol)} symbol(s)")
    trained = train(by_symbol, spec.features, spec.algorithm, spec.horizon, on_progress=progress)
    info = inspect_model(trained.onnx, model_type="CLASSIFICATION", features=spec.features,
                         max_bytes=settings.model_max_bytes)
    store_model(settings.home, trained.onnx)
    results = validation_calls(trained, by_symbol)
    results["backtest"] = validation_backtest(trained, by_symbol, spec.features, spec.timeframe)
    return _Stored(trained, info, relative_path(info.sha256), results)


def validation_backtest(trained: Any, by_symbol: Mapping[str, Sequence[Bar]], features: Sequence[str],
                        timeframe: Any) -> dict[str, Any]:
    """The exported model deployed on the file's bars through the backtest code (engine.strategy.backtest: the
    same runner and indicators as live, risk defaults), and the backtest statistics of its signals on the
    validation part (bars from the split time on); the training part only warms the indicators up."""
    import hashlib

    from engine.models.runtime import ModelMeta, ModelRuntime
    from engine.models.strategy import ModelStrategy
    from engine.strategy.api import Risk
    from engine.strategy.backtest import replay_bars, statistics
    from engine.strategy.runner import Deployment, StrategyRunner

    meta = ModelMeta("trained", "", "trained", hashlib.sha256(trained.onnx).hexdigest(), "CLASSIFICATION",
                     tuple(features))
    strategy = ModelStrategy(meta, ModelRuntime(meta, trained.onnx), None, Risk())
    runner = StrategyRunner([Deployment(strategy, "trained", frozenset({timeframe}))])
    bars = [b for series in by_symbol.values() for b in series]
    try:
        emitted = replay_bars(runner, bars)
    finally:
        runner.stop()
    later = [b for b in bars if b.open_ns >= trained.split_ns]
    signals = [e for e in emitted if e.bar.open_ns >= trained.split_ns]
    return {"signals": len(signals), "buy": sum(str(e.intent.signal_type) == "BUY" for e in signals),
            "sell": sum(str(e.intent.signal_type) == "SELL" for e in signals), "bars": len(later),
            **statistics(later, signals, timeframe)}


def group_bars(bars: Sequence[Bar]) -> dict[str, list[Bar]]:
    """Bars by symbol, each series in time order (a bars file may interleave symbols)."""
    grouped: dict[str, list[Bar]] = {}
    for b in bars:
        grouped.setdefault(b.symbol, []).append(b)
    return {s: sorted(series, key=lambda b: b.open_ns) for s, series in sorted(grouped.items())}


def validation_calls(trained: Any, by_symbol: Mapping[str, Sequence[Bar]]) -> dict[str, Any]:
    """``backtest_results``: the model's BUY/SELL calls on the validation rows against their labels.

    The labels are recomputed from the bars exactly as training defines them (``engine/models/training.py``:
    1 when the close ``horizon`` bars later is higher, else -1), since the trained model keeps only its calls.
    """
    position = {s: {b.open_ns: k for k, b in enumerate(series)} for s, series in by_symbol.items()}
    closes = {s: [b.close for b in series] for s, series in by_symbol.items()}
    h = trained.horizon
    actual = np.array([1 if closes[s][position[s][int(t)] + h] > closes[s][position[s][int(t)]] else -1
                       for s, t in zip(trained.validation_symbols, trained.validation_times)], dtype=np.int64)
    calls = np.asarray(trained.validation_predictions, dtype=np.int64)
    buy, sell = calls == 1, calls == -1

    def rate(mask: np.ndarray, label: int) -> float | None:
        return float(np.mean(actual[mask] == label)) if mask.any() else None

    times = trained.validation_times
    return {
        "holds": "the model's calls on the validation part vs its labels; 'backtest': its signals there through"
                 " the backtest code",
        "rows": int(len(calls)), "buy": int(buy.sum()), "sell": int(sell.sum()),
        "buy_hit_rate": rate(buy, 1), "sell_hit_rate": rate(sell, -1),
        "hit_rate": float(np.mean(calls == actual)) if len(calls) else None,
        "first_bar": _iso(int(times.min())), "last_bar": _iso(int(times.max())),
    }


def _finish(settings: Settings, db: _Database, spec: _Spec, owner_id: str, model_id: str, job_id: str,
            stored: _Stored, cpu_seconds: float, logs: list[dict[str, Any]]) -> dict[str, Any]:
    from db.models import onnx_config
    from db.training import finish_training

    t = stored.trained
    hours, cost = compute_cost(cpu_seconds, settings.cpu_hour_price)
    config = onnx_config(stored.info) | {
        "horizon": spec.horizon, "timeframe": spec.timeframe.label, "source_file": spec.file.name,
        "rows_train": t.train_rows, "rows_validation": t.validation_rows, "purged_rows": t.purged_rows,
        "dropped_rows": t.dropped_rows, "split_at": _iso(t.split_ns), "train_last_bar": _iso(t.train_last_ns),
        "train_label_end": _iso(t.train_label_end_ns), "onnx_disagreement": t.onnx_disagreement,
        "onnx_ties": t.onnx_ties,
    }
    usage = {"cpu_seconds": round(cpu_seconds, 3), "peak_rss_bytes": t.peak_rss_bytes, "rows_train": t.train_rows,
             "rows_validation": t.validation_rows}
    db.run(finish_training(
        db.conn, owner_id=owner_id, model_id=model_id, job_id=job_id, file_path=stored.file_path,
        model_size=stored.info.size, performance_metrics=t.validation_metrics,
        feature_importance=t.feature_importance, backtest_results=stored.backtest_results, training_config=config,
        training_metrics=t.train_metrics, logs=[*logs, log_entry("completed", 100)], resource_usage=usage,
        compute_hours=hours, cost=cost, usage_date=datetime.now(IST).date()))
    metrics = {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in t.validation_metrics.items()}
    return {"model_id": model_id, "job_id": job_id, "sha256": t.sha256, "metrics": metrics,
            "rows": {"train": t.train_rows, "validation": t.validation_rows}, "compute_hours": str(hours),
            "cost": str(cost)}


def compute_cost(cpu_seconds: float, price_per_hour: Decimal) -> tuple[Decimal, Decimal]:
    """(CPU hours to 4 places, cost in ₹ to the paisa), both rounded half-up.

    The cost is computed from the rounded hours, the figure stored beside it, so anyone reading the
    computeusage row gets ``cost = compute_hours × SHAREWISE_CPU_HOUR_PRICE`` back exactly.
    """
    hours = (Decimal(cpu_seconds) / 3600).quantize(HOURS, rounding=ROUND_HALF_UP)
    return hours, (hours * price_per_hour).quantize(PAISA, rounding=ROUND_HALF_UP)


def _give_up(dsn: str, model_id: str, job_id: str, status: str, error: str, logs: list[dict[str, Any]],
             cpu_start: float) -> None:
    """Mark the run failed on a fresh connection: the run's own may be mid-statement after a Ctrl-C."""
    from db.connect import connect
    from db.training import fail_training

    hours, _ = compute_cost(time.process_time() - cpu_start, Decimal(0))

    async def write() -> None:
        conn = await connect(dsn)
        try:
            await fail_training(conn, model_id=model_id, job_id=job_id, job_status=status, error=error,
                                logs=[*logs, log_entry(f"{status.lower()}: {error}")], compute_hours=hours)
        finally:
            await conn.close()

    asyncio.run(write())


def _iso(ts_ns: int) -> str:
    return ns_to_datetime(ts_ns, IST).isoformat()

