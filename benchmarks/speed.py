"""The CPU benchmark: every engine per UNet call, and 16 sprites end to end, in one interleaved run.

    python benchmarks/speed.py [--sizes 1,16,64,256] [--rounds 9] [--e2e-rounds 3] [--out benchmarks/results/speed]

1. The machine's matmul peak, fp32 and bf16 (torch, 2048² matmul), so each engine's rate reads as a fraction
   of what this CPU can do.
2. Per UNet call at each n: torch eager fp32, torch bf16 autocast, ONNX Runtime fp32 and int8, OpenVINO
   fp32 / bf16 / int8 (an engine that is not installed or has no model is listed with the reason). Rounds
   are interleaved (every engine once per round, in rotated order) so load drift hits all alike; medians.
3. 16 sprites end to end (noise, steps, context and glue included): the course's path (torch eager,
   DDPM-500), a torch pipeline with our default fast solver (what a torch user would write: diffusers'
   scheduler driving the torch model), and ours — the default configuration and each precision / backend
   with the same solver and steps. Beside each row, its quality by the yardstick
   (benchmarks/results/yardstick.json, from benchmarks/yardstick.py) where that configuration was measured.

Progress is printed as it goes; the whole run takes about 10 minutes on the project's 2-core machine.
Writes OUT.md (tables), OUT.json (every number) and OUT.png (plot, with matplotlib). Needs the export
extra (torch) and, for the OpenVINO rows, the openvino extra.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ddpm_edge.ddpm_ref import sampling as ref
from ddpm_edge.ddpm_ref.checkpoint import load_checkpoint
from ddpm_edge.runtime import __version__
from ddpm_edge.runtime.api import SpriteGenerator
from ddpm_edge.runtime.backends import default_model_path, load_unet
from ddpm_edge.runtime.params import GenerationParams

ROOT = Path(__file__).resolve().parents[1]
MACS_PER_SPRITE = 150.6e6   # counted from the course UNet's layer shapes (3×16×16, n_feat 64)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, warmup: int = 1) -> dict[str, float]:
    """Median seconds of each fn over `rounds` rounds; each round calls every fn once, the order rotated."""
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def matmul_peak(dtype: torch.dtype, size: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of a size² matmul in `dtype` on all threads (median)."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    seconds = interleaved({"mm": lambda: torch.mm(a, b)}, repeats, warmup=2)["mm"]
    return 2 * size ** 3 / seconds / 1e9


@dataclass
class Engine:
    name: str
    call: Callable | None          # (x, t, c) numpy → eps, or None when unavailable
    why: str = ""


def torch_engines(model) -> list[Engine]:
    def eager(x, t, c):
        with torch.no_grad():
            return model(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(c))

    def bf16(x, t, c):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return model(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(c))

    return [Engine("torch eager fp32", eager), Engine("torch bf16 autocast", bf16)]


def runtime_engine(name: str, path: Path | None, **options) -> Engine:
    """One of our backends through the runtime's own loader, or the reason it is unavailable."""
    if path is None or not Path(path).exists():
        return Engine(name, None, f"no model file ({path})")
    try:
        unet = load_unet(path, device="cpu", **options)
    except Exception as e:  # the benchmark lists what it cannot run
        return Engine(name, None, str(e).splitlines()[0][:120])
    return Engine(name, unet)


def per_call(engines: list[Engine], sizes: list[int], rounds: int) -> list[dict]:
    rows = []
    live = [e for e in engines if e.call is not None]
    for n in sizes:
        rng = np.random.default_rng(n)
        x = rng.standard_normal((n, 3, 16, 16), dtype=np.float32)
        t = rng.uniform(0, 1, (n, 1)).astype(np.float32)
        c = np.eye(5, dtype=np.float32)[rng.integers(0, 5, n)]
        medians = interleaved({e.name: (lambda e=e: e.call(x, t, c)) for e in live}, rounds, warmup=2)
        for e in engines:
            ms = medians.get(e.name)
            rows.append({"n": n, "engine": e.name, "ms": None if ms is None else ms * 1e3, "why": e.why,
                         "gflops": None if ms is None else 2 * MACS_PER_SPRITE * n / ms / 1e9})
        say(f"per call n={n}: " + ", ".join(f"{e.name} {medians[e.name] * 1e3:.2f} ms" for e in live))
    return rows


def diffusers_pipeline(model, schedule, params: GenerationParams):
    """A torch user's pipeline: diffusers' scheduler for the same solver, driving the torch model."""
    from diffusers import DPMSolverMultistepScheduler

    sde = params.sampler.endswith("sde")
    scheduler = DPMSolverMultistepScheduler(
        num_train_timesteps=schedule.T + 1, trained_betas=schedule.betas.astype(np.float64),
        algorithm_type="sde-dpmsolver++" if sde else "dpmsolver++", solver_order=2,
        final_sigmas_type="zero", timestep_spacing="trailing", lower_order_final=True)

    def run(n: int, seed: int):
        generator = torch.Generator().manual_seed(seed)
        scheduler.set_timesteps(params.steps)
        x = torch.randn(n, 3, 16, 16, generator=generator)
        c = torch.zeros(n, 5)
        with torch.no_grad():
            for step in scheduler.timesteps:
                t = torch.full((n, 1), float(step) / schedule.T)
                x = scheduler.step(model(x, t, c), step, x, generator=generator).prev_sample
        return x
    return run


def yardstick_rows() -> list[dict]:
    path = ROOT / "benchmarks" / "results" / "yardstick.json"
    if not path.is_file():
        return []
    data = json.loads(path.read_text())
    return data.get("rows", data.get("configurations", []))


def quality_of(config: dict, rows: list[dict]) -> str:
    """The yardstick's FD and class accuracy for a configuration, where it was measured."""
    keys = ("sampler", "steps", "guidance", "backend", "precision")
    for row in rows:
        if all(row.get(k, config.get(k)) == config.get(k) for k in keys if k in config):
            fd, acc = row.get("fd"), row.get("accuracy")
            if isinstance(fd, dict):
                fd, acc = fd.get("mean"), (acc or {}).get("mean")
            if fd is not None:
                return f"FD {fd:.2f}, acc {acc:.2f}" if acc is not None else f"FD {fd:.2f}"
    return "not measured"


def end_to_end(model, schedule, ours: dict[str, SpriteGenerator], params: GenerationParams, rounds: int,
               n: int = 16) -> list[dict]:
    x_T = torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    c = torch.zeros(n, 5)
    fns: dict[str, Callable] = {"course: torch eager, DDPM-500": lambda: ref.sample_ddpm(model, schedule, x_T, c)}
    try:
        pipeline = diffusers_pipeline(model, schedule, params)
        fns[f"torch + diffusers {params.sampler}-{params.steps}"] = lambda: pipeline(n, 0)
    except Exception as e:  # diffusers missing or the solver has no diffusers twin
        say(f"no torch pipeline row: {str(e).splitlines()[0][:120]}")
    for label, generator in ours.items():
        fns[label] = lambda g=generator: g.generate_raw(n, seed=0, sampler=params.sampler, steps=params.steps)
    say(f"end to end, {n} sprites, {rounds} interleaved rounds: {', '.join(fns)}")
    medians = interleaved(fns, rounds, warmup=1)
    course = medians["course: torch eager, DDPM-500"]
    return [{"path": name, "seconds": s, "speedup_vs_course": course / s} for name, s in medians.items()]


def write_plot(out: Path, calls: list[dict], e2e: list[dict]) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.5))
    for engine in dict.fromkeys(r["engine"] for r in calls):
        pts = [(r["n"], r["ms"] / r["n"]) for r in calls if r["engine"] == engine and r["ms"]]
        if pts:
            left.plot(*zip(*pts), marker="o", label=engine)
    left.set(xscale="log", yscale="log", xlabel="batch n", ylabel="ms per sprite per UNet call",
             title="UNet call, per sprite")
    left.legend(fontsize=7)
    right.barh([r["path"] for r in e2e], [r["seconds"] for r in e2e])
    right.set(xscale="log", xlabel="seconds for 16 sprites (log)", title="16 sprites end to end")
    right.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=ROOT / "weights" / "model.pth")
    parser.add_argument("--onnx", type=Path, default=None, help="fp32 UNet (default: the shipped model)")
    parser.add_argument("--int8-onnx", type=Path, default=ROOT / "weights" / "unet_int8.onnx")
    parser.add_argument("--sizes", default="1,16,64,256")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds per batch size")
    parser.add_argument("--e2e-rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="default: all cores")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "speed")
    args = parser.parse_args()
    started = time.monotonic()
    if args.threads:
        torch.set_num_threads(args.threads)
    onnx = args.onnx or default_model_path()
    model = load_checkpoint(args.weights).model.eval()
    schedule = SpriteGenerator.load(onnx).spec.schedule

    say("matmul peak (2048², torch)")
    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    say(f"peak: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s")

    engines = torch_engines(model) + [
        runtime_engine("onnxruntime fp32", onnx),
        runtime_engine("onnxruntime int8", args.int8_onnx),
        *(runtime_engine(f"openvino {p}", onnx, backend="openvino", precision=p) for p in ("fp32", "bf16")),
        runtime_engine("openvino int8", args.int8_onnx.with_suffix(".xml"), backend="openvino", precision="int8"),
    ]
    for e in engines:
        if e.call is None:
            say(f"{e.name}: unavailable ({e.why})")
    calls = per_call(engines, [int(v) for v in args.sizes.split(",")], args.rounds)

    default = GenerationParams().resolved(schedule.T)
    ours = {f"ours, default ({default.sampler}-{default.steps})": SpriteGenerator.load(onnx)}
    for e in engines[2:]:
        if e.call is not None:
            ours[f"ours, {e.name}, {default.sampler}-{default.steps}"] = SpriteGenerator(e.call)
    e2e = end_to_end(model, schedule, ours, default, args.e2e_rounds)
    quality = yardstick_rows()
    for row in e2e:
        row["quality"] = quality_of({"sampler": "ddpm", "steps": schedule.T} if row["path"].startswith("course")
                                    else {"sampler": default.sampler, "steps": default.steps}, quality)

    machine = (f"{cpu_name()}, {torch.get_num_threads()} threads; torch {torch.__version__}; "
               f"ddpm-edge {__version__}; Python {platform.python_version()}")
    lines = [f"Machine: {machine}", "", f"Matmul peak (2048², torch): fp32 {peak['fp32']:.0f} GFLOP/s, "
             f"bf16 {peak['bf16']:.0f} GFLOP/s", "", "Per UNet call (median of interleaved rounds):", "",
             "| n | engine | ms | GFLOP/s | of fp32 peak | of bf16 peak |", "|---|---|---|---|---|---|"]
    for r in calls:
        if r["ms"] is None:
            lines.append(f"| {r['n']} | {r['engine']} | — | unavailable: {r['why']} | | |")
        else:
            lines.append(f"| {r['n']} | {r['engine']} | {r['ms']:.2f} | {r['gflops']:.0f} | "
                         f"{r['gflops'] / peak['fp32']:.0%} | {r['gflops'] / peak['bf16']:.0%} |")
    lines += ["", "16 sprites end to end (median of interleaved rounds):", "",
              "| path | seconds | speed-up vs course | quality (yardstick) |", "|---|---|---|---|"]
    lines += [f"| {r['path']} | {r['seconds']:.3f} | {r['speedup_vs_course']:.1f}× | {r['quality']} |" for r in e2e]
    table = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(table)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"machine": machine, "peak_gflops": peak, "per_call": calls, "end_to_end": e2e,
         "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])}, indent=1) + "\n")
    write_plot(args.out.with_suffix(".png"), calls, e2e)
    print("\n" + table)
    say(f"done in {time.monotonic() - started:.0f} s; wrote {args.out.with_suffix('.md')}, .json, .png")


if __name__ == "__main__":
    main()
