"""Checks every backend shares: the UNet I/O contract, the batch limit, the spec from metadata, and what
precision an ONNX file holds (read off its protobuf without the onnx package, which the runtime lacks).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..contract import INPUT_NAMES, OUTPUT_NAMES, ModelSpec
from ..errors import DdpmEdgeError

BACKENDS = ("auto", "onnxruntime", "openvino", "tensorrt")
PRECISIONS = ("fp32", "bf16", "int8", "fp16")
# ops that only a quantized graph holds (ONNX QDQ / QLinear*, OpenVINO's FakeQuantize)
QUANT_OPS = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv",
                       "QLinearMatMul", "MatMulInteger", "ConvInteger", "FakeQuantize"})


def static_dim(dim) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def check_unet_io(label, inputs: dict[str, tuple[bool, list]], outputs: list[str]) -> None:
    """inputs: name → (is float32, shape with ints or None/str for dynamic dims); outputs: names.
    Refuses anything but x [N,C,H,W], t, c [N,k] float32 → eps."""
    if {"x", "c", "noise", "table", "k"} <= set(inputs) and "x_prev" in outputs:   # loop_graph's LOOP_INPUTS
        raise DdpmEdgeError(f"{label} is a fused sampling-loop model (ddpm-export --gpu-loop), not a plain UNet: "
                            "run it with ddpm-run --gpu-loop")
    if set(inputs) != set(INPUT_NAMES) or OUTPUT_NAMES[0] not in outputs:
        raise DdpmEdgeError(f"{label} is not a ddpm UNet: needs inputs x, t, c and output eps, "
                            f"has inputs {sorted(inputs)} and outputs {outputs}")
    for name in INPUT_NAMES:
        if not inputs[name][0]:
            raise DdpmEdgeError(f"{label}: input {name} is not float32")
    x_shape, c_shape = inputs["x"][1], inputs["c"][1]
    if len(x_shape) != 4 or len(c_shape) != 2:
        raise DdpmEdgeError(f"{label}: x must be rank 4 and c rank 2, got {x_shape} and {c_shape}")


def spec_from(meta: dict[str, str], x_shape: list, c_shape: list) -> ModelSpec:
    """The ModelSpec from metadata; shapes it lacks come off x [N,C,H,W] and c [N,n_cfeat]."""
    fallback = {k: v for k, v in zip(("channels", "height", "width"), map(static_dim, x_shape[1:4])) if v}
    if len(c_shape) == 2 and static_dim(c_shape[1]):
        fallback["n_cfeat"] = c_shape[1]
    return ModelSpec.from_metadata(meta, **fallback)


def batch_limit(fixed: int | None, max_batch: int | None) -> int | None:
    if max_batch is not None and max_batch < 1:
        raise DdpmEdgeError(f"max batch must be >= 1, got {max_batch}")
    return fixed or max_batch


def cpu_threads() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS/Windows
        return os.cpu_count() or 1


# --- ONNX protobuf, just enough to list metadata_props and node op types -----------------------------

def _varint(buf, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _fields(buf):
    """(field number, wire type, value) of a protobuf message; length-delimited values as memoryviews."""
    pos, end = 0, len(buf)
    while pos < end:
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 5:
            value, pos = None, pos + 4
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + size], pos + size
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if pos > end:
            raise ValueError("truncated message")
        yield number, wire, value


def onnx_summary(path: str | os.PathLike) -> tuple[dict[str, str], set[str]]:
    """(metadata_props, op types of the main graph) of an ONNX file. ModelProto: graph = 7,
    metadata_props = 14 (key 1, value 2); GraphProto: node = 1; NodeProto: op_type = 4."""
    buf = memoryview(Path(path).read_bytes())
    meta, ops = {}, set()
    try:
        for number, wire, value in _fields(buf):
            if number == 14 and wire == 2:
                entry = {k: bytes(v).decode() for k, w, v in _fields(value) if w == 2}
                meta[entry.get(1, "")] = entry.get(2, "")
            elif number == 7 and wire == 2:
                for n, w, node in _fields(value):
                    if n == 1 and w == 2:
                        ops.update(bytes(v).decode() for k, wt, v in _fields(node) if k == 4 and wt == 2)
    except (ValueError, IndexError, UnicodeDecodeError) as e:
        raise DdpmEdgeError(f"{path} is not a loadable ONNX model: {e}") from None
    return meta, ops


def graph_precision(meta: dict[str, str], ops: set[str]) -> str:
    """int8 when the graph holds quantization ops, else what its metadata says (fp32 or fp16)."""
    if ops & QUANT_OPS:
        return "int8"
    return meta.get("precision", "fp32") if meta.get("precision") in ("fp32", "fp16") else "fp32"


def check_choice(what: str, value, choices) -> None:
    if value is not None and value not in choices:
        raise DdpmEdgeError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")
