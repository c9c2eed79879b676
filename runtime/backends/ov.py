"""OpenVINO backend (CPU): `eps = OpenVinoUnet(path, precision="bf16")(x, t, c)`.

Loads an ONNX UNet directly (run at fp32, bf16 or fp16) or an OpenVINO IR `.xml` (+ `.bin`) written by
`ddpm-export --int8 -o unet_int8.xml` (NNCF, run as int8). The precision is always explicit: OpenVINO's
CPU plugin otherwise picks bf16 on its own on CPUs that have it, and eps moves by ~1e-2. So
INFERENCE_PRECISION_HINT is always set (f32 for fp32 and for the float parts of an int8 model) and read
back from the compiled model; a device that does not honour it is refused, never silently changed.

An IR carries the ModelSpec metadata in rt_info["ddpm_edge"] (ONNX metadata_props are read off the
file), with `weights_sha256`, the hash of the `.bin`: the `.xml`'s sha256 then names the weights too.
Batch: the model is reshaped to a dynamic batch axis; PERFORMANCE_HINT LATENCY, one thread per core.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np

from ..contract import INPUT_NAMES, run_chunked
from ..errors import DdpmEdgeError, MissingDependency
from ..files import HashedFile, sha256_file
from .common import (QUANT_OPS, batch_limit, check_choice, check_unet_io, cpu_threads, graph_precision,
                     onnx_summary, spec_from)

IR_SUFFIXES = (".xml",)
RT_INFO_KEY = "ddpm_edge"
OV_PRECISIONS = ("fp32", "bf16", "fp16", "int8")
HINT_NAMES = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}   # ours → OpenVINO's element type name
INSTALL_HINT = "pip install 'ddpm-edge[openvino]'"


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise MissingDependency(f"--backend openvino needs the openvino package: {INSTALL_HINT}") from None
    return openvino


def ir_metadata(model) -> dict[str, str]:
    """rt_info["ddpm_edge"] of an OpenVINO model as a str dict (empty if absent)."""
    if not model.has_rt_info([RT_INFO_KEY]):
        return {}
    info = model.get_rt_info([RT_INFO_KEY])
    try:
        items = info.astype(dict).items()
    except Exception:  # older bindings return an RTMap-like object
        items = dict(info).items()
    return {str(k): str(v.astype(str) if hasattr(v, "astype") else v) for k, v in items}


def set_ir_metadata(model, meta: dict[str, str]) -> None:
    for key, value in meta.items():
        model.set_rt_info(str(value), [RT_INFO_KEY, key])


class OpenVinoUnet(HashedFile):
    backend = "openvino"

    def __init__(self, path: str | os.PathLike, device: str = "auto", max_batch: int | None = None,
                 precision: str | None = None, threads: int | None = None):
        check_choice("precision", precision, OV_PRECISIONS)
        if device not in ("auto", "cpu"):
            raise DdpmEdgeError(f"the openvino backend runs on the CPU; device {device!r} is not supported "
                                "(use --device cpu or auto)")
        self.path = Path(path)
        if not self.path.is_file():
            raise DdpmEdgeError(f"model file not found: {self.path}")
        ov = import_openvino()
        core = ov.Core()
        is_ir = self.path.suffix.lower() in IR_SUFFIXES
        if is_ir and not self.path.with_suffix(".bin").is_file():
            raise DdpmEdgeError(f"{self.path.name} needs its weights {self.path.with_suffix('.bin').name} beside it")
        try:
            model = core.read_model(str(self.path))
        except Exception as e:  # OpenVINO raises RuntimeError / its own types with long messages
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise DdpmEdgeError(f"{self.path} is not a loadable model for OpenVINO: {first[:300]}") from None
        inputs = {p.get_any_name(): p for p in model.inputs}
        outputs = [name for o in model.outputs for name in o.get_names()]
        check_unet_io(self.path, {k: (p.get_element_type() == ov.Type.f32,
                                      [d.get_length() if d.is_static else None for d in p.get_partial_shape()])
                                  for k, p in inputs.items()}, outputs)
        if is_ir:
            meta = ir_metadata(model)
            want = meta.get("weights_sha256")
            if want and sha256_file(self.path.with_suffix(".bin")) != want:
                raise DdpmEdgeError(f"{self.path.with_suffix('.bin').name} is not the weights {self.path.name} "
                                    "was written with (sha256 differs)")
            quantized = any(op.get_type_name() in QUANT_OPS for op in model.get_ops())
            stored = "int8" if quantized else meta.get("precision", "fp32")
        else:
            meta, ops = onnx_summary(self.path)
            stored = graph_precision(meta, ops)
        shapes = {k: [d.get_length() if d.is_static else None for d in p.get_partial_shape()] for k, p in inputs.items()}
        self.spec = spec_from(meta, shapes["x"], shapes["c"])
        self.precision = self._choose(stored, precision)
        # one dynamic batch axis, whatever the file fixed
        model.reshape({name: ov.PartialShape([-1, *self.spec.shapes(1)[name][1:]]) for name in INPUT_NAMES})
        hint_name = HINT_NAMES["fp32" if self.precision == "int8" else self.precision]
        import openvino.properties as props
        import openvino.properties.hint as hints
        config = {hints.inference_precision: getattr(ov.Type, hint_name),
                  hints.performance_mode: hints.PerformanceMode.LATENCY,
                  props.inference_num_threads: threads or cpu_threads()}
        try:
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise DdpmEdgeError(f"OpenVINO cannot compile {self.path.name} at {self.precision}: {first[:300]}") from None
        got = self.compiled.get_property(hints.inference_precision)
        if got != getattr(ov.Type, hint_name):
            raise DdpmEdgeError(f"this CPU does not run {self.precision} in OpenVINO (it compiled at {got.get_type_name()}); "
                                "choose --precision fp32")
        self.inference_precision = got.get_type_name()   # as read back: f32, bf16, f16
        self.threads = self.compiled.get_property(props.inference_num_threads)
        self.fixed_batch = None
        self.max_batch = batch_limit(None, max_batch)
        self._eps = self.compiled.output("eps")
        self._request = self.compiled.create_infer_request()
        self._lock = threading.Lock()

    def _choose(self, stored: str, precision: str | None) -> str:
        """The precision to run: int8 models run int8; float models at `precision` (default fp32)."""
        if stored == "int8":
            if precision not in (None, "int8"):
                raise DdpmEdgeError(f"{self.path.name} is an int8 model; it runs only as --precision int8")
            return "int8"
        if precision == "int8":
            raise DdpmEdgeError(f"{self.path.name} is {stored}, not int8; make an int8 model with "
                                "ddpm-export --onnx unet.onnx --int8 -o unet_int8.xml")
        if stored == "fp16":
            raise DdpmEdgeError(f"{self.path.name} is an fp16 graph (for CUDA/TensorRT); give OpenVINO the fp32 "
                                "model and --precision fp16 or bf16")
        return precision or "fp32"

    def _run(self, x: np.ndarray, t: np.ndarray, c: np.ndarray) -> np.ndarray:
        with self._lock:
            self._request.infer({"x": x, "t": t, "c": c})
            return self._request.get_tensor(self._eps).data.copy()   # the request reuses its buffer

    def __call__(self, x: np.ndarray, t: np.ndarray, c: np.ndarray) -> np.ndarray:
        return run_chunked(self.spec, self._run, x, t, c, self.max_batch)
