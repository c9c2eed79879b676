"""The quality gate of low-precision engines: a bf16 / int8 / fp16-on-CPU engine is used only when the
yardstick (runtime/quality) finds its sprites EQUAL to those of its fp32 twin, at the same solver, steps
and guidance, from the same seeds and noise.

    verdict = check(unet)               # cached; raises ValidationFailed (exit 4) with the figures if not equal

The fp32 twin: for a float model run at bf16/fp16 (OpenVINO), the same file on onnxruntime fp32; for an
int8 model, the fp32 ONNX it was quantized from (metadata `source_onnx_sha256`), found beside it or as
the shipped model. Each side generates `n` class-balanced sprites (sprite i asks for class i mod K) for
each seed; the yardstick reports each seed; `Yardstick.verdict(candidate, reference)` decides (mean FD ≤
reference mean + seed spread, accuracy ≥ reference mean − spread).

Verdicts are cached as JSON, keyed by the model's sha256 + backend + precision + solver config, in
$DDPM_EDGE_CACHE (or ~/.cache/ddpm-edge)/verdicts.json; verdicts shipped with the package
(weights/verdicts.json, written by benchmarks/lowprec_gate.py --ship) are read first.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import DdpmEdgeError, ValidationFailed
from .files import atomic_write_bytes, sha256_file

VERDICTS_FORMAT = "ddpm-edge-verdicts/1"
SHIPPED_VERDICTS = Path(__file__).resolve().parents[1] / "weights" / "verdicts.json"
GATED_PRECISIONS = ("bf16", "int8", "fp16")
DEFAULT_CONFIG = "dpmpp-2m-sde:10:guidance=2"     # the expected default (issue 9); the lead sets the final one
DEFAULT_N = 500          # sprites per seed: the yardstick's n ≥ 500
DEFAULT_SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class GateConfig:
    sampler: str
    steps: int | None = None
    guidance: float = 0.0
    eta: float = 0.0
    spacing: str = "uniform"
    n: int = DEFAULT_N
    seeds: tuple[int, ...] = DEFAULT_SEEDS

    @classmethod
    def parse(cls, text: str, n: int = DEFAULT_N, seeds=DEFAULT_SEEDS) -> "GateConfig":
        """"sampler[:steps][:guidance=W][:eta=E][:spacing=S]", as benchmarks/yardstick.py writes configs."""
        parts = [p.strip() for p in str(text).split(":") if p.strip()]
        if not parts:
            raise DdpmEdgeError("empty gate config; expected e.g. dpmpp-2m-sde:10:guidance=2")
        kwargs: dict = {"sampler": parts[0].lower()}
        try:
            for part in parts[1:]:
                if "=" not in part:
                    kwargs["steps"] = int(part)
                    continue
                key, value = part.split("=", 1)
                if key not in ("guidance", "eta", "spacing"):
                    raise DdpmEdgeError(f"unknown gate config key {key!r} in {text!r}")
                kwargs[key] = value if key == "spacing" else float(value)
        except ValueError:
            raise DdpmEdgeError(f"gate config {text!r} is malformed; expected e.g. dpmpp-2m-sde:10:guidance=2") from None
        if n < 2 or len(seeds) < 2:
            raise DdpmEdgeError(f"the gate needs n >= 2 sprites and >= 2 seeds, got n={n}, {len(seeds)} seeds")
        return cls(**kwargs, n=int(n), seeds=tuple(int(s) for s in seeds))

    @property
    def label(self) -> str:
        text = self.sampler + (f":{self.steps}" if self.steps else "")
        for key, default in (("guidance", 0.0), ("eta", 0.0), ("spacing", "uniform")):
            if getattr(self, key) != default:
                text += f":{key}={getattr(self, key):g}" if key != "spacing" else f":spacing={self.spacing}"
        return text

    @property
    def key(self) -> str:
        return f"{self.label}|n={self.n}|seeds={','.join(map(str, self.seeds))}"


@dataclass
class GateVerdict:
    equal: bool
    reason: str
    model_sha256: str
    backend: str
    precision: str
    config: str
    candidate: list[dict] = field(default_factory=list)     # QualityReport dicts per seed
    reference: list[dict] = field(default_factory=list)     # the fp32 twin's, same seeds
    twin_sha256: str = ""
    measured: str = ""                                      # UTC time of the measurement

    def summary(self) -> str:
        return (f"{self.backend} {self.precision} model {self.model_sha256[:12]}… vs its fp32 twin at "
                f"{self.config}: {self.reason}")


def verdict_key(model_sha256: str, backend: str, precision: str, config: GateConfig) -> str:
    return f"{model_sha256}|{backend}|{precision}|{config.key}"


def cache_path() -> Path:
    return Path(os.environ.get("DDPM_EDGE_CACHE") or Path.home() / ".cache" / "ddpm-edge") / "verdicts.json"


def _read(path: Path) -> dict:
    try:
        table = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        return {}   # a damaged cache is re-measured, not fatal
    return table.get("verdicts", {}) if table.get("format") == VERDICTS_FORMAT else {}


def lookup(key: str, shipped: Path = SHIPPED_VERDICTS) -> GateVerdict | None:
    for path in (shipped, cache_path()):
        entry = _read(path).get(key)
        if entry:
            try:
                return GateVerdict(**entry)
            except TypeError:
                continue
    return None


def store(key: str, verdict: GateVerdict | dict, path: Path | None = None) -> Path:
    path = path or cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    table = _read(path)
    table[key] = verdict if isinstance(verdict, dict) else asdict(verdict)
    atomic_write_bytes(path, (json.dumps({"format": VERDICTS_FORMAT, "verdicts": table}, indent=1,
                                         sort_keys=True) + "\n").encode())
    return path


def needs_gate(unet) -> bool:
    """bf16 and int8 anywhere, fp16 on the CPU (OpenVINO); fp16 CUDA/TensorRT graphs have their own
    export gate (export/fp16.py)."""
    precision = getattr(unet, "precision", "fp32")
    return precision in ("bf16", "int8") or (precision == "fp16" and getattr(unet, "backend", "") == "openvino")


def fp32_twin(unet):
    """The fp32 onnxruntime model the low-precision `unet` must equal."""
    from .backends import default_model_path
    from .backends.ort import OnnxUnet

    path = Path(unet.path)
    if unet.precision != "int8":
        if path.suffix.lower() != ".onnx":
            raise DdpmEdgeError(f"no fp32 twin for {path.name}")
        return OnnxUnet(path, device="cpu")
    want = unet.spec.extra.get("source_onnx_sha256", "")
    candidates = [path.with_name(path.name.replace("_int8", "")).with_suffix(".onnx"), path.with_suffix(".onnx"),
                  *sorted(path.parent.glob("*.onnx"))]
    try:
        candidates.append(default_model_path())
    except DdpmEdgeError:
        pass
    for candidate in dict.fromkeys(candidates):
        if candidate.is_file() and candidate != path and want and sha256_file(candidate) == want:
            return OnnxUnet(candidate, device="cpu")
    raise DdpmEdgeError(f"the quality gate needs the fp32 model {path.name} was quantized from "
                        f"(sha256 {want[:12] or 'unrecorded'}…); put it beside {path.name}")


def sprites_of(unet, config: GateConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """uint8 sprites [n,H,W,C] and the requested class [n] of one seed, class-balanced."""
    from .api import SpriteGenerator

    k = unet.spec.n_cfeat
    requested = np.arange(config.n) % k
    context = np.eye(k, dtype=np.float32)[requested]
    sprites = SpriteGenerator(unet).generate(config.n, context=context, seed=seed, sampler=config.sampler,
                                             steps=config.steps, guidance=config.guidance, eta=config.eta,
                                             spacing=config.spacing)
    return sprites, requested


def measure(unet, twin, config: GateConfig, yardstick=None,
            log: Callable[[str], None] = lambda m: None) -> GateVerdict:
    """Both models through the yardstick at `config`, every seed → the verdict (not cached here)."""
    if yardstick is None:
        from .quality import Yardstick
        yardstick = Yardstick.load()
    from .quality import QualityReport
    reports: dict[str, list] = {"candidate": [], "reference": []}
    reference_key = f"reference|{twin.sha256}|{config.key}"   # the fp32 side, shared by every candidate
    cached = _read(cache_path()).get(reference_key)
    if cached:
        reports["reference"] = [QualityReport.from_dict(r) for r in cached["reports"]]
    for seed in config.seeds:
        for side, model in (("reference", twin), ("candidate", unet)):
            if side == "reference" and cached:
                continue
            started = time.monotonic()
            sprites, requested = sprites_of(model, config, seed)
            report = yardstick.report(sprites, requested, config=config.label, seed=seed)
            reports[side].append(report)
            log(f"gate: {side} {getattr(model, 'backend', '?')} {getattr(model, 'precision', '?')} seed {seed}: "
                f"FD {report.fd:.2f}, accuracy {report.accuracy:.3f} ({time.monotonic() - started:.0f} s)")
    if not cached:
        store(reference_key, {"reports": [_as_dict(r) for r in reports["reference"]]})
    verdict = yardstick.verdict(reports["candidate"], reports["reference"])
    return GateVerdict(bool(verdict.equal), str(verdict.reason), unet.sha256, unet.backend, unet.precision,
                       config.label, [_as_dict(r) for r in reports["candidate"]],
                       [_as_dict(r) for r in reports["reference"]], twin.sha256,
                       time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))


def _as_dict(report) -> dict:
    return report.to_dict() if hasattr(report, "to_dict") else dict(report.__dict__)


def check(unet, config: GateConfig | str | None = None, twin=None, yardstick=None, run: bool = True,
          log: Callable[[str], None] = lambda m: None) -> GateVerdict | None:
    """None for an engine that needs no gate; else the (cached or newly measured) verdict when equal.
    Raises ValidationFailed with the figures when not equal, DdpmEdgeError when unmeasured and not `run`."""
    if not needs_gate(unet):
        return None
    config = config if isinstance(config, GateConfig) else GateConfig.parse(config or DEFAULT_CONFIG)
    key = verdict_key(unet.sha256, unet.backend, unet.precision, config)
    verdict = lookup(key)
    if verdict is None:
        if not run:
            raise DdpmEdgeError(f"{unet.backend} {unet.precision} has no quality verdict at {config.label} yet; "
                                f"measure it: python benchmarks/lowprec_gate.py --config {config.label}")
        log(f"gate: {unet.backend} {unet.precision} unmeasured at {config.label}; measuring against fp32 "
            f"({len(config.seeds)} seeds × {config.n} sprites, once)")
        verdict = measure(unet, twin if twin is not None else fp32_twin(unet), config, yardstick, log)
        store(key, verdict)
    if not verdict.equal:
        raise ValidationFailed(f"quality gate refuses {verdict.summary()}")
    return verdict
