"""The embedding API: load a model once, generate sprites many times.

    from ddpm_edge.runtime.api import GenerationParams, SpriteGenerator
    from ddpm_edge.runtime.assets.outputs import SheetLayout, Targets, write_outputs
    gen = SpriteGenerator.load()                      # shipped default, or a path to .onnx / .plan
    sprites = gen.generate(16, context="food", seed=1, sampler="ddim", steps=25)   # uint8 [16,H,W,C]
    sprites = gen.generate(16, seed=1, background="transparent")                   # uint8 [16,H,W,C+1]

    batch = gen.generate_batch(GenerationParams(16, context="food", sampler="ddim"), frames_every="auto")
    write_outputs(batch, Targets(sheet=Path("food.png"), atlas=True, each=Path("food"),
                                 animation=Path("food.gif")), SheetLayout(scale=4))

One generator holds one inference session, reused by every call; calls from several threads are safe
(they take turns on the session). A progress callback `progress(done, total, x)` sees every step and
cancels the run (raising `Cancelled`) by returning False.
"""
from __future__ import annotations

import math
import os
import threading
from dataclasses import fields, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .assets.background import DEFAULT_TOLERANCE, apply_background, check_tolerance, parse_background
from .contract import ModelSpec
from .backends import default_model_path, load_unet
from .errors import DdpmEdgeError
from .limits import MAX_ANIMATION_PIXELS, MAX_SAMPLE_VALUES, check_limit
from .files import check_outputs, sha256_file
from .gate import GateConfig, check as check_gate, needs_gate
from .assets.images import to_uint8
from .assets.outputs import Batch, SheetLayout, Targets, sprite_names, write_outputs, write_sprite
from .params import GenerationParams, check_context_list, default_guidance
from .assets.records import RECORD_FORMAT_V1, read_record
from .solvers import DEFAULT_SAMPLER, GPU_LOOP_SAMPLERS, default_steps, make_sampler
from .sampling import DEFAULT_RNG, Progress, check_finite, guided, make_noise, sample

MAX_GATE_STEPS_AT_RUN = 50   # an unmeasured config of more steps is measured by benchmarks/lowprec_gate.py, not at run
AUTO_FRAMES = 30  # frames_every="auto": about this many denoising frames, whatever the step count


def parse_context(spec: ModelSpec, context, n: int, seed: int | None) -> np.ndarray:
    """→ [n, n_cfeat] float32.

    None or "none": zeros (unconditional). A name from the model's metadata ("hero"): that one-hot for
    every sprite. Comma-separated numbers ("1,0,0.6,0,0"): that vector for every sprite. "random": a
    one-hot per sprite, drawn from `seed` (independently of the sampling noise). An array: [n_cfeat]
    or [n, n_cfeat] as given.
    """
    k = spec.n_cfeat
    if context is None or (isinstance(context, str) and context.strip().lower() in ("", "none")):
        return np.zeros((n, k), dtype=np.float32)
    if isinstance(context, str):
        text = context.strip()
        if text.lower() == "random":
            rng = np.random.default_rng(None if seed is None else [seed, 1])
            return np.eye(k, dtype=np.float32)[rng.integers(0, k, size=n)]
        if any(ch.isdigit() for ch in text[:1] + text[-1:]) or text.startswith(("-", ".")):
            try:
                vector = np.array([float(v) for v in text.split(",")], dtype=np.float32)
            except ValueError:
                raise DdpmEdgeError(f"context {text!r} is neither a name nor comma-separated numbers") from None
        else:
            vector = spec.context_vector(text)
        context = vector
    if isinstance(context, (list, tuple)):
        check_context_list(context)
    try:
        array = np.asarray(context, dtype=np.float32)
    except (ValueError, TypeError, OverflowError):
        raise DdpmEdgeError(f"context must be a name, numbers or an array of numbers, got {str(context)[:80]}") from None
    if array.ndim not in (1, 2):
        raise DdpmEdgeError(f"context must be one vector or one row per sprite, got shape {array.shape}")
    if array.ndim == 1:
        array = np.broadcast_to(array, (n, array.shape[0]))
    if array.shape != (n, k):
        raise DdpmEdgeError(f"context must have {k} values (one per class: {', '.join(spec.context_names)}), "
                            f"got shape {array.shape[1:] if array.ndim == 2 and array.shape[0] == n else array.shape}")
    if not np.all(np.isfinite(array)):
        raise DdpmEdgeError("context values must be finite numbers")
    return np.ascontiguousarray(array)


# Engines `auto` may move a run to, fastest first (benchmarks/results/speed.md): the same model file at a
# lower precision, used for a configuration only when a quality verdict (runtime/gate.py, shipped in
# weights/verdicts.json) found it equal to fp32 there. int8 models are other files: asked for by --engine.
AUTO_ENGINES = (("openvino", "bf16"),)


class SpriteGenerator:
    """Holds one backend (session reused across calls); safe to call from several threads.

    Loaded with backend "auto" and no precision, a run whose configuration has an equal verdict for a
    faster engine of AUTO_ENGINES that this install has (OpenVINO bf16 with the openvino extra) runs on
    it; every other run, and every run when that engine is missing, stays on the loaded one."""

    def __init__(self, unet, auto: bool = False):
        self.unet = unet
        self.spec: ModelSpec = unet.spec
        self._lock = threading.Lock()
        self._auto = auto
        self._faster: list | None = None     # AUTO_ENGINES loaded (lazily, once): [(backend object)]

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, device: str = "auto",
             max_batch: int | None = None, io_binding: bool = False, cuda_graph: bool = False,
             gpu_loop: bool = False, backend: str = "auto", precision: str | None = None) -> "SpriteGenerator":
        """backend: auto|onnxruntime|openvino|tensorrt; precision: fp32|bf16|int8|fp16 or None (what the
        file holds). See runtime/backends/__init__.py."""
        if io_binding or cuda_graph or gpu_loop:  # ONNX Runtime with device buffers (runtime/backends/ort_cuda.py)
            if backend not in ("auto", "onnxruntime") or precision not in (None, "fp32", "fp16"):
                raise DdpmEdgeError("--io-binding, --cuda-graph and --gpu-loop run on onnxruntime only, at the "
                                    "precision of the file; drop --backend/--precision or these options")
            from .backends.ort_cuda import load_gpu_backend
            return cls(load_gpu_backend(path, device=device, io_binding=io_binding, cuda_graph=cuda_graph,
                                        gpu_loop=gpu_loop, max_batch=max_batch))
        return cls(load_unet(path, device=device, max_batch=max_batch, backend=backend, precision=precision),
                   auto=backend == "auto" and precision is None)

    def engine_for(self, sampler: str, steps: int | None, guidance: float, eta: float = 0.0,
                   spacing: str = "uniform"):
        """The backend a run of this configuration uses: the loaded one, or under `auto` the first engine
        of AUTO_ENGINES with an equal quality verdict at exactly this configuration."""
        if not self._auto:
            return self.unet
        from .gate import GateConfig, lookup, verdict_key
        steps = steps if steps is not None else default_steps(sampler, self.spec.T)
        config = GateConfig(sampler=sampler, steps=steps, guidance=float(guidance), eta=float(eta), spacing=spacing)
        # shipped or cached verdicts only (the same file, so the same sha256): never measures here
        equal = [(b, p) for b, p in AUTO_ENGINES if (v := lookup(verdict_key(self.unet.sha256, b, p, config)))
                 and v.equal]
        if not equal:     # nothing to move to: no other engine is even loaded
            return self.unet
        if self._faster is None:
            self._faster = []
            for backend, precision in AUTO_ENGINES:
                try:
                    self._faster.append(load_unet(self.unet.path, max_batch=self.unet.max_batch, backend=backend,
                                                  precision=precision))
                except DdpmEdgeError:     # not in this install, or this CPU cannot: stay on the loaded engine
                    pass
        return next((u for u in self._faster if (u.backend, u.precision) in equal), self.unet)

    @property
    def backend(self) -> str:
        return getattr(self.unet, "backend", "onnxruntime")

    @property
    def precision(self) -> str:
        return getattr(self.unet, "precision", self.spec.precision)

    @property
    def model_sha256(self) -> str:
        return self.unet.sha256

    def generate_raw(self, n: int, context=None, seed: int | None = None, sampler: str = DEFAULT_SAMPLER,
                     steps: int | None = None, guidance: float | None = None, noise=None,
                     progress: Progress | None = None, eta: float = 0.0, spacing: str = "uniform",
                     rng: str = DEFAULT_RNG) -> np.ndarray:
        """x_0 as float32 [n, C, H, W], unclipped. `noise` may inject x_T and z (see sampling.py).
        `sampler` names a solver of runtime/solvers (`steps` indices by `spacing`; `eta` for ddim); without `noise`, the noise comes from `seed` through the generator `rng`."""
        GenerationParams(n=n, sampler=sampler, steps=steps, seed=seed, guidance=guidance, eta=eta,
                         spacing=spacing, rng=rng)  # the one set of checks
        if guidance is None:   # w = 2 for a class with a modern solver (params.default_guidance)
            guidance = default_guidance(sampler, context)
        check_limit("a run's sample size n·C·H·W", n * int(np.prod(self.spec.sample_shape)), MAX_SAMPLE_VALUES,
                    "ask for fewer sprites")
        schedule = self.spec.schedule
        step_sampler = make_sampler(sampler, schedule, steps, eta=eta, spacing=spacing)
        c = parse_context(self.spec, context, n, seed)
        noise = noise if noise is not None else make_noise(rng.lower(), seed)
        loop = getattr(self.unet, "sample_loop", None)   # a device-resident loop (runtime/backends/ort_cuda.py)
        if loop is not None:
            check_gpu_loop(step_sampler.name)
            with self._lock:   # the loop reports about every 5% of steps, and at every multiple of `.every`
                return check_finite(loop(step_sampler, (n, *self.spec.sample_shape), c, noise, progress=progress,
                                         guidance=float(guidance), progress_every=getattr(progress, "every", None)))
        unet = guided(self.engine_for(sampler, steps, guidance, eta, spacing), float(guidance))
        with self._lock:
            return check_finite(sample(unet, step_sampler, (n, *self.spec.sample_shape), c, noise=noise,
                                       progress=progress))

    def generate(self, n: int, context=None, seed: int | None = None, sampler: str = DEFAULT_SAMPLER,
                 steps: int | None = None, guidance: float | None = None, background: str | None = None,
                 tolerance: int = DEFAULT_TOLERANCE, noise=None, progress: Progress | None = None,
                 eta: float = 0.0, spacing: str = "uniform", rng: str = DEFAULT_RNG) -> np.ndarray:
        """uint8 sprites [n, H, W, C]: as drawn (background None), with the background keyed to alpha
        ("transparent": [n, H, W, C+1]) or replaced by a colour ("white", "#RRGGBB"). Other keywords
        as `generate_raw`."""
        background, tolerance = parse_background(background), check_tolerance(tolerance)   # fail before sampling
        samples = self.generate_raw(n, context=context, seed=seed, sampler=sampler, steps=steps,
                                    guidance=guidance, noise=noise, progress=progress, eta=eta, spacing=spacing,
                                    rng=rng)
        return apply_background(to_uint8(samples), background, tolerance)

    def generate_batch(self, params: GenerationParams, frames_every: int | str | None = None,
                       progress: Progress | None = None) -> Batch:
        """Generate `params` (a random seed drawn when it has none) and keep what reproduces it.

        frames_every: None, or snapshot x every k sampling steps for an animation ("auto": about
        AUTO_FRAMES snapshots); the final sprites are not among the snapshots.
        """
        params = params.resolved(self.spec.T)
        total = len(make_sampler(params.sampler, self.spec.schedule, params.steps, eta=params.eta,
                                 spacing=params.spacing).timesteps)
        if frames_every == "auto":
            frames_every = max(1, math.ceil(total / AUTO_FRAMES))
        if frames_every is not None and (isinstance(frames_every, bool) or not isinstance(frames_every, int)
                                         or frames_every < 1):
            raise DdpmEdgeError(f"frames_every must be a positive integer or 'auto', got {frames_every!r}")
        if frames_every:
            check_limit("the animation's snapshot bytes", total // frames_every * params.n * int(np.prod(self.spec.sample_shape)),
                        MAX_ANIMATION_PIXELS, "use fewer frames (a larger frames_every) or fewer sprites")
        frames: list[np.ndarray] = []

        def on_step(done: int, total: int, x: np.ndarray):
            if frames_every and done % frames_every == 0 and done < total:
                frames.append(to_uint8(x))                                  # [n, H, W, C]
            return None if progress is None else progress(done, total, x)
        on_step.every = frames_every    # steps a device-resident loop must report x at

        samples = self.generate_raw(params.n, context=params.context, seed=params.seed, sampler=params.sampler,
                                    steps=params.steps, guidance=params.guidance, eta=params.eta,
                                    spacing=params.spacing, rng=params.rng,
                                    progress=on_step if frames_every or progress else None)
        sprites = apply_background(to_uint8(samples), params.background, params.tolerance, params.keying)
        engine = self.engine_for(params.sampler, params.steps, params.guidance, params.eta, params.spacing)
        from . import __version__
        return Batch(samples=samples, sprites=sprites, names=tuple(sprite_names(self.context_labels(params))),
                     params=params, model_sha256=self.model_sha256, model_path=self.model_path,
                     version=__version__, frames=tuple(frames), backend=getattr(engine, "backend", self.backend),
                     precision=getattr(engine, "precision", self.precision))

    def context_labels(self, params: GenerationParams) -> list[str]:
        """Per sprite: its class name (one-hot context), "sprite" (unconditional) or "mix"."""
        labels = []
        for row in parse_context(self.spec, params.context, params.n, params.seed):
            hot = np.flatnonzero(row)
            if len(hot) == 0:
                labels.append("sprite")
            elif len(hot) == 1 and row[hot[0]] == 1:
                labels.append(self.spec.context_names[hot[0]])
            else:
                labels.append("mix")
        return labels

    @property
    def model_path(self) -> str:
        """The model's file name only: records travel with game assets, local folders must not."""
        path = getattr(self.unet, "path", None)
        return Path(path).name if path is not None else ""

    @classmethod
    def load_for_record(cls, record: dict, engine: str | os.PathLike | None = None, source: str = "the PNG",
                        **load_options) -> "SpriteGenerator":
        """The model a record was generated with: `engine` if given, else the recorded model file name
        beside the PNG `source` or in the working folder, else the shipped default, whichever has the
        recorded sha256; refuses when none has."""
        want = record.get("model_sha256")
        if not isinstance(want, str) or not want:
            raise DdpmEdgeError(f"{source} does not record which model made it")
        if engine is not None:
            candidates = [Path(engine)]
        else:
            name = Path(str(record.get("model") or "")).name
            folders = ([Path(source).parent] if Path(source).suffix.lower() == ".png" else []) + [Path.cwd()]
            candidates = [folder / name for folder in folders] if name else []
            try:
                candidates.append(default_model_path())
            except DdpmEdgeError:
                pass
        seen = []
        for path in candidates:
            if not path.is_file():
                seen.append(f"{path} (missing)")
                continue
            sha = sha256_file(path)
            if sha == want:
                return cls.load(path, **load_options)
            seen.append(f"{path} (sha256 {sha[:12]}…)")
        raise DdpmEdgeError(f"{source} was made by model sha256 {want[:12]}…, which "
                            f"{'; '.join(seen) if seen else 'no model file found'} is not; "
                            "pass --engine with the model that made it")


def check_gpu_loop(sampler: str) -> None:
    """The fused device loop (--gpu-loop) has DDPM and DDIM steps only: refuse the others up front."""
    if sampler not in GPU_LOOP_SAMPLERS:
        raise DdpmEdgeError(f"--gpu-loop runs only the {' and '.join(GPU_LOOP_SAMPLERS)} steps on the device, "
                            f"not {sampler}; drop --gpu-loop or choose --sampler ddim")


def render(targets: Targets, engine: str | os.PathLike | None = None, source: str | os.PathLike | None = None,
           progress: Progress | None = None, load_options: dict | None = None,
           log: Callable[[str], None] | None = None, **settings) -> Batch:
    """The whole of `ddpm-run`: check every output can be written, load the model, generate, write.

    settings: GenerationParams and SheetLayout fields; None (or absent) means "not given". With a
    `source` PNG the recorded parameters and layout are the starting point and given settings
    override them; the model must be the one recorded (see SpriteGenerator.load_for_record).
    """
    targets.check()
    check_outputs([("--from", source), ("--engine", engine)],
                  [("--out", targets.sheet), ("the atlas", targets.atlas_path), ("--gif", targets.animation)])
    param_names = {f.name for f in fields(GenerationParams)}
    layout_names = {f.name for f in fields(SheetLayout)}
    unknown = set(settings) - param_names - layout_names
    if unknown:
        raise DdpmEdgeError(f"unknown settings: {', '.join(sorted(unknown))}")
    given = {k: v for k, v in settings.items() if v is not None}
    record = read_record(source) if source is not None else None
    sprite = record.get("sprite") if record else None   # a per-sprite PNG (an --each file): regenerate it alone
    if sprite is not None:
        if not isinstance(sprite, int) or isinstance(sprite, bool) or sprite < 0:
            raise DdpmEdgeError(f"{source}: its record names sprite {sprite!r}, not an index")
        if targets.atlas or targets.each is not None or targets.animation is not None or targets.sheet is None:
            raise DdpmEdgeError(f"{source} is one sprite of a sheet: --from it writes that sprite to --out only; "
                                "for an atlas, --each or an animation use --from the sheet")
    params = GenerationParams.from_record(record, str(source)) if record else GenerationParams()
    layout = SheetLayout.from_record(record) if record else SheetLayout()
    unchanged = not (set(given) & (param_names | layout_names))
    if "sampler" in given:
        for name, default in (("steps", None), ("eta", 0.0), ("spacing", "uniform")):
            given.setdefault(name, default)   # the recorded ones belong to the recorded sampler
    params = replace(params, **{k: v for k, v in given.items() if k in param_names})
    layout = replace(layout, **{k: v for k, v in given.items() if k in layout_names})
    if sprite is not None and sprite >= params.n:
        raise DdpmEdgeError(f"{source} is sprite {sprite} of its batch, but only {params.n} would be generated")
    options = dict(load_options or {})
    recorded_backend = record.get("backend", "onnxruntime") if record else None
    if recorded_backend == "onnxruntime-web":            # a sheet made in the browser (web/): ONNX Runtime here
        recorded_backend = "onnxruntime"
    if record and options.get("backend", "auto") == "auto" and options.get("precision") is None \
            and recorded_backend in ("onnxruntime", "openvino", "tensorrt") \
            and not any(options.get(k) for k in ("io_binding", "cuda_graph", "gpu_loop")):
        # the recorded engine (/1 records: onnxruntime fp32), unless the caller chose one: a bf16 sheet
        # regenerates on OpenVINO bf16, an fp32 one never moves to a faster engine (`auto`)
        options.update(backend=recorded_backend, precision=record.get("precision", "fp32"))
    if options.get("gpu_loop"):
        check_gpu_loop(params.sampler)        # before a GPU is needed
    generator = (SpriteGenerator.load_for_record(record, engine, str(source), **options) if record
                 else SpriteGenerator.load(engine, **options))
    if needs_gate(generator.unet):   # bf16/int8 run only once the yardstick found them equal to fp32
        r = params.resolved(generator.spec.T)
        check_gate(generator.unet, GateConfig(r.sampler, r.steps, r.guidance, r.eta, r.spacing),
                   run=r.steps <= MAX_GATE_STEPS_AT_RUN, log=log or (lambda message: None))
    spec = generator.spec   # every size is checked before sampling (an animation's frame count: at most)
    layout.check_size(params.n, spec.height, spec.width,
                      frames=AUTO_FRAMES + 1 if targets.animation and not targets.frames_every else 0)
    batch = generator.generate_batch(params, frames_every=(targets.frames_every or "auto") if targets.animation else None, progress=progress)
    if record and record.get("format") == RECORD_FORMAT_V1 and unchanged:
        batch = replace(batch, record_format=RECORD_FORMAT_V1)   # an old file regenerated: the same bytes
    if sprite is not None:
        write_sprite(batch, sprite, targets.sheet, layout, inputs=tuple(p for p in (source, engine) if p is not None))
        return batch
    write_outputs(batch, targets, layout, inputs=tuple(p for p in (source, engine) if p is not None))
    return batch
