"""The CPU benchmark: the machine's matmul peak, every engine per UNet call, and 16 sprites end to end,
in one interleaved run, with the yardstick's verdict beside each end-to-end row.

    python benchmarks/speed.py [--sizes 1,16,64,256] [--budget 240] [--e2e-rounds 3] [--out benchmarks/results/speed]

1. Matmul peak, fp32 and bf16 (torch, 2048² matmul, all threads): each engine's rate also reads as a
   fraction of what this CPU can do.
2. Per UNet call at each n: torch eager fp32, torch bf16 autocast, ONNX Runtime fp32 and int8, OpenVINO
   fp32 / bf16 / int8 (benchmarks/engines.py: interleaved rounds, medians; a missing engine is listed
   with the reason; the int8 models are exported once into the cache when not shipped).
3. 16 sprites end to end (noise, steps, guidance, context and glue included), interleaved rounds, medians:
   the course's path (torch eager, DDPM-500), a torch pipeline with our default fast solver (what a torch
   user would write: diffusers' scheduler driving the torch model), ours with the course's DDPM-500 on
   ONNX Runtime, and ours with the default configuration on every engine. Beside each row, the
   yardstick's verdict against DDPM-500 (benchmarks/results/yardstick.json, benchmarks/yardstick.py) and,
   for low-precision engines, the quality gate's verdict against their fp32 twin (runtime/gate.py).

Progress is printed as it goes; about 10 minutes on the project's 2-core machine. Writes OUT.md (tables),
OUT.json (every number) and OUT.png (plot, with matplotlib). Needs the export extra (torch) and, for the
OpenVINO rows, the openvino extra.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from engines import (cpu_name, int8_model, interleaved, per_call, runtime_engine, say,  # noqa: E402
                     torch_engines)

from ddpm_edge.ddpm_ref import sampling as ref  # noqa: E402
from ddpm_edge.ddpm_ref.checkpoint import load_checkpoint  # noqa: E402
from ddpm_edge.runtime import __version__  # noqa: E402
from ddpm_edge.runtime.api import SpriteGenerator  # noqa: E402
from ddpm_edge.runtime.backends import default_model_path  # noqa: E402
from ddpm_edge.runtime.params import GenerationParams  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
COURSE = "course: torch eager, DDPM-500"


def matmul_peak(dtype: torch.dtype, size: int = 2048, seconds: float = 3.0) -> float:
    """GFLOP/s of a size² matmul in `dtype` on all threads (median of the calls in `seconds`)."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    medians = interleaved({"mm": lambda: torch.mm(a, b)}, lambda: (), seconds, min_rounds=5, max_rounds=50)
    return 2 * size ** 3 / medians["mm"][0] / 1e9


def diffusers_pipeline(model, schedule, params: GenerationParams) -> Callable[[int, int], object] | None:
    """A torch user's pipeline: diffusers' scheduler for our default solver, driving the torch model."""
    try:
        from diffusers import DPMSolverMultistepScheduler
    except ImportError:
        return None
    if not params.sampler.startswith("dpmpp-2m"):
        return None
    scheduler = DPMSolverMultistepScheduler(
        num_train_timesteps=schedule.T + 1, trained_betas=schedule.betas.astype(np.float64),
        algorithm_type="sde-dpmsolver++" if params.sampler.endswith("sde") else "dpmsolver++", solver_order=2,
        final_sigmas_type="zero", timestep_spacing="trailing", lower_order_final=True)
    w = params.guidance

    def run(n: int, seed: int):
        generator = torch.Generator().manual_seed(seed)
        scheduler.set_timesteps(params.steps)
        x = torch.randn(n, 3, 16, 16, generator=generator)
        c = torch.eye(5)[torch.arange(n) % 5]
        with torch.no_grad():
            for step in scheduler.timesteps:
                t = torch.full((n, 1), float(step) / schedule.T)
                if w:
                    eps = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([c, torch.zeros_like(c)]))
                    eps = (1 + w) * eps[:n] - w * eps[n:]
                else:
                    eps = model(x, t, c)
                x = scheduler.step(eps, step, x, generator=generator).prev_sample
        return x
    return run


def config_name(sampler: str, steps: int, guidance: float, spacing: str = "uniform", eta: float = 0.0) -> str:
    """The yardstick's canonical config name (benchmarks/yardstick.py Config.name)."""
    name = f"{sampler}:{steps}"
    name += f":guidance={guidance:g}" if guidance else ""
    name += f":spacing={spacing}" if spacing != "uniform" else ""
    return name + (f":eta={eta:g}" if eta else "")


def yardstick_verdicts() -> dict[str, str]:
    """config name → 'FD x ± s, acc y: EQUAL/NOT equal to DDPM-500', from benchmarks/results/yardstick.json."""
    path = ROOT / "benchmarks" / "results" / "yardstick.json"
    if not path.is_file():
        return {}
    out = {}
    for row in json.loads(path.read_text()).get("rows", []):
        s = row.get("summary", {})
        text = (f"FD {s['fd']['mean']:.2f} ± {s['fd']['spread']:.2f}, acc {s['accuracy']['mean']:.2f}"
                if "fd" in s and "accuracy" in s else "")
        verdict = row.get("verdict")
        if verdict is not None:
            text += "; equal to DDPM-500" if verdict.get("equal") else "; NOT equal to DDPM-500"
        elif row.get("solver") == "ddpm":
            text += "; the reference"
        out[row["config"]] = text
    return out


def end_to_end(model, schedule, ours: dict[str, SpriteGenerator], params: GenerationParams, rounds: int,
               n: int = 16) -> list[dict]:
    """Seconds for n class-balanced sprites, each path once per round (rotated order), medians."""
    k = 5
    c_np = np.eye(k, dtype=np.float32)[np.arange(n) % k]
    x_T = torch.randn(n, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    fns: dict[str, Callable] = {COURSE: lambda: course_ddpm(model, schedule, x_T, torch.from_numpy(c_np))}
    pipeline = diffusers_pipeline(model, schedule, params)
    if pipeline is not None:
        fns[f"torch + diffusers {params.sampler}-{params.steps}"] = lambda: pipeline(n, 0)
    settings = dict(seed=0, sampler=params.sampler, steps=params.steps, guidance=params.guidance,
                    spacing=params.spacing, eta=params.eta)
    first = next(iter(ours.values()))
    fns["ours: onnxruntime fp32, DDPM-500"] = lambda: first.generate_raw(n, context=c_np, seed=0, sampler="ddpm")
    for label, generator in ours.items():
        fns[label] = lambda g=generator: g.generate_raw(n, context=c_np, **settings)
    say(f"end to end, {n} sprites, {rounds} interleaved rounds: {', '.join(fns)}")
    medians = interleaved({name: fn for name, fn in fns.items()}, lambda: (), 0.0, min_rounds=rounds,
                          max_rounds=rounds)
    course = medians[COURSE][0]
    return [{"path": name, "seconds": s, "speedup_vs_course": course / s} for name, (s, _) in medians.items()]


def course_ddpm(model, schedule, x_T, c):
    """The course's sampling loop (ddpm_ref.sampling.sample_ddpm: torch eager, 500 steps, fresh noise)."""
    with torch.no_grad():
        return ref.sample_ddpm(model, schedule, x_T, c)


def write_plot(out: Path, calls: list[dict], e2e: list[dict]) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    for engine in dict.fromkeys(r["engine"] for r in calls):
        pts = [(r["n"], r["ms"] / r["n"]) for r in calls if r["engine"] == engine and r["ms"]]
        if pts:
            left.plot(*zip(*pts), marker="o", label=engine)
    left.set(xscale="log", yscale="log", xlabel="batch n", ylabel="ms per sprite per UNet call",
             title="one UNet call, per sprite (lower is better)")
    left.legend(fontsize=7)
    right.barh([r["path"] for r in e2e][::-1], [r["seconds"] for r in e2e][::-1])
    right.set(xscale="log", xlabel="seconds for 16 sprites (log)", title="16 sprites end to end")
    right.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", type=Path, default=ROOT / "weights" / "model.pth")
    parser.add_argument("--onnx", type=Path, default=None, help="fp32 UNet (default: the shipped model)")
    parser.add_argument("--int8-onnx", type=Path, default=None)
    parser.add_argument("--int8-xml", type=Path, default=None)
    parser.add_argument("--sizes", default="1,16,64,256")
    parser.add_argument("--budget", type=float, default=240.0, help="seconds of per-call timing over all sizes")
    parser.add_argument("--e2e-rounds", type=int, default=3)
    parser.add_argument("--e2e-n", type=int, default=16, help="sprites per end-to-end run")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    parser.add_argument("--smoke", action="store_true", help="check the script's workings in seconds (tests): "
                        "n=1 per call, 2 sprites end to end, one round, no int8 export; not numbers to report")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "speed")
    args = parser.parse_args()
    if args.smoke:
        args.sizes, args.budget, args.e2e_rounds, args.e2e_n = "1", 0.1, 1, 2
    started = time.monotonic()
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    fp32 = args.onnx or default_model_path()
    if args.smoke:   # int8 engines only when given: exporting one takes minutes
        int8_onnx, int8_xml = args.int8_onnx or Path("(not exported in --smoke)"), args.int8_xml or Path("(none)")
    else:
        int8_onnx, int8_xml = int8_model(fp32, ".onnx", args.int8_onnx), int8_model(fp32, ".xml", args.int8_xml)
    model = load_checkpoint(args.weights).model.eval()
    default_gen = SpriteGenerator.load(fp32 if args.onnx else None)
    schedule = default_gen.spec.schedule

    say("matmul peak (2048², torch)")
    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    say(f"peak: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s")

    say("loading engines")
    runtime = {"onnxruntime fp32": runtime_engine(fp32),
               "onnxruntime int8": runtime_engine(int8_onnx),
               "openvino fp32": runtime_engine(fp32, backend="openvino", precision="fp32"),
               "openvino bf16": runtime_engine(fp32, backend="openvino", precision="bf16"),
               "openvino int8": runtime_engine(int8_xml, backend="openvino", precision="int8")}
    engines = {**torch_engines(args.weights), **runtime}
    for name, engine in engines.items():
        if not callable(engine):
            say(f"{name}: unavailable ({engine})")
    calls = per_call(engines, [int(v) for v in args.sizes.split(",")], args.budget)

    default = GenerationParams(context="food").resolved(schedule.T)   # a class asked for: the default guidance
    unet = default_gen.engine_for(default.sampler, default.steps, default.guidance, default.eta, default.spacing)
    label = f"ours: default ({getattr(unet, 'backend', '?')} {getattr(unet, 'precision', '?')}, auto)"
    ours = {label: default_gen}
    ours.update({f"ours: {name}": SpriteGenerator(engine) for name, engine in runtime.items() if callable(engine)})
    e2e = end_to_end(model, schedule, ours, default, args.e2e_rounds, n=args.e2e_n)
    verdicts = yardstick_verdicts()
    fast = config_name(default.sampler, default.steps, default.guidance, default.spacing, default.eta)
    for row in e2e:
        config = "ddpm:500" if "DDPM-500" in row["path"] else fast
        row["config"] = config
        row["quality"] = verdicts.get(config, "not measured")

    machine = (f"{cpu_name()}, {threads} threads, load average {os.getloadavg()[0]:.1f} at the end; "
               f"torch {torch.__version__}; ddpm-edge {__version__}; Python {platform.python_version()}")
    command = " ".join(["python benchmarks/speed.py", *sys.argv[1:]])
    lines = [f"Machine: {machine}  ", f"Command: `{command}`", "",
             f"Matmul peak (2048², torch): fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s", "",
             "Per UNet call (median of interleaved rounds):", "",
             "| n | engine | ms | × onnxruntime fp32 | GFLOP/s | of fp32 peak | of bf16 peak |",
             "|---|---|---|---|---|---|---|"]
    for r in calls:
        base = next((b["ms"] for b in calls if b["n"] == r["n"] and b["engine"] == "onnxruntime fp32"), None)
        if r["ms"] is None:
            lines.append(f"| {r['n']} | {r['engine']} | — | unavailable: {r['why'][:80]} | | | |")
        else:
            lines.append(f"| {r['n']} | {r['engine']} | {r['ms']:.2f} | {base / r['ms']:.2f}× | {r['gflops']:.0f} | "
                         f"{r['gflops'] / peak['fp32']:.0%} | {r['gflops'] / peak['bf16']:.0%} |")
    lines += ["", f"{args.e2e_n} sprites end to end (class-balanced, median of {args.e2e_rounds} interleaved rounds; "
              f"default: {default.sampler}, {default.steps} steps, guidance {default.guidance:g}):", "",
              "| path | seconds | speed-up vs course | quality (yardstick, config) |", "|---|---|---|---|"]
    lines += [f"| {r['path']} | {r['seconds']:.3f} | {r['speedup_vs_course']:.1f}× | {r['quality']} (`{r['config']}`) |"
              for r in e2e]
    table = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(table)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"machine": machine, "command": command, "peak_gflops": peak, "per_call": calls, "end_to_end": e2e,
         "default": default.as_dict()}, indent=1) + "\n")
    write_plot(args.out.with_suffix(".png"), calls, e2e)
    print("\n" + table)
    say(f"done in {time.monotonic() - started:.0f} s; wrote {args.out.with_suffix('.md')}, .json, .png")


if __name__ == "__main__":
    main()
