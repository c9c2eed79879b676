"""The quality yardstick over sampler configurations: is each as good as the course's DDPM-500?

    python benchmarks/yardstick.py [CONFIG ...] [--n 500] [--seeds 0,1,2] [--model weights/unet.onnx]
                                   [--write-reference] [--out benchmarks/results/yardstick] [--smoke]

CONFIG is SOLVER:STEPS[:guidance=W][:spacing=S][:eta=E][:rng=R][:backend=B][:precision=P], e.g. ddpm:500,
ddim:25, dpmpp-2m-sde:10:guidance=2. Each row generates n class-balanced sprites (n/K per class, context
= the one-hot of the class) per seed with SpriteGenerator (ONNX Runtime, no torch), measures them with
runtime/quality (FD, KID, precision/recall, class accuracy) and judges them against DDPM-500 at the same
guidance: ddpm:500 rows of this run when present, else the shipped reference (weights/quality_reference.json).
Generated sprites are cached per (model sha256, config, seed, n) in benchmarks/cache/ (.npz), so
rows can be added and the run resumed. --write-reference stores this run's ddpm:500 rows (per guidance)
as the model's reference. Writes OUT.json and OUT.md (with the machine, the command and the seconds).
"""
from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ddpm_edge.runtime.api import SpriteGenerator
from ddpm_edge.runtime.errors import DdpmEdgeError
from ddpm_edge.runtime.files import atomic_path, atomic_write_bytes
from ddpm_edge.runtime.quality.yardstick import (DEFAULT_REFERENCE, REFERENCE_FORMAT, QualityReport, Yardstick,
                                                  reference_key, summarize)

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / "cache"
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "yardstick"
DEFAULT_ROWS = ("ddpm:500", "ddim:25", "ddim:50", "dpmpp-2m-sde:6", "dpmpp-2m-sde:8", "dpmpp-2m-sde:10",
                "dpmpp-2m-sde:15", "dpmpp-2m:10", "dpmpp-2m:20", "dpmpp-3m-sde:10",
                "ddpm:500:guidance=2", "dpmpp-2m-sde:10:guidance=2")
OPTIONS = {"guidance": float, "spacing": str, "eta": float, "rng": str, "backend": str, "precision": str}
# rng: the noise generator; pinned to pcg64 (what the reference and the cache were made with), whatever
# the library's default for new records is
DEFAULTS = {"guidance": 0.0, "spacing": "uniform", "eta": 0.0, "rng": "pcg64", "backend": None, "precision": None}
LOAD_OPTIONS = ("backend", "precision")


@dataclass(frozen=True)
class Config:
    solver: str
    steps: int
    options: dict = field(default_factory=dict)    # only the options given, with non-default values

    @property
    def guidance(self) -> float:
        return float(self.options.get("guidance", 0.0))

    @property
    def name(self) -> str:
        """Canonical: solver:steps then options in OPTIONS order (so equal configs share one cache entry)."""
        shown = [f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                 for k, v in sorted(self.options.items(), key=lambda item: list(OPTIONS).index(item[0]))]
        return ":".join([self.solver, str(self.steps), *shown])

    @property
    def unet_rows(self) -> int:
        """UNet evaluations per sprite: one per step, two with guidance (conditional and unconditional)."""
        return self.steps * (2 if self.guidance else 1)


def parse_config(text: str) -> Config:
    """'dpmpp-2m-sde:10:guidance=2' → Config; a one-line DdpmEdgeError for anything malformed."""
    parts = [p.strip() for p in str(text).strip().split(":")]
    if len(parts) < 2 or not parts[0]:
        raise DdpmEdgeError(f"config {text!r}: expected SOLVER:STEPS[:option=value...], "
                            "e.g. dpmpp-2m-sde:10:guidance=2")
    solver = parts[0].lower()
    try:
        steps = int(parts[1])
    except ValueError:
        raise DdpmEdgeError(f"config {text!r}: steps must be an integer, got {parts[1]!r}") from None
    if steps < 1:
        raise DdpmEdgeError(f"config {text!r}: steps must be at least 1")
    options = {}
    for part in parts[2:]:
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in OPTIONS or not value.strip():
            raise DdpmEdgeError(f"config {text!r}: option {part!r} is not one of "
                                f"{', '.join(k + '=…' for k in OPTIONS)}")
        if key in options:
            raise DdpmEdgeError(f"config {text!r}: {key} given twice")
        try:
            options[key] = OPTIONS[key](value.strip().lower() if OPTIONS[key] is str else value)
        except ValueError:
            raise DdpmEdgeError(f"config {text!r}: {key} must be a number, got {value!r}") from None
        if OPTIONS[key] is float and not (np.isfinite(options[key]) and options[key] >= 0):
            raise DdpmEdgeError(f"config {text!r}: {key} must be a finite number >= 0")
    options = {k: v for k, v in options.items() if v != DEFAULTS[k]}
    return Config(solver, steps, options)


def class_balanced(n: int, k: int) -> np.ndarray:
    """Requested class per sprite [n]: n // k of each class (the first n % k classes one more), grouped."""
    return np.sort(np.arange(n) % k)


def supported(function, names) -> set[str]:
    params = inspect.signature(function).parameters
    return {n for n in names if n in params}


def generate(generator: SpriteGenerator, config: Config, n: int, seed: int,
             log) -> tuple[np.ndarray, np.ndarray, float]:
    """(uint8 sprites [n,H,W,C], requested [n], seconds) for one config and seed."""
    k = generator.spec.n_cfeat
    requested = class_balanced(n, k)
    context = np.eye(k, dtype=np.float32)[requested]                       # [n, K] one-hot
    extra = {key: config.options[key] for key in ("eta", "spacing", "rng") if key in config.options}
    missing = set(extra) - supported(generator.generate, extra)
    if "rng" in supported(generator.generate, ["rng"]):
        extra.setdefault("rng", DEFAULTS["rng"])
    if missing:
        raise DdpmEdgeError(f"{config.name}: this install's SpriteGenerator.generate has no "
                            f"{', '.join(sorted(missing))}")
    started, shown = time.monotonic(), [0]

    def progress(done, total, x):
        if done * 10 // total > shown[0] and total >= 50:
            shown[0] = done * 10 // total
            log(f"    {done}/{total} steps, {time.monotonic() - started:.0f}s")

    sprites = generator.generate(n, context=context, seed=seed, sampler=config.solver, steps=config.steps,
                                 guidance=config.guidance, progress=progress, **extra)
    return sprites, requested, time.monotonic() - started


def cache_path(model_sha256: str, config: Config, seed: int, n: int, cache: Path = CACHE) -> Path:
    slug = config.name.replace(":", "_").replace("=", "")
    return Path(cache) / model_sha256[:16] / f"{slug}_seed{seed}_n{n}.npz"


def cached_generate(generator, config, n, seed, log, use_cache=True, cache: Path = CACHE):
    path = cache_path(generator.model_sha256, config, seed, n, cache)
    if use_cache and path.is_file():
        with np.load(path, allow_pickle=False) as data:
            if str(data["config"]) == config.name and str(data["model_sha256"]) == generator.model_sha256:
                return data["sprites"], data["requested"], float(data["seconds"]), True
    sprites, requested, seconds = generate(generator, config, n, seed, log)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, sprites=sprites, requested=requested, seconds=seconds, config=config.name,
                     model_sha256=generator.model_sha256)
    return sprites, requested, seconds, False


def load_generator(model, config: Config, loaded: dict) -> SpriteGenerator:
    """One generator per (backend, precision); those options only when the installed code has them."""
    key = tuple(config.options.get(k) for k in LOAD_OPTIONS)
    if key not in loaded:
        extra = {k: config.options[k] for k in LOAD_OPTIONS if k in config.options}
        missing = set(extra) - supported(SpriteGenerator.load, extra)
        if missing:
            raise DdpmEdgeError(f"{config.name}: this install's SpriteGenerator.load has no "
                                f"{', '.join(sorted(missing))}")
        loaded[key] = SpriteGenerator.load(model, **extra)
    return loaded[key]


def fmt(summary: dict, metric: str, digits: int) -> str:
    s = summary[metric]
    return f"{s['mean']:.{digits}f} ± {s['spread']:.{digits}f}"


def markdown(result: dict) -> str:
    noise = result["real_noise"]
    lines = [f"Quality yardstick — model `{result['model_sha256'][:12]}…`, "
             f"classifier `{result['classifier_sha256'][:12]}…`, "
             f"n = {result['n']} class-balanced sprites per seed, seeds {result['seeds']}; "
             "figures are mean ± spread (max − min over seeds).", "",
             "| config | UNet rows/sprite | seeds | FD ↓ | KID ↓ | precision | recall | accuracy | = DDPM-500? | s/seed |",
             "|---|---:|---|---:|---:|---:|---:|---:|---|---:|",
             f"| real vs real (halves of {sum(noise['halves'])}) | – | {noise['splits']} splits | {fmt(noise, 'fd', 2)} | "
             f"{fmt(noise, 'kid', 4)} | {fmt(noise, 'precision', 3)} | {fmt(noise, 'recall', 3)} | "
             f"{noise['accuracy']['held_out']:.3f} (held-out real) | – | – |"]
    for row in result["rows"]:
        s = row["summary"]
        verdict = row.get("verdict")
        mark = "–" if verdict is None else ("**equal**" if verdict["equal"] else "no")
        if row["config"] == row.get("against"):
            mark = "(the reference)"
        if verdict is not None and row["against"] != reference_key(0.0):
            mark += f" (vs {row['against']})"
        seeds = ",".join(str(r["seed"]) for r in row["reports"])
        lines.append(f"| {row['config']} | {row['unet_rows']} | {seeds} | {fmt(s, 'fd', 2)} | {fmt(s, 'kid', 4)} | "
                     f"{fmt(s, 'precision', 3)} | {fmt(s, 'recall', 3)} | {fmt(s, 'accuracy', 3)} | {mark} | "
                     f"{np.median(row['seconds']):.0f} |")
    if result.get("not_measured"):
        lines += ["", "Not measured (too few seeds generated in time): " + "; ".join(result["not_measured"]) + "."]
    lines += ["", f"Machine: {result['machine']}. Command: `{result['command']}` ({result['seconds']:.0f} s, "
              f"generation seconds are per seed, cached rows keep the seconds of the run that made them)."]
    return "\n".join(lines) + "\n"


def write_reference(path: Path, ys: Yardstick, model_sha256: str, rows: list[dict], command: str, machine: str):
    """Merge this run's ddpm:500 rows into the reference file (keyed by model sha256)."""
    try:
        table = json.loads(path.read_text()) if path.is_file() else {}
    except ValueError:
        table = {}
    if table.get("format") != REFERENCE_FORMAT or table.get("classifier_sha256") != ys.classifier.sha256:
        table = {"format": REFERENCE_FORMAT, "classifier_sha256": ys.classifier.sha256, "models": {}}
    entry = table["models"].setdefault(model_sha256, {"references": {}})
    for row in rows:
        entry["references"][row["config"]] = row["reports"]
    entry.update(machine=machine, command=command, measured=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    atomic_write_bytes(path, (json.dumps(table, indent=1, sort_keys=True) + "\n").encode())


def run(args) -> dict:
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, flush=True))
    started = time.monotonic()
    configs = [parse_config(c) for c in (args.configs or DEFAULT_ROWS)]
    seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    if not seeds or any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise DdpmEdgeError(f"--seeds must be distinct non-negative integers, got {args.seeds!r}")
    ys = Yardstick.load(reference=args.reference, kid_subsets=args.kid_subsets)
    loaded: dict = {}
    base = load_generator(args.model, Config("ddpm", 500), loaded)
    if tuple(base.spec.context_names) != ys.class_names:
        raise DdpmEdgeError(f"model classes {base.spec.context_names} differ from the classifier's {ys.class_names}")
    if args.n < len(ys.class_names):
        raise DdpmEdgeError(f"--n must be at least one sprite per class ({len(ys.class_names)})")
    noise = ys.real_noise(splits=args.noise_splits)
    log(f"real vs real ({noise['halves']} halves, {noise['splits']} splits): FD {fmt(noise, 'fd', 2)}, "
        f"KID {fmt(noise, 'kid', 4)}, precision {fmt(noise, 'precision', 3)}, recall {fmt(noise, 'recall', 3)}; "
        f"held-out real accuracy {noise['accuracy']['held_out']:.3f}")
    rows = []
    skipped = []
    for r, config in enumerate(configs, 1):
        generator = load_generator(args.model, config, loaded)
        reports, seconds, row_seeds = [], [], seeds
        if args.cached_only:   # aggregate what earlier (background) runs generated; generate nothing
            row_seeds = [seed for seed in seeds if cache_path(generator.model_sha256, config, seed, args.n,
                                                                 args.cache).is_file()]
            if len(row_seeds) < args.min_seeds:
                skipped.append(f"{config.name} ({len(row_seeds)} of {len(seeds)} seeds cached)")
                log(f"[{r}/{len(configs)} {config.name}] skipped: {skipped[-1]}")
                continue
        for s, seed in enumerate(row_seeds, 1):
            log(f"[{r}/{len(configs)} {config.name}, seed {seed} ({s}/{len(row_seeds)}), n {args.n}] generating…")
            sprites, requested, took, hit = cached_generate(generator, config, args.n, seed, log, not args.no_cache,
                                                              args.cache)
            report = ys.report(sprites, requested, config=config.name, seed=seed)
            reports.append(report)
            seconds.append(round(took, 1))
            log(f"    FD {report.fd:.2f}  KID {report.kid:.4f}  precision {report.precision:.3f}  "
                f"recall {report.recall:.3f}  accuracy {report.accuracy:.3f}  "
                f"({'cached, ' if hit else ''}{took:.0f}s)")
        rows.append({"config": config.name, "solver": config.solver, "steps": config.steps, **config.options,
                     "unet_rows": config.unet_rows, "model_sha256": generator.model_sha256,
                     "reports": [rep.to_dict() for rep in reports], "summary": summarize(reports), "seconds": seconds})
    # verdicts: against DDPM-500 at the same guidance (this run's rows, else the shipped reference), else w = 0
    measured = {row["config"]: [QualityReport.from_dict(d) for d in row["reports"]] for row in rows
                if row["solver"] == "ddpm" and row["steps"] == 500 and set(row) & set(LOAD_OPTIONS) == set()}
    for row in rows:
        for key in dict.fromkeys((reference_key(row.get("guidance", 0.0)), reference_key(0.0))):
            reference = measured.get(key)
            if reference is None:
                try:
                    guidance = float(key.partition("guidance=")[2] or 0)
                    reference = ys.reference(base.model_sha256, guidance)
                except DdpmEdgeError:
                    continue
            if len(reference) >= 2:
                verdict = ys.verdict([QualityReport.from_dict(d) for d in row["reports"]], reference)
                row["verdict"], row["against"] = {"equal": verdict.equal, "reason": verdict.reason}, key
                log(f"{row['config']}: {verdict.reason} (vs {key})")
                break
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], ROOT)] + sys.argv[1:])
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"Python {platform.python_version()}, "
               f"load average {os.getloadavg()[0]:.1f} at the end")
    result = {"format": "ddpm-edge-yardstick/1", "machine": machine, "command": command, "n": args.n, "seeds": seeds,
              "model_sha256": base.model_sha256, "model": base.model_path, "classifier_sha256": ys.classifier.sha256,
              "classifier_held_out_accuracy": ys.classifier.metadata.get("held_out_accuracy"),
              "real_noise": noise, "rows": rows, "not_measured": skipped,
              "seconds": round(time.monotonic() - started, 1)}
    if args.write_reference:
        chosen = [row for row in rows if row["config"] in measured]
        if not chosen:
            raise DdpmEdgeError("--write-reference needs ddpm:500 rows in this run")
        write_reference(Path(args.reference), ys, base.model_sha256, chosen, command, machine)
        log(f"wrote {args.reference} ({', '.join(r['config'] for r in chosen)} for model {base.model_sha256[:12]}…)")
    if args.out is not None:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out.with_suffix(".json"), (json.dumps(result, indent=1) + "\n").encode())
        atomic_write_bytes(out.with_suffix(".md"), markdown(result).encode())
        log(f"wrote {out.with_suffix('.json')} and {out.with_suffix('.md')}")
    return result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("configs", nargs="*", help=f"rows (default: {' '.join(DEFAULT_ROWS)})")
    parser.add_argument("--n", type=int, default=500, help="sprites per row and seed, class-balanced (default 500)")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--model", default=None, help="unet.onnx (default: the shipped model)")
    parser.add_argument("--reference", default=str(DEFAULT_REFERENCE), help="the DDPM-500 reference JSON")
    parser.add_argument("--write-reference", action="store_true", help="store this run's ddpm:500 rows as the reference")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="OUT.json and OUT.md (default benchmarks/results/yardstick)")
    parser.add_argument("--noise-splits", type=int, default=5, help="real-vs-real random half splits (default 5)")
    parser.add_argument("--kid-subsets", type=int, default=100, help="KID subsets per figure (default 100)")
    parser.add_argument("--cached-only", action="store_true",
                        help="generate nothing: measure the cached seeds of each row, skip rows with fewer than --min-seeds")
    parser.add_argument("--min-seeds", type=int, default=2, help="with --cached-only (default 2)")
    parser.add_argument("--cache", type=Path, default=CACHE, help="cache folder (default benchmarks/cache)")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write benchmarks/cache/")
    parser.add_argument("--smoke", action="store_true",
                        help="a quick check of the pipeline: n 10, seeds 0,1, 5 KID subsets, no cache; rows ddim:5 "
                             "(and ddim:5:guidance=2) unless given")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.n, args.seeds, args.no_cache, args.noise_splits, args.kid_subsets = 10, "0,1", True, 1, 5
        args.configs = args.configs or ["ddim:5", "ddim:5:guidance=2"]
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except DdpmEdgeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
