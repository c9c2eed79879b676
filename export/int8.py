"""fp32 UNet → int8 UNet, calibrated on real sampling trajectories, sensitive layers kept float.

    ddpm-export --onnx unet.onnx --int8 -o unet_int8.onnx   ONNX Runtime static QDQ (U8 activations, S8
                                                            per-channel weights; VNNI runs it unsaturated)
    ddpm-export --onnx unet.onnx --int8 -o unet_int8.xml    OpenVINO IR (+ .bin) through NNCF PTQ

1. Calibration rows (x_t, t, c) are what the UNet really sees: the NumPy loop samples with the fp32 model
   (DDIM over many t) and every call's inputs are recorded, for every class and for unconditional rows,
   guided (2N rows: c and zeros) and unguided. A held-out part (other seeds) measures eps error.
2. Sensitivity: each Conv/ConvTranspose quantized alone; its mean |Δeps| on the held-out rows.
3. Greedy: quantize all convs, then keep the most sensitive ones float until the whole model's mean |Δeps|
   is within `max_eps_error`. The embedding GEMMs (a few hundred MACs) stay float. Both formats get the
   same float set and calibration rows.
4. The quality gate (runtime/gate.py): the yardstick must find the int8 model's sprites equal to the fp32
   model's at the gate's solver config, else nothing is written. The verdict is cached under the file's
   sha256, so its first use needs no new measurement. Written atomically; the input is never overwritten.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ddpm_edge.runtime.errors import DdpmEdgeError, MissingDependency
from ddpm_edge.runtime.files import atomic_path, check_writable, sha256_file

MAX_EPS_ERROR = 0.01       # mean |eps_int8 − eps_fp32| on held-out trajectory rows
CALIB_STEPS = 50           # DDIM steps per calibration trajectory: t every 10 of T=500
CALIB_ROWS = 384
HELD_OUT_ROWS = 128
QUANT_OPS = ("Conv", "ConvTranspose")
NOT_QUANTIZED_OV_TYPES = ("MatMul", "Multiply", "Divide", "Add", "Subtract", "Concat", "MaxPool", "AvgPool",
                          "Reshape", "ShapeOf", "Erf", "MVN", "Relu")


@dataclass
class Calibration:
    x: np.ndarray   # [M, C, H, W]
    t: np.ndarray   # [M, 1]
    c: np.ndarray   # [M, n_cfeat]

    def __len__(self) -> int:
        return len(self.x)

    def take(self, index) -> "Calibration":
        return Calibration(self.x[index], self.t[index], self.c[index])

    def batches(self, size: int = 64):
        for k in range(0, len(self), size):
            yield {"x": self.x[k:k + size], "t": self.t[k:k + size], "c": self.c[k:k + size]}


@dataclass
class Int8Result:
    path: Path
    eps_error: float                        # mean |Δeps| of the written model, held-out rows
    kept_float: list[str]                   # ONNX node names left in float
    sensitivity: dict[str, float] = field(default_factory=dict)   # node → mean |Δeps| quantized alone


def trajectory_rows(unet, seed: int = 0, steps: int = CALIB_STEPS) -> Calibration:
    """Every UNet input of two DDIM-`steps` runs of the fp32 model: guided (w=2, each class twice → the
    class rows and their unconditional twins) and unguided (each class once + as many unconditional)."""
    from ddpm_edge.runtime.sampling import SeededNoise, guided, sample
    from ddpm_edge.runtime.solvers import make_sampler

    spec = unet.spec
    rows: list[tuple] = []

    def record(x, t, c):
        rows.append((x.copy(), t.copy(), c.copy()))
        return unet(x, t, c)

    k = spec.n_cfeat
    eye = np.eye(k, dtype=np.float32)
    shape = (2 * k, *spec.sample_shape)
    sample(guided(record, 2.0), make_sampler("ddim", spec.schedule, steps), shape, eye[np.arange(2 * k) % k],
           noise=SeededNoise(seed))
    sample(record, make_sampler("ddim", spec.schedule, steps), shape,
           np.concatenate([eye, np.zeros_like(eye)]), noise=SeededNoise(seed + 1))
    x, t, c = (np.concatenate([r[j] for r in rows]) for j in range(3))
    return Calibration(x, t, c)


def calibration_sets(fp32_onnx, calib_rows: int = CALIB_ROWS, held_out_rows: int = HELD_OUT_ROWS,
                     seed: int = 0) -> tuple[Calibration, Calibration]:
    """(calibration, held-out) rows from trajectories of different seeds, each a random subset."""
    from ddpm_edge.runtime.backends.ort import OnnxUnet

    unet = OnnxUnet(fp32_onnx, device="cpu")
    rng = np.random.default_rng(seed)
    calib, held = trajectory_rows(unet, seed), trajectory_rows(unet, seed + 100, steps=CALIB_STEPS // 2)
    return (calib.take(rng.permutation(len(calib))[:calib_rows]),
            held.take(rng.permutation(len(held))[:held_out_rows]))


def _import_quantization():
    try:
        import onnx  # noqa: F401
        from onnxruntime import quantization
    except ImportError:
        raise MissingDependency("--int8 needs onnx and onnxruntime's quantization tools: "
                                "pip install 'ddpm-edge[export]'") from None
    return quantization


class _Reader:
    """onnxruntime.quantization CalibrationDataReader over a Calibration."""

    def __init__(self, calib: Calibration):
        self._it = iter(list(calib.batches()))

    def get_next(self):
        return next(self._it, None)

    def rewind(self):  # pragma: no cover - some calibrators ask for it
        pass


def quantize_qdq(src: Path, out: Path, calib: Calibration, nodes: list[str], cache: Path) -> None:
    """ORT static QDQ of `nodes`: U8 asymmetric activations (MinMax on `calib`), S8 symmetric per-channel
    weights. `cache` holds the tensor ranges, so later calls skip calibration."""
    q = _import_quantization()
    import logging
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)   # quiet its "consider pre-processing" warning on every call
    try:
        _quantize_static(q, src, out, calib, nodes, cache)
    finally:
        root.setLevel(level)


def _quantize_static(q, src: Path, out: Path, calib: Calibration, nodes: list[str], cache: Path) -> None:
    q.quantize_static(str(src), str(out), _Reader(calib), quant_format=q.QuantFormat.QDQ,
                      op_types_to_quantize=list(QUANT_OPS), nodes_to_quantize=nodes, per_channel=True,
                      reduce_range=False, activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                      calibrate_method=q.CalibrationMethod.MinMax, calibration_cache_path=str(cache))


def eps_error(reference: np.ndarray, unet, rows: Calibration) -> float:
    """mean |eps − reference| over `rows`."""
    return float(np.mean(np.abs(unet(rows.x, rows.t, rows.c) - reference)))


def choose_float_layers(src: Path, calib: Calibration, held: Calibration, scratch: Path,
                        max_eps_error: float = MAX_EPS_ERROR,
                        log: Callable[[str], None] = lambda m: None) -> tuple[list[str], dict[str, float], float]:
    """Per-layer sensitivity, then the smallest most-sensitive-first float set meeting `max_eps_error`.
    → (kept float, sensitivity, error of the chosen model)."""
    from ddpm_edge.runtime.backends.ort import OnnxUnet

    convs = _conv_names(src)
    if any(not name for name in convs):
        raise DdpmEdgeError(f"{src.name}: every Conv needs a node name for --int8")
    reference = OnnxUnet(src, device="cpu")(held.x, held.t, held.c)
    cache, trial = scratch / "ranges.json", scratch / "trial.onnx"

    def error_of(nodes: list[str]) -> float:
        quantize_qdq(src, trial, calib, nodes, cache)
        return eps_error(reference, OnnxUnet(trial, device="cpu"), held)

    full = error_of(convs)     # calibrates once, fills the cache
    log(f"int8: all {len(convs)} convs quantized: mean |Δeps| {full:.4f} (budget {max_eps_error})")
    if full <= max_eps_error:
        return [], {}, full    # nothing needs to stay float
    sensitivity = {name: error_of([name]) for name in convs}
    log("int8: mean |Δeps| with one layer quantized: " +
        ", ".join(f"{k} {v:.4f}" for k, v in sorted(sensitivity.items(), key=lambda kv: -kv[1])))
    order = sorted(convs, key=lambda n: -sensitivity[n])
    kept, error = [], full
    while error > max_eps_error and len(kept) < len(convs) - 1:
        kept.append(order[len(kept)])
        error = error_of([n for n in convs if n not in kept])
        log(f"int8: keep {kept[-1]} float → mean |Δeps| {error:.4f}")
    if error > max_eps_error:
        raise DdpmEdgeError(f"no int8 layer set of {src.name} keeps mean |Δeps| within {max_eps_error}")
    return kept, sensitivity, error


def _conv_names(src: Path) -> list[str]:
    import onnx
    return [n.name for n in onnx.load(str(src), load_external_data=False).graph.node if n.op_type in QUANT_OPS]


def _with_metadata(path: Path, meta: dict[str, str]) -> bytes:
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, meta)
    return model.SerializeToString()


def _ov_ignored(ov_model, onnx_proto, kept: list[str]):
    """NNCF IgnoredScope for the kept-float ONNX nodes: OpenVINO renames convs (`name/WithoutBiases`,
    ConvTranspose → ConvolutionBackpropData_N), so match each by its weight constant; GEMMs stay float."""
    import nncf

    weight_of = {n.name: n.input[1] for n in onnx_proto.graph.node if n.name in kept}
    wanted = set(weight_of.values())
    names = []
    for op in ov_model.get_ops():
        if op.get_type_name() not in ("Convolution", "ConvolutionBackpropData"):
            continue
        node = op.input_value(1).get_node()
        while node.get_type_name() != "Constant" and node.get_input_size():
            node = node.input_value(0).get_node()
        if {node.get_friendly_name(), *node.output(0).get_names()} & wanted:
            names.append(op.get_friendly_name())
    if len(names) != len(kept):
        raise DdpmEdgeError(f"int8 IR: found {len(names)} of the {len(kept)} float layers in OpenVINO's graph")
    # NNCF would also quantize the element-wise GELU/GroupNorm arithmetic (mean |Δeps| 0.033 instead of
    # 0.009 measured on the shipped model); only convolutions are quantized, as on onnxruntime
    return nncf.IgnoredScope(names=names, types=list(NOT_QUANTIZED_OV_TYPES))


def write_ir(src: Path, xml: Path, calib: Calibration, kept: list[str], meta: dict[str, str]) -> None:
    """NNCF post-training quantization of the OpenVINO model → IR `xml` and its .bin (in a scratch folder;
    the caller moves them), with the metadata and the .bin's sha256 in rt_info."""
    try:
        import nncf
        import onnx
        import openvino as ov
    except ImportError:
        raise MissingDependency("an int8 OpenVINO IR needs openvino and nncf: pip install 'ddpm-edge[openvino]'") from None
    from ddpm_edge.runtime.backends.ov import set_ir_metadata

    model = ov.Core().read_model(str(src))
    items = [{"x": b["x"], "t": b["t"], "c": b["c"]} for b in calib.batches(1)]
    quantized = nncf.quantize(model, nncf.Dataset(items), subset_size=len(items),
                              preset=nncf.QuantizationPreset.MIXED,   # asymmetric activations (GELU < 0)
                              ignored_scope=_ov_ignored(model, onnx.load(str(src)), kept))
    set_ir_metadata(quantized, meta)
    ov.save_model(quantized, str(xml), compress_to_fp16=False)
    set_ir_metadata(quantized, {**meta, "weights_sha256": sha256_file(xml.with_suffix(".bin"))})
    ov.save_model(quantized, str(xml), compress_to_fp16=False)   # same .bin; rt_info now names it


def export_int8(fp32_onnx: str | os.PathLike, out: str | os.PathLike, max_eps_error: float = MAX_EPS_ERROR,
                gate: str | None = None, gate_n: int | None = None,
                log: Callable[[str], None] = lambda message: None) -> Int8Result:
    """`fp32_onnx` → int8 `out` (.onnx: ORT QDQ; .xml: OpenVINO IR). See the module doc. `gate`: the solver
    config of the quality gate (runtime/gate.py; default its DEFAULT_CONFIG), "none" to skip it."""
    from ddpm_edge.runtime import gate as quality_gate
    from ddpm_edge.runtime.backends.common import graph_precision, onnx_summary

    src, out = Path(fp32_onnx), Path(out)
    if out.suffix.lower() not in (".onnx", ".xml"):
        raise DdpmEdgeError(f"--int8 writes .onnx (onnxruntime) or .xml (OpenVINO IR), not {out.name}")
    if not src.is_file():
        raise DdpmEdgeError(f"model file not found: {src}")
    if src.resolve() in (out.resolve(), out.with_suffix(".bin").resolve()):
        raise DdpmEdgeError("--int8 never overwrites its input; give another -o")
    check_writable(out)
    if out.suffix.lower() == ".xml":
        check_writable(out.with_suffix(".bin"))
    config = None if str(gate).lower() == "none" else quality_gate.GateConfig.parse(
        gate or quality_gate.DEFAULT_CONFIG, n=gate_n or quality_gate.DEFAULT_N)
    meta, ops = onnx_summary(src)
    if graph_precision(meta, ops) != "fp32":
        raise DdpmEdgeError(f"--int8 starts from an fp32 model; {src.name} is {graph_precision(meta, ops)}")
    _import_quantization()
    log("int8: recording calibration rows from sampling trajectories (fp32, DDIM, every class, guided and not)")
    calib, held = calibration_sets(src)
    with tempfile.TemporaryDirectory(prefix=".ddpm-int8-", dir=out.parent) as scratch:
        scratch = Path(scratch)
        kept, sensitivity, error = choose_float_layers(src, calib, held, scratch, max_eps_error, log)
        meta = {**meta, "precision": "int8", "int8_float_layers": ",".join(kept),
                "int8_calibration": f"{len(calib)} trajectory rows (DDIM-{CALIB_STEPS}, all classes, guided)",
                "source_onnx_sha256": sha256_file(src)}
        candidate = scratch / out.name
        if out.suffix.lower() == ".xml":
            write_ir(src, candidate, calib, kept, meta)
        else:
            trial = scratch / "final.onnx"
            quantize_qdq(src, trial, calib, [n for n in _conv_names(src) if n not in kept], scratch / "ranges.json")
            candidate.write_bytes(_with_metadata(trial, meta))
        from ddpm_edge.runtime.backends import load_unet
        from ddpm_edge.runtime.backends.ort import OnnxUnet
        unet = load_unet(candidate, device="cpu", precision="int8")
        error = eps_error(_reference(src, held), unet, held)
        if config is not None:   # refuses (ValidationFailed, nothing written) with the figures
            verdict = quality_gate.check(unet, config, twin=OnnxUnet(src, device="cpu"), log=log)
            log(f"int8: quality gate: {verdict.reason}")
        if candidate.with_suffix(".bin").is_file():   # weights first: an .xml never sits beside foreign weights
            with atomic_path(out.with_suffix(".bin")) as tmp:
                os.replace(candidate.with_suffix(".bin"), tmp)
        with atomic_path(out) as tmp:
            os.replace(candidate, tmp)
    log(f"wrote {out} (int8, {len(kept)} layers float: {', '.join(kept) or 'none'}; "
        f"mean |Δeps| {error:.4f} vs fp32 on held-out trajectory rows)")
    return Int8Result(out, error, kept, sensitivity)


def _reference(src: Path, rows: Calibration) -> np.ndarray:
    from ddpm_edge.runtime.backends.ort import OnnxUnet
    return OnnxUnet(src, device="cpu")(rows.x, rows.t, rows.c)
