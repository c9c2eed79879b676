"""ONNX Runtime backend: `eps = OnnxUnet(path)(x, t, c)`.

CPU by default; the CUDA execution provider when the onnxruntime GPU build finds a GPU. The model's
metadata gives schedule, shapes and context names; a model without it (any graph with inputs x, t, c and
output eps) runs with the course defaults and shapes read off its inputs. Batches larger than a fixed
batch dimension (or `max_batch`) are split, the last chunk padded; results do not depend on the split.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..contract import OUTPUT_NAMES, ModelSpec, run_chunked
from ..errors import DdpmEdgeError, MissingDependency
from ..files import HashedFile
from ..limits import MAX_FIXED_BATCH, check_limit
from .common import batch_limit, check_unet_io, graph_precision, onnx_summary, spec_from, static_dim

DEVICES = ("auto", "cpu", "cuda")


def _import_ort():
    try:
        import onnxruntime
    except ImportError:  # pragma: no cover - exercised only without onnxruntime
        raise MissingDependency("onnxruntime is not installed: pip install onnxruntime (or onnxruntime-gpu)") from None
    if not os.environ.get("DDPM_EDGE_DEBUG"):
        onnxruntime.set_default_logger_severity(3)   # errors only: its coloured warnings would join our one line
    return onnxruntime


def providers_for(device: str) -> list[str]:
    ort = _import_ort()
    available = ort.get_available_providers()
    if device not in DEVICES:
        raise DdpmEdgeError(f"unknown device {device!r}; choose one of {', '.join(DEVICES)}")
    if device == "cuda" and "CUDAExecutionProvider" not in available:
        raise MissingDependency("device cuda needs the onnxruntime-gpu build; this onnxruntime has only "
                                + ", ".join(available))
    if device in ("auto", "cuda") and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


_static = static_dim


def open_session(model: str | os.PathLike | bytes, providers: list, label: str | os.PathLike,
                 threads: int | None = None):
    """An InferenceSession on `model` (a path, or serialized bytes), or a one-line reason naming `label`."""
    ort = _import_ort()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options, providers=providers)
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph/… types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DdpmEdgeError(f"{label} is not a loadable ONNX model: {first[:300]}") from None


def session_spec(session) -> ModelSpec:
    """The model's ModelSpec from its metadata; shapes it lacks are read off the x [N,C,H,W] and
    c [N,n_cfeat] inputs, the rest are the course defaults."""
    shapes = {i.name: i.shape for i in session.get_inputs()}
    return spec_from(session.get_modelmeta().custom_metadata_map, shapes.get("x", []), shapes.get("c", []))


def check_graph_contract(path: Path, spec: ModelSpec, inputs: dict, outputs: dict) -> None:
    """The graph's declared shapes must agree with its metadata and the I/O contract (contract.py);
    a dynamic (symbolic) dimension agrees with anything."""
    expected = spec.shapes()
    for name, node in [*inputs.items(), *((k, v) for k, v in outputs.items() if k == "eps")]:
        want = expected[name]
        shape = list(node.shape) if node.shape is not None else None
        if shape is None:
            continue
        if len(shape) != len(want) or any(_static(d) not in (None, w) for d, w in zip(shape[1:], want[1:])):
            raise DdpmEdgeError(f"{path}: {name} is declared {shape}, but the contract and its metadata say "
                                f"[N, {', '.join(map(str, want[1:]))}]")
    if outputs["eps"].type != "tensor(float)":
        raise DdpmEdgeError(f"{path}: output eps is {outputs['eps'].type}, expected tensor(float)")


class OnnxUnet(HashedFile):
    """`.precision` is read off the graph: int8 when it holds QDQ/QLinear nodes, else its metadata's
    fp32/fp16. ONNX Runtime runs a graph at the precision it was exported in; `precision`, when given,
    must be that one."""

    backend = "onnxruntime"

    def __init__(self, path: str | os.PathLike, device: str = "auto", max_batch: int | None = None,
                 threads: int | None = None, precision: str | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise DdpmEdgeError(f"model file not found: {self.path}")
        self.session = open_session(self.path, providers_for(device), self.path, threads)
        if device == "cuda" and "CUDAExecutionProvider" not in self.session.get_providers():
            raise MissingDependency("device cuda requested but onnxruntime could not use a CUDA GPU")
        self.providers = self.session.get_providers()
        inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        check_unet_io(self.path, {k: (i.type == "tensor(float)", i.shape) for k, i in inputs.items()}, outputs)
        x_shape = inputs["x"].shape
        self.spec = session_spec(self.session)
        check_graph_contract(self.path, self.spec, inputs, {o.name: o for o in self.session.get_outputs()})
        self.precision = graph_precision(*onnx_summary(self.path))
        if precision is not None and precision != self.precision:
            hint = {"bf16": "; bf16 runs on --backend openvino",
                    "int8": "; make an int8 model with ddpm-export --onnx unet.onnx --int8 -o unet_int8.onnx",
                    "fp16": "; make an fp16 model with ddpm-export --onnx unet.onnx --fp16, or use --backend openvino"}
            raise DdpmEdgeError(f"{self.path.name} is {self.precision}; onnxruntime runs it only at "
                                f"{self.precision}, not {precision}{hint.get(precision, '')}")
        fixed = _static(x_shape[0])
        if fixed is not None:
            check_limit(f"{self.path.name}: its fixed batch", fixed, MAX_FIXED_BATCH, "export it with a dynamic batch")
        self.fixed_batch = fixed
        self.max_batch = batch_limit(fixed, max_batch)

    def _run(self, x: np.ndarray, t: np.ndarray, c: np.ndarray) -> np.ndarray:
        try:
            (eps,) = self.session.run(list(OUTPUT_NAMES), {"x": x, "t": t, "c": c})
        except Exception as e:  # onnxruntime's own error types: the graph cannot run on contract inputs
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DdpmEdgeError(f"{self.path.name} fails on inputs of its own contract: {first[:300]}") from None
        return eps

    def __call__(self, x: np.ndarray, t: np.ndarray, c: np.ndarray) -> np.ndarray:
        # a graph with a fixed batch gets every chunk padded to it
        return run_chunked(self.spec, self._run, x, t, c, self.max_batch, self.fixed_batch or 1)
