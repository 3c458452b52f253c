"""What makes a model file acceptable: an ONNX graph of the standard operator sets, nothing else.

A leased model comes from another user, so its file is untrusted input. Pickle and joblib files run
code when loaded; they are recognised by their first bytes and refused before any parser sees them.
An ONNX graph is data, but custom operator domains would load native code into the runtime, and
external tensors would make it read other files, so both are refused too. What remains must also fit
how the engine calls a model: one float32 input of ``[N, F]`` (one row per bar, one column per
feature) and the outputs of a classifier or a regressor.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import onnx
from onnx import TensorProto

from engine.errors import ConfigError

#: operator domains whose kernels ship with onnxruntime itself ("" and "ai.onnx" are the same domain)
ALLOWED_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
MODEL_TYPES = ("CLASSIFICATION", "REGRESSION")
#: the default of ``SHAREWISE_MODEL_MAX_BYTES``
DEFAULT_MAX_BYTES = 50 * 1024 * 1024

_ONLY_ONNX = "only ONNX files are accepted (export with skl2onnx, tf2onnx or torch.onnx)"
#: the opcodes a protocol-0 (text) pickle starts with: MARK, GLOBAL, a dict/list/tuple/None/int/string
_TEXT_PICKLE = (b"(", b"c", b"}", b"]", b")", b"N", b"I", b"S'", b"V", b"(dp", b"(lp")


class ModelRefused(ConfigError):
    """A model file the engine will not store or run; the message says why."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the engine needs to know about an accepted model file."""

    #: hex sha256 of the file's bytes: its name in storage
    sha256: str
    size: int
    input_name: str
    #: the classifier's label output, or the regressor's value output
    label_output: str
    #: the classifier's probability output (None for a regressor, or a classifier without one)
    probability_output: str | None = None
    #: whether the probabilities are skl2onnx's ZipMap (a sequence of {class: probability})
    zipmap: bool = False
    #: number of classes when the graph says it
    classes: int | None = None


def inspect_model(data: bytes, *, model_type: str, features: list[str],
                  max_bytes: int = DEFAULT_MAX_BYTES) -> ModelInfo:
    """Check ``data`` is an ONNX model the engine may run with ``features`` as its input columns.

    Raises :class:`ModelRefused` with the first reason found; nothing in ``data`` is executed.
    """
    if model_type not in MODEL_TYPES:
        raise ModelRefused(f"model type must be one of {', '.join(MODEL_TYPES)}, got {model_type!r}")
    _refuse_code_formats(data)
    if len(data) > max_bytes:
        raise ModelRefused(f"the model is {len(data)} bytes, over the limit of {max_bytes} "
                           f"(SHAREWISE_MODEL_MAX_BYTES)")
    try:
        model = onnx.load_model_from_string(data)
    except Exception:  # protobuf raises DecodeError, or others for garbage: all mean "not ONNX"
        raise ModelRefused(f"not an ONNX model (the file does not parse as one); {_ONLY_ONNX}") from None
    if not model.HasField("graph") or not model.opset_import:
        raise ModelRefused(f"not an ONNX model (no graph or no opset); {_ONLY_ONNX}")
    _check_domains(model)
    _check_no_external_data(model)
    try:
        onnx.checker.check_model(model, full_check=False)
    except Exception as exc:  # ValidationError, or a C++ error surfaced as another type
        raise ModelRefused(f"the ONNX model is invalid: {_first_line(exc)}") from None
    input_name = _check_input(model.graph, len(features))
    outputs = model.graph.output
    if model_type == "REGRESSION":
        return ModelInfo(hashlib.sha256(data).hexdigest(), len(data), input_name, _regression_output(outputs))
    label, probability, zipmap, classes = _classifier_outputs(outputs)
    return ModelInfo(hashlib.sha256(data).hexdigest(), len(data), input_name, label, probability, zipmap, classes)


def _refuse_code_formats(data: bytes) -> None:
    """Refuse the formats that run code when loaded, by their magic bytes alone."""
    if data.startswith(b"\x80"):  # the PROTO opcode of every binary pickle (protocol 2 and later)
        raise ModelRefused(f"not an ONNX model (it looks like a pickle, which runs code when loaded); {_ONLY_ONNX}")
    if data.startswith(b"PK\x03\x04"):
        raise ModelRefused(f"not an ONNX model (it looks like a zip or joblib archive, which may hold a pickle); "
                           f"{_ONLY_ONNX}")
    if data.startswith(_TEXT_PICKLE) and data.rstrip().endswith(b"."):
        raise ModelRefused(f"not an ONNX model (it looks like a text pickle, which runs code when loaded); "
                           f"{_ONLY_ONNX}")


def _check_domains(model: onnx.ModelProto) -> None:
    for opset in model.opset_import:
        if opset.domain not in ALLOWED_DOMAINS:
            raise ModelRefused(f"the model imports operator domain {opset.domain!r}: only the standard "
                               f"domains (ai.onnx, ai.onnx.ml) are accepted")
    if model.functions:
        raise ModelRefused("the model defines its own functions: only standard operators are accepted")
    for node in _nodes(model.graph):
        if node.domain not in ALLOWED_DOMAINS:
            raise ModelRefused(f"node {node.name or node.op_type!r} uses operator {node.op_type!r} of domain "
                               f"{node.domain!r}: only the standard domains (ai.onnx, ai.onnx.ml) are accepted")


def _nodes(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Every node of ``graph`` and of the subgraphs of its If/Loop/Scan nodes."""
    found = []
    for node in graph.node:
        found.append(node)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                found.extend(_nodes(attr.g))
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    found.extend(_nodes(sub))
    return found


def _check_no_external_data(model: onnx.ModelProto) -> None:
    """Tensors stored outside the file would make the runtime open paths the file names."""
    graphs = [model.graph]
    while graphs:
        graph = graphs.pop()
        tensors = list(graph.initializer) + [s.values for s in graph.sparse_initializer]
        for node in graph.node:
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    tensors.append(attr.t)
                elif attr.type == onnx.AttributeProto.TENSORS:
                    tensors.extend(attr.tensors)
                elif attr.type == onnx.AttributeProto.GRAPH:
                    graphs.append(attr.g)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    graphs.extend(attr.graphs)
        for tensor in tensors:
            if tensor.data_location == TensorProto.EXTERNAL or len(tensor.external_data):
                raise ModelRefused(f"tensor {tensor.name!r} keeps its data in an external file: only "
                                   f"self-contained ONNX files are accepted")


def _dims(value: onnx.ValueInfoProto) -> list[int | None] | None:
    """The shape of a tensor value, a symbolic or unknown dimension as None; None when no shape is given."""
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]


def _shape_text(dims: list[int | None] | None) -> str:
    return "unknown" if dims is None else "[" + ", ".join("N" if d is None else str(d) for d in dims) + "]"


def _check_input(graph: onnx.GraphProto, width: int) -> str:
    initialised = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initialised]
    if len(inputs) != 1:
        raise ModelRefused(f"the model must have exactly one input (one row of features per bar), "
                           f"it has {len(inputs)}: {', '.join(i.name for i in inputs) or 'none'}")
    (value,) = inputs
    if value.type.WhichOneof("value") != "tensor_type":
        raise ModelRefused(f"input {value.name!r} must be a float32 tensor [N, {width}]")
    elem = value.type.tensor_type.elem_type
    if elem != TensorProto.FLOAT:
        raise ModelRefused(f"input {value.name!r} must be float32, it is "
                           f"{TensorProto.DataType.Name(elem).lower()}")
    dims = _dims(value)
    if dims is None or len(dims) != 2 or dims[1] != width:
        raise ModelRefused(f"input {value.name!r} must have shape [N, {width}] (one column per feature), "
                           f"it has {_shape_text(dims)}")
    return value.name


def _regression_output(outputs: list[onnx.ValueInfoProto]) -> str:
    if len(outputs) != 1:
        raise ModelRefused(f"a REGRESSION model must have one output, it has {len(outputs)}")
    (value,) = outputs
    if value.type.WhichOneof("value") != "tensor_type" or value.type.tensor_type.elem_type not in (
            TensorProto.FLOAT, TensorProto.DOUBLE):
        raise ModelRefused(f"the output {value.name!r} of a REGRESSION model must be a float tensor")
    dims = _dims(value)
    if dims is not None and not _is_column(dims):
        raise ModelRefused(f"the output {value.name!r} of a REGRESSION model must have shape [N] or [N, 1], "
                           f"it has {_shape_text(dims)}")
    return value.name


def _is_column(dims: list[int | None]) -> bool:
    return len(dims) == 1 or (len(dims) == 2 and dims[1] in (1, None))


def _classifier_outputs(outputs: list[onnx.ValueInfoProto]) -> tuple[str, str | None, bool, int | None]:
    """(label output, probability output, zipmap, classes) of a classifier's outputs."""
    label: str | None = None
    probability: str | None = None
    zipmap = False
    classes: int | None = None
    for value in outputs:
        kind = value.type.WhichOneof("value")
        if kind == "tensor_type":
            elem, dims = value.type.tensor_type.elem_type, _dims(value)
            if label is None and elem in (TensorProto.INT64, TensorProto.STRING) and (dims is None or _is_column(dims)):
                label = value.name
            elif probability is None and elem in (TensorProto.FLOAT, TensorProto.DOUBLE) and (
                    dims is None or len(dims) == 2):
                probability = value.name
                classes = dims[1] if dims else None
        elif kind == "sequence_type" and probability is None:
            elem_type = value.type.sequence_type.elem_type
            if elem_type.WhichOneof("value") == "map_type":
                probability, zipmap = value.name, True
    if label is None:
        shown = ", ".join(f"{v.name} ({_describe(v)})" for v in outputs) or "none"
        raise ModelRefused(f"a CLASSIFICATION model needs a label output (int64 or string, shape [N] or [N, 1]); "
                           f"its outputs: {shown}")
    return label, probability, zipmap, classes


def _describe(value: onnx.ValueInfoProto) -> str:
    kind = value.type.WhichOneof("value")
    if kind == "tensor_type":
        elem = TensorProto.DataType.Name(value.type.tensor_type.elem_type).lower()
        return f"{elem} {_shape_text(_dims(value))}"
    return kind.removesuffix("_type") if kind else "untyped"


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__
