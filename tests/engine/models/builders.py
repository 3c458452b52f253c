"""Small ONNX models for the tests, built here from random data (scikit-learn + skl2onnx, or onnx.helper)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper


def classifier(width: int, *, zipmap: bool = True, seed: int = 7) -> bytes:
    """A 5-tree random forest over ``width`` float features, labels -1/1, as ONNX bytes."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.ensemble import RandomForestClassifier

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, width)).astype(np.float32)
    y = np.where(x[:, 0] + rng.normal(scale=0.3, size=200) > 0, 1, -1)
    clf = RandomForestClassifier(n_estimators=5, max_depth=4, random_state=seed).fit(x, y)
    options = None if zipmap else {id(clf): {"zipmap": False}}
    model = to_onnx(clf, initial_types=[("features", FloatTensorType([None, width]))], options=options,
                    target_opset={"": 17, "ai.onnx.ml": 3})
    return model.SerializeToString()


def regressor(width: int, *, seed: int = 3) -> bytes:
    """A linear regression over ``width`` float features, as ONNX bytes."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType
    from sklearn.linear_model import LinearRegression

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(100, width)).astype(np.float32)
    y = x @ np.arange(1, width + 1, dtype=np.float32) + 0.1
    model = to_onnx(LinearRegression().fit(x, y), initial_types=[("features", FloatTensorType([None, width]))],
                    target_opset={"": 17, "ai.onnx.ml": 3})
    return model.SerializeToString()


def custom_domain(width: int) -> bytes:
    """A graph whose only node is ``com.evil.Boom``: a kernel onnxruntime does not ship."""
    node = helper.make_node("Boom", ["features"], ["label"], domain="com.evil", name="boom")
    graph = helper.make_graph(
        [node], "evil",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, [None])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.evil", 1)])
    return model.SerializeToString()


def external_data(width: int) -> bytes:
    """A regression (x @ w) whose weights live in an external file ``weights.bin``."""
    weights = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[width, 1])
    weights.data_location = TensorProto.EXTERNAL
    entry = weights.external_data.add()
    entry.key, entry.value = "location", "weights.bin"
    node = helper.make_node("MatMul", ["features", "w"], ["value"])
    graph = helper.make_graph(
        [node], "outside",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [None, width])],
        [helper.make_tensor_value_info("value", TensorProto.FLOAT, [None, 1])], initializer=[weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    return model.SerializeToString()


def sha_of(model: bytes) -> str:
    import hashlib

    return hashlib.sha256(model).hexdigest()


__all__ = ["classifier", "custom_domain", "external_data", "onnx", "regressor", "sha_of"]
