"""fp32 ONNX → fp16 ONNX for CUDA and TensorRT, behind a quality gate.

The conversion is a graph pass (no extra dependency):

    x, t, c  float32 ──Cast→fp16──▶  convs, GEMMs, GELU (Erf), pools … in fp16  ──Cast→fp32──▶ eps float32
    normalisation nodes (InstanceNormalization = the exporter's GroupNorm, BatchNormalization,
    GroupNormalization, LayerNormalization): fp32 in, fp32 parameters, fp32 out, Casts around them

so the I/O contract (ModelSpec: float32 x, t, c → eps) holds and the metadata says precision=fp16.
BatchNorm is already folded into the convolutions by the exporter. TensorRT 11 builds strongly typed
networks, so these Casts are what decides its precision.

The gate: DDIM-25 from the same seeded noise through the fp32 and the fp16 graph (ONNX Runtime; its CPU
provider runs this fp16 graph, so the gate runs anywhere), PSNR of the fp16 sprites against the fp32
ones on the reference's [-1, 1] range (clipped, peak-to-peak 2). Below `min_psnr` nothing is written.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ddpm_edge.runtime.contract import INPUT_NAMES, OUTPUT_NAMES, ModelSpec
from ddpm_edge.runtime.errors import DdpmEdgeError, ValidationFailed
from ddpm_edge.runtime.files import atomic_path, check_writable

from ddpm_edge.runtime.backends.loop_graph import checked

from .onnx_export import read_onnx

NORM_OPS = frozenset({"InstanceNormalization", "BatchNormalization", "GroupNormalization", "LayerNormalization"})
MIN_PSNR = 35.0
GATE_SAMPLES = 16
GATE_STEPS = 25
GATE_SEED = 0


@dataclass
class Fp16Result:
    path: Path
    psnr_db: float
    size_bytes: int


def to_fp16(proto, keep_fp32_ops=NORM_OPS):
    """A converted copy of an fp32 UNet ModelProto (see module doc). The input is not modified."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    graph = model.graph
    if any(node.domain not in ("", "ai.onnx") for node in graph.node) or len(model.functions):
        raise DdpmEdgeError("fp16 conversion supports plain ONNX graphs only (no custom domains or functions)")
    meta = {p.key: p.value for p in model.metadata_props}
    if meta.get("precision") == "fp16":
        raise DdpmEdgeError("this ONNX is already fp16")

    # parameters of kept-fp32 nodes (scale, bias, mean, var) stay fp32; every other float weight → fp16
    keep32 = {name for node in graph.node if node.op_type in keep_fp32_ops for name in node.input[1:]}
    for init in graph.initializer:
        if init.data_type == TensorProto.FLOAT and init.name not in keep32:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16), init.name))

    graph_inputs = {i.name for i in graph.input if i.type.tensor_type.elem_type == TensorProto.FLOAT}
    graph_outputs = {o.name for o in graph.output if o.type.tensor_type.elem_type == TensorProto.FLOAT}
    nodes = [helper.make_node("Cast", [name], [f"{name}__fp16"], to=TensorProto.FLOAT16, name=f"{name}__to_fp16")
             for name in sorted(graph_inputs)]
    for node in graph.node:
        for k, name in enumerate(node.input):
            if name in graph_inputs:
                node.input[k] = f"{name}__fp16"
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value" and attr.t.data_type == TensorProto.FLOAT:
                    attr.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(attr.t).astype(np.float16), attr.t.name))
        if node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to" and attr.i == TensorProto.FLOAT:
                    attr.i = TensorProto.FLOAT16
        if node.op_type in keep_fp32_ops:  # fp16 → Cast → fp32 norm → Cast → fp16
            src, dst = node.input[0], node.output[0]
            nodes.append(helper.make_node("Cast", [src], [f"{src}__fp32"], to=TensorProto.FLOAT, name=f"{node.name}__in"))
            node.input[0], node.output[0] = f"{src}__fp32", f"{dst}__fp32"
            nodes.append(node)
            nodes.append(helper.make_node("Cast", [f"{dst}__fp32"], [dst], to=TensorProto.FLOAT16, name=f"{node.name}__out"))
        else:
            nodes.append(node)
        for k, name in enumerate(node.output):  # a graph output leaves through a Cast back to float32
            if name in graph_outputs:
                node.output[k] = f"{name}__fp16"
                nodes.append(helper.make_node("Cast", [f"{name}__fp16"], [name], to=TensorProto.FLOAT, name=f"{name}__to_fp32"))
    del graph.node[:]
    graph.node.extend(nodes)
    del graph.value_info[:]  # stale float types; shape inference recomputes them
    meta["precision"] = "fp16"
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, meta)
    return checked(model, "fp16 conversion produced an invalid graph")


def psnr(reference: np.ndarray, test: np.ndarray, peak_to_peak: float = 2.0) -> float:
    """PSNR in dB of `test` against `reference`, both clipped to [-1, 1] (peak-to-peak 2)."""
    a = np.clip(reference.astype(np.float64), -1, 1)
    b = np.clip(test.astype(np.float64), -1, 1)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak_to_peak ** 2 / mse)


def gate_psnr(fp32_path, fp16_path, n: int = GATE_SAMPLES, steps: int = GATE_STEPS, seed: int = GATE_SEED,
              device: str = "cpu") -> float:
    """DDIM-`steps` with the same noise and contexts through both graphs → PSNR (dB) of fp16 vs fp32."""
    from ddpm_edge.runtime.backends.ort import OnnxUnet
    from ddpm_edge.runtime.solvers import DDIMSampler
    from ddpm_edge.runtime.sampling import SeededNoise, sample

    ref, test = OnnxUnet(fp32_path, device=device), OnnxUnet(fp16_path, device=device)
    spec = ref.spec
    c = np.eye(spec.n_cfeat, dtype=np.float32)[np.arange(n) % spec.n_cfeat]   # every class, in turn
    c[::spec.n_cfeat + 1] = 0                                                  # and some unconditional rows
    shape = (n, *spec.sample_shape)
    sampler = DDIMSampler(spec.schedule, steps)
    x32 = sample(ref, sampler, shape, c, noise=SeededNoise(seed))
    x16 = sample(test, sampler, shape, c, noise=SeededNoise(seed))
    if not np.all(np.isfinite(x16)):
        return float("-inf")
    return psnr(x32, x16)


def export_fp16(fp32_onnx: str | os.PathLike, out: str | os.PathLike, min_psnr: float = MIN_PSNR,
                convert: Callable = to_fp16, log: Callable[[str], None] = lambda message: None) -> Fp16Result:
    """Convert `fp32_onnx`, gate it, and only then put the fp16 graph at `out`."""

    out = check_writable(out)
    fp32_onnx = Path(fp32_onnx)
    source = read_onnx(fp32_onnx)
    names = ({i.name for i in source.graph.input}, {o.name for o in source.graph.output})
    if names != (set(INPUT_NAMES), set(OUTPUT_NAMES)):
        raise DdpmEdgeError(f"{fp32_onnx} is not a ddpm UNet (inputs x, t, c; output eps)")
    converted = convert(source)
    with atomic_path(out) as tmp:
        tmp.write_bytes(converted.SerializeToString())
        db = gate_psnr(fp32_onnx, tmp)
        log(f"fp16 quality gate: DDIM-{GATE_STEPS} x{GATE_SAMPLES}, same noise: PSNR {db:.1f} dB vs fp32 "
            f"(needs >= {min_psnr:.0f} dB)")
        if not db >= min_psnr:
            raise ValidationFailed(f"fp16 model fails the quality gate: PSNR {db:.1f} dB < {min_psnr:.0f} dB "
                                   "against fp32 (DDIM-25, same noise); nothing written")
        size = tmp.stat().st_size
    log(f"wrote {out} ({size / 1e6:.1f} MB, fp16 weights, norms in fp32, float32 I/O)")
    return Fp16Result(out, db, size)


def spec_of(path) -> ModelSpec:
    """The ModelSpec an ONNX file carries (no session needed)."""
    model = read_onnx(path)
    return ModelSpec.from_metadata({p.key: p.value for p in model.metadata_props})
