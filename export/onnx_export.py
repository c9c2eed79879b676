"""torch → ONNX: one self-contained file (no .onnx.data), dynamic batch, self-describing metadata,
validated against the torch reference with ONNX Runtime before it is put in place.
"""
from __future__ import annotations

import contextlib
import io
import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ddpm_edge.runtime import __version__
from ddpm_edge.runtime.contract import BATCH_AXIS, INPUT_NAMES, OUTPUT_NAMES, ModelSpec
from ddpm_edge.runtime.errors import DdpmEdgeError, ValidationFailed
from ddpm_edge.runtime.files import atomic_path, check_writable

OPSET = 18  # traced at 18, then declared at the lowest opset with the same op schemas (portable.py)
TOLERANCE = 1e-4
VALIDATION_BATCHES = (1, 8)
DOC = "ContextUnet eps = unet(x, t, c) of the DeepLearning.AI sprite diffusion course"


@dataclass
class ExportResult:
    path: Path
    spec: ModelSpec
    max_abs_error: dict[int, float]   # batch size -> max |eps_onnx − eps_torch|
    size_bytes: int


def read_onnx(path: str | os.PathLike):
    """Load an ONNX file's ModelProto, or fail with a one-line reason."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise DdpmEdgeError(f"ONNX file not found: {path}")
    try:
        return onnx.load(str(path))
    except Exception as e:
        raise DdpmEdgeError(f"{path} is not a readable ONNX file: {str(e).splitlines()[0][:200]}") from None


def spec_for(checkpoint, precision: str = "fp32") -> ModelSpec:
    c = checkpoint.config
    return ModelSpec(channels=c.in_channels, height=c.height, width=c.height, n_cfeat=c.n_cfeat,
                     T=checkpoint.schedule.T, beta1=checkpoint.schedule.beta1, beta2=checkpoint.schedule.beta2,
                     context_names=tuple(checkpoint.class_names), shortcut=checkpoint.shortcut,
                     precision=precision, source_sha256=checkpoint.sha256, version=__version__)


def example_inputs(spec: ModelSpec, n: int, seed: int):
    """Fresh random inputs in the ranges the sampler feeds: x ~ N(0,1), t in (0,1], c in [0,1]."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, *spec.sample_shape), dtype=np.float32)
    t = rng.integers(1, spec.T + 1, size=(n, 1)).astype(np.float32) / spec.T
    c = (rng.random((n, spec.n_cfeat)) < 0.5).astype(np.float32)
    return x, t, c


def to_onnx_proto(model, spec: ModelSpec, opset: int = OPSET, fixed_batch: int | None = None):
    """Trace `model` (eval mode, GELUs in portable form) with the dynamo exporter; return the portable,
    deterministic ModelProto with metadata (see export/portable.py). `fixed_batch` fixes the batch axis
    (OpenCV 4.x DNN needs it); default: dynamic."""
    import torch

    from .portable import make_portable, with_portable_gelu

    model = with_portable_gelu(model.eval()).eval()
    x, t, c = (torch.from_numpy(a) for a in example_inputs(spec, 2, seed=0))
    batch = torch.export.Dim(BATCH_AXIS, min=1, max=1 << 20)
    quiet = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        try:
            program = torch.onnx.export(model, (x, t, c), None, dynamo=True, input_names=list(INPUT_NAMES),
                                        output_names=list(OUTPUT_NAMES), opset_version=opset,
                                        dynamic_shapes={name: {0: batch} for name in INPUT_NAMES},
                                        external_data=False)
        except Exception as e:
            raise DdpmEdgeError(f"torch.onnx.export failed: {str(e).splitlines()[0][:300]}") from None
    proto = program.model_proto
    for value in list(proto.graph.input) + list(proto.graph.output):  # one name for the dynamic axis
        dim = value.type.tensor_type.shape.dim[0]
        dim.ClearField("dim_value")
        dim.dim_param = BATCH_AXIS
    return make_portable(proto, spec.to_metadata(), producer=("ddpm-edge", __version__), doc=DOC,
                         fixed_batch=fixed_batch)


def compare_with_torch(onnx_path, model, spec: ModelSpec, batches=VALIDATION_BATCHES, seed: int | None = None,
                       device: str = "cpu") -> dict[int, float]:
    """Max abs difference between ONNX Runtime and torch eps on fresh random inputs, per batch size."""
    import torch

    from ddpm_edge.runtime.backends.ort import OnnxUnet

    unet = OnnxUnet(onnx_path, device=device)
    seed = int.from_bytes(os.urandom(4), "little") if seed is None else seed
    errors = {}
    for k, n in enumerate(batches):
        x, t, c = example_inputs(spec, n, seed + k)
        with torch.no_grad():
            reference = model(*(torch.from_numpy(a) for a in (x, t, c))).numpy()
        errors[n] = float(np.abs(unet(x, t, c) - reference).max())
    return errors


def export_onnx(weights: str | os.PathLike, out: str | os.PathLike = "unet.onnx", shortcut: str = "seed:0",
                tolerance: float = TOLERANCE, fixed_batch: int | None = None,
                log: Callable[[str], None] = lambda message: None) -> ExportResult:
    """Load a checkpoint, export it, validate against torch, and only then put the file at `out`."""
    from ddpm_edge.ddpm_ref.checkpoint import load_checkpoint

    from .portable import serialize

    if fixed_batch is not None and fixed_batch < 1:
        raise DdpmEdgeError(f"--fixed-batch must be >= 1, got {fixed_batch}")
    out = check_writable(out)
    checkpoint = load_checkpoint(weights, shortcut=shortcut)
    cfg = checkpoint.config
    log(f"loaded {checkpoint.path} (sha256 {checkpoint.sha256[:12]}): ContextUnet C={cfg.in_channels} "
        f"{cfg.height}x{cfg.height} n_feat={cfg.n_feat} n_cfeat={cfg.n_cfeat}, shortcut {checkpoint.shortcut}")
    spec = spec_for(checkpoint)
    proto = to_onnx_proto(checkpoint.model, spec, fixed_batch=fixed_batch)
    with atomic_path(out) as tmp:
        tmp.write_bytes(serialize(proto))
        batches = (fixed_batch,) if fixed_batch else VALIDATION_BATCHES
        errors = compare_with_torch(tmp, checkpoint.model, spec, batches=batches)
        worst = max(errors.values())
        log("validated against torch: " + ", ".join(f"batch {n}: max abs error {e:.2e}" for n, e in errors.items()))
        if not worst <= tolerance:
            raise ValidationFailed(f"ONNX output differs from torch by {worst:.2e} > {tolerance:.0e}; nothing written")
        size = tmp.stat().st_size
    n = fixed_batch or "N"
    log(f"wrote {out} ({size / 1e6:.1f} MB, opset {proto.opset_import[0].version}, IR {proto.ir_version}, "
        f"inputs x[{n},{cfg.in_channels},{cfg.height},{cfg.height}] "
        f"t[{n},1] c[{n},{cfg.n_cfeat}], output eps)")
    return ExportResult(out, spec, errors, size)
