"""inspect_model and feature_columns: what a model file must be before the engine stores it."""

from __future__ import annotations

import hashlib
import io
import pickle
import zipfile

import pytest

from engine.errors import ConfigError
from engine.models import ModelRefused, feature_columns, inspect_model
from tests.engine.models.builders import classifier, custom_domain, external_data, regressor

FEATURES = ["close", "rsi_14", "ema(50)"]


@pytest.fixture(scope="module")
def forest() -> bytes:
    return classifier(3)


def test_a_random_forest_with_zipmap_is_accepted(forest):
    info = inspect_model(forest, model_type="CLASSIFICATION", features=FEATURES, max_bytes=10_000_000)
    assert info.sha256 == hashlib.sha256(forest).hexdigest() and info.size == len(forest)
    assert (info.input_name, info.label_output, info.probability_output, info.zipmap) == (
        "features", "output_label", "output_probability", True)


def test_a_random_forest_without_zipmap_says_its_classes():
    info = inspect_model(classifier(3, zipmap=False), model_type="CLASSIFICATION", features=FEATURES,
                         max_bytes=10_000_000)
    assert (info.label_output, info.probability_output, info.zipmap, info.classes) == (
        "label", "probabilities", False, 2)


def test_a_linear_regression_is_accepted():
    info = inspect_model(regressor(2), model_type="REGRESSION", features=["close", "volume"], max_bytes=10_000_000)
    assert info.label_output == "variable" and info.probability_output is None


@pytest.mark.parametrize("data, says", [
    (pickle.dumps({"a": 1}), "pickle"),
    (pickle.dumps({"a": 1}, protocol=0), "pickle"),
    (b"", "not an ONNX model"),
    (b"\x00\x01garbage not protobuf \xff\xfe", "not an ONNX model"),
])
def test_what_is_not_onnx_is_refused_unread(data, says):
    with pytest.raises(ModelRefused, match=says) as refused:
        inspect_model(data, model_type="CLASSIFICATION", features=FEATURES, max_bytes=10_000_000)
    assert "only ONNX files are accepted" in str(refused.value)
    assert isinstance(refused.value, ConfigError)


def test_a_zip_is_refused_as_an_archive():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model.pkl", pickle.dumps({"a": 1}))
    with pytest.raises(ModelRefused, match="zip or joblib"):
        inspect_model(buffer.getvalue(), model_type="CLASSIFICATION", features=FEATURES, max_bytes=10_000_000)


def test_a_pickle_is_never_loaded(monkeypatch):
    monkeypatch.setattr(pickle, "loads", lambda *a, **k: pytest.fail("a pickle was loaded"))
    with pytest.raises(ModelRefused, match="pickle"):
        inspect_model(pickle.dumps([1, 2]), model_type="REGRESSION", features=FEATURES, max_bytes=10_000_000)


def test_a_file_over_the_limit_is_refused(forest):
    with pytest.raises(ModelRefused, match=f"over the limit of {len(forest) - 1}"):
        inspect_model(forest, model_type="CLASSIFICATION", features=FEATURES, max_bytes=len(forest) - 1)


def test_a_custom_domain_is_refused_naming_it():
    with pytest.raises(ModelRefused, match="com.evil"):
        inspect_model(custom_domain(2), model_type="CLASSIFICATION", features=["close", "volume"], max_bytes=10_000)


def test_external_data_is_refused():
    with pytest.raises(ModelRefused, match="external file"):
        inspect_model(external_data(2), model_type="REGRESSION", features=["close", "volume"], max_bytes=10_000)


def test_a_wrong_input_width_says_both_shapes(forest):
    with pytest.raises(ModelRefused, match=r"must have shape \[N, 2\].*it has \[N, 3\]"):
        inspect_model(forest, model_type="CLASSIFICATION", features=["close", "volume"], max_bytes=10_000_000)


def test_a_regressor_is_no_classifier_and_back(forest):
    with pytest.raises(ModelRefused, match="REGRESSION model must have one output"):
        inspect_model(forest, model_type="REGRESSION", features=FEATURES, max_bytes=10_000_000)
    with pytest.raises(ModelRefused, match="needs a label output"):
        inspect_model(regressor(3), model_type="CLASSIFICATION", features=FEATURES, max_bytes=10_000_000)


def test_feature_columns_map_names_to_engine_columns():
    assert feature_columns(["Close", "volume", "rsi_14", "ema(50)", "macd_hist_12_26_9", "macd(12,26,9).signal"]) == [
        "close", "volume", "rsi_14", "ema_50", "macd_hist_12_26_9", "macd_signal_12_26_9"]


@pytest.mark.parametrize("names, says", [
    (["close", "moon_phase"], "'moon_phase' is unknown"),
    (["macd(12,26,9)"], "gives 3 columns"),
    (["ema(50)", "ema_50"], "repeats column ema_50"),
    ([], "at least one feature"),
])
def test_feature_columns_refuse(names, says):
    with pytest.raises(ModelRefused, match=says):
        feature_columns(names)


def test_the_size_limit_is_a_setting(tmp_path):
    from engine.settings import Settings

    assert Settings.from_env({}, default_home=tmp_path).model_max_bytes == 50 * 1024 * 1024
    assert Settings.from_env({"SHAREWISE_MODEL_MAX_BYTES": "1000"}, default_home=tmp_path).model_max_bytes == 1000
    with pytest.raises(ConfigError, match="SHAREWISE_MODEL_MAX_BYTES"):
        Settings.from_env({"SHAREWISE_MODEL_MAX_BYTES": "lots"}, default_home=tmp_path)


def test_store_model_is_idempotent_and_readers_check_the_hash(tmp_path, forest):
    import stat

    from engine.cli.model_store import read_model, relative_path, store_model

    path = store_model(tmp_path, forest)
    assert path == store_model(tmp_path, forest) == tmp_path / relative_path(hashlib.sha256(forest).hexdigest())
    assert stat.S_IMODE(path.stat().st_mode) == 0o644 and [p.name for p in path.parent.iterdir()] == [path.name]
    assert read_model(tmp_path, relative_path(hashlib.sha256(forest).hexdigest())) == forest
    path.write_bytes(b"changed")
    with pytest.raises(ConfigError, match="tampered"):
        read_model(tmp_path, relative_path(hashlib.sha256(forest).hexdigest()))
    assert store_model(tmp_path, forest).read_bytes() == forest  # a bad copy is replaced
    with pytest.raises(ConfigError, match="not one"):
        read_model(tmp_path, "../../etc/passwd")
