"""Training core: features are the engine's indicators, labels and the split never look ahead,
the ONNX export answers as scikit-learn does."""

from __future__ import annotations

import numpy as np
import pytest
import talib
from sklearn.ensemble import RandomForestClassifier

from engine.domain import Bar, Timeframe
from engine.errors import ConfigError
from engine.indicators import IndicatorSet
from engine.models.training import (
    MAX_DISAGREEMENT,
    Algorithm,
    TrainedModel,
    export_onnx,
    feature_matrix,
    labels,
    onnx_disagreement,
    run_onnx,
    train,
)

T0 = 1_767_584_700 * 10**9  # 2026-01-05 09:15 IST
MINUTE = 60 * 10**9
FEATURES = ["roc(1)", "rsi_14", "close", "macd_hist_12_26_9"]
METRICS = {"accuracy", "precision", "recall", "f1", "roc_auc"}


def momentum_bars(symbol: str, n: int, seed: int, start_ns: int = T0) -> list[Bar]:
    """1m bars whose returns follow an AR(1) with coefficient 0.4: last bar's return (``roc(1)``)
    weakly predicts the next one's sign, a pattern a classifier can learn."""
    rng = np.random.default_rng(seed)
    r = np.zeros(n)
    for t in range(1, n):
        r[t] = 0.4 * r[t - 1] + rng.normal(0.0, 0.01)
    close = 100.0 * np.exp(np.cumsum(r))
    opens = np.r_[close[0], close[:-1]]
    high = np.maximum(opens, close) * (1 + np.abs(rng.normal(0.0, 0.002, n)))
    low = np.minimum(opens, close) * (1 - np.abs(rng.normal(0.0, 0.002, n)))
    volume = rng.integers(100, 5000, n).astype(np.float64)
    return [Bar(symbol, Timeframe.M1, start_ns + k * MINUTE, float(opens[k]), float(high[k]), float(low[k]),
                float(close[k]), float(volume[k]), 1) for k in range(n)]


@pytest.fixture(scope="module")
def market() -> dict[str, list[Bar]]:
    # the second symbol starts later: the pooled rows interleave unevenly in time
    return {"INFY": momentum_bars("INFY", 1500, 1), "TCS": momentum_bars("TCS", 1300, 2, T0 + 200 * MINUTE)}


@pytest.fixture(scope="module")
def models(market: dict[str, list[Bar]]) -> dict[Algorithm, tuple[TrainedModel, list[tuple[int, str]]]]:
    trained = {}
    for algo in Algorithm:
        steps: list[tuple[int, str]] = []
        trained[algo] = train(market, FEATURES, algo, 3, on_progress=lambda p, s: steps.append((p, s)))
        trained[algo] = (trained[algo], steps)
    return trained


# --- features and labels ---------------------------------------------------------------------


def test_features_are_the_engine_indicators_with_talib_parity(market: dict[str, list[Bar]]) -> None:
    bars = market["INFY"]
    x = feature_matrix(bars, ["rsi_14", "ema(50)", "macd_hist_12_26_9", "close", "volume"])
    assert x.shape == (len(bars), 5) and x.dtype == np.float64
    close = np.array([b.close for b in bars])
    np.testing.assert_allclose(x[:, 0], talib.RSI(close, 14), rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(x[:, 1], talib.EMA(close, 50), rtol=1e-9, equal_nan=True)
    np.testing.assert_allclose(x[:, 2], talib.MACD(close, 12, 26, 9)[2], rtol=1e-9, atol=1e-12, equal_nan=True)
    assert np.array_equal(x[:, 3], close) and np.array_equal(x[:, 4], [b.volume for b in bars])
    # the same values as the live set fed one bar at a time
    live = IndicatorSet(["rsi(14)", "ema(50)", "macd(12,26,9)"], capacity=1)
    rows = np.vstack([live.update([0], b.open, b.high, b.low, b.close, b.volume) for b in bars])
    assert np.array_equal(x[:, 0], rows[:, 0], equal_nan=True)
    assert np.array_equal(x[:, 2], rows[:, live.columns.index("macd_hist_12_26_9")], equal_nan=True)


def test_feature_errors(market: dict[str, list[Bar]]) -> None:
    bars = market["INFY"][:50]
    with pytest.raises(ConfigError, match="3 outputs"):
        feature_matrix(bars, ["macd(12,26,9)"])
    with pytest.raises(ConfigError, match="unknown indicator"):
        feature_matrix(bars, ["nonsense(3)"])
    with pytest.raises(ConfigError, match="one series"):
        feature_matrix([*bars, market["TCS"][0]], ["close"])
    with pytest.raises(ConfigError, match="time order"):
        feature_matrix(bars[::-1], ["close"])


def test_labels_by_hand() -> None:
    closes = [10.0, 11.0, 11.0, 10.0, 12.0]
    assert labels(closes, 1).tolist() == [1, -1, -1, 1]  # 11 -> 11 is a zero return: -1
    assert labels(closes, 2).tolist() == [1, -1, 1]
    assert labels(closes, 5).tolist() == []
    with pytest.raises(ConfigError, match="horizon"):
        labels(closes, 0)


# --- training ----------------------------------------------------------------------------------


@pytest.mark.parametrize("algo", list(Algorithm))
def test_split_is_time_ordered_and_purged(models, market, algo: Algorithm) -> None:  # noqa: ANN001
    model, _ = models[algo]
    assert model.train_last_ns < model.split_ns == int(model.validation_times.min())
    assert model.train_label_end_ns < model.split_ns  # no training label reads a validation bar
    assert np.all(np.diff(model.validation_times) >= 0)
    total = sum(len(b) - 3 for b in market.values()) - model.dropped_rows
    assert model.train_rows + model.validation_rows + model.purged_rows == total
    assert model.purged_rows >= 3  # each symbol's last 3 rows before the cut
    assert 0.75 < model.train_rows / total < 0.81


@pytest.mark.parametrize("algo", list(Algorithm))
def test_metrics_importance_and_export(models, algo: Algorithm) -> None:  # noqa: ANN001
    model, _ = models[algo]
    for metrics in (model.train_metrics, model.validation_metrics):
        assert set(metrics) == METRICS and all(0.0 <= v <= 1.0 for v in metrics.values())
    assert set(model.feature_importance) == set(FEATURES)
    assert all(v >= 0 for v in model.feature_importance.values())
    assert model.onnx_disagreement <= MAX_DISAGREEMENT
    assert len(model.sha256) == 64 and model.onnx
    assert set(np.unique(model.validation_predictions)) <= {-1, 1}
    assert model.validation_predictions.shape == model.validation_probabilities.shape == (model.validation_rows,)
    assert model.cpu_seconds > 0 and model.peak_rss_bytes > 10**6


def test_the_pattern_is_learnt(models) -> None:  # noqa: ANN001
    model, _ = models[Algorithm.LOGISTIC_REGRESSION]
    assert model.validation_metrics["roc_auc"] > 0.55
    assert max(model.feature_importance, key=model.feature_importance.get) == "roc(1)"


def test_validation_predictions_are_the_onnx_models(models, market) -> None:  # noqa: ANN001
    model, _ = models[Algorithm.GRADIENT_BOOSTING]
    rows = {}
    for symbol, bars in market.items():
        x = feature_matrix(bars, FEATURES)
        rows.update({(b.open_ns, symbol): x[k] for k, b in enumerate(bars)})
    x_val = np.array([rows[(t, s)] for t, s in zip(model.validation_times, model.validation_symbols)])
    label, probabilities = run_onnx(model.onnx, x_val)
    assert np.array_equal(label, model.validation_predictions)
    assert np.allclose(probabilities[:, 1], model.validation_probabilities)


def test_onnx_agrees_with_sklearn() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2000, 8))
    y = np.where(x[:, 0] + 0.5 * x[:, 1] + rng.normal(0, 1, 2000) > 0, 1, -1)
    odd = RandomForestClassifier(n_estimators=21, random_state=7).fit(x[:1500], y[:1500])  # no 50/50 votes
    label, probabilities = run_onnx(export_onnx(odd, 8), x[1500:])
    assert label.dtype == np.int64
    assert float(np.mean(label != odd.predict(x[1500:]))) <= MAX_DISAGREEMENT
    np.testing.assert_allclose(probabilities, odd.predict_proba(x[1500:]), atol=1e-5)
    even = RandomForestClassifier(n_estimators=20, random_state=7).fit(x[:1500], y[:1500])
    label, _ = run_onnx(export_onnx(even, 8), x[1500:])
    disagreement, ties = onnx_disagreement(even, x[1500:], label)
    assert disagreement <= MAX_DISAGREEMENT and ties > 0  # every difference is a 50/50 vote


def test_progress_goes_from_0_to_100(models) -> None:  # noqa: ANN001
    for _, steps in models.values():
        percents = [p for p, _ in steps]
        assert percents[0] == 0 and percents[-1] == 100
        assert percents == sorted(percents) and len(set(percents)) >= 6


def test_same_bars_same_model(market) -> None:  # noqa: ANN001
    first = train(market, FEATURES, "logistic_regression", 3)
    again = train(market, FEATURES, Algorithm.LOGISTIC_REGRESSION, 3)
    assert first.sha256 == again.sha256


def test_unknown_algorithm(market) -> None:  # noqa: ANN001
    with pytest.raises(ConfigError, match="unknown algorithm 'SVM'"):
        train(market, FEATURES, "SVM", 1)


def test_too_few_rows(market) -> None:  # noqa: ANN001
    short = {"INFY": market["INFY"][:80]}
    with pytest.raises(ConfigError, match=r"too few rows to train: \d+ training and \d+ validation rows"):
        train(short, FEATURES, Algorithm.RANDOM_FOREST, 1)
