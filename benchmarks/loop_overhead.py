"""What the sampling loop costs besides the UNet, per solver: the NumPy step, the noise draws and the glue
(time input, bookkeeping, progress), as a fraction of UNet time. Issue 9's target: ≤ 3% at n = 16.

    python benchmarks/loop_overhead.py                       # shipped model, n = 16, every solver
    python benchmarks/loop_overhead.py --n 16 --repeats 5 --max-calls 25 --out overhead.md

Each repeat runs every solver once (interleaved, so machine load hits them alike) through
runtime/sampling.py `sample`, with the UNet, the solver's step and the noise source wrapped in timers;
glue = wall time − UNet − step − noise (the timers' own cost lands in glue, so it is an upper bound).
Trajectories longer than --max-calls (DDPM's 500) are cut after that many UNet calls: the cost per step
does not depend on how many follow. Medians over repeats; progress on stderr; the table on stdout.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from ddpm_edge.runtime.backends import load_unet
from ddpm_edge.runtime.sampling import DEFAULT_RNG, RNGS, guided, make_noise, sample
from ddpm_edge.runtime.solvers import DEFAULT_STEPS, SAMPLERS, make_sampler

TARGET = 0.03


class Timed:
    """Accumulates the wall time spent in calls of `fn`."""

    def __init__(self, fn):
        self.fn, self.seconds, self.calls = fn, 0.0, 0

    def __call__(self, *args):
        start = time.perf_counter()
        try:
            return self.fn(*args)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1


class TimedSolver:
    """A solver whose `step` is timed and whose trajectory stops after `max_calls` timesteps."""

    def __init__(self, solver, max_calls: int):
        self.solver = solver
        self.schedule = solver.schedule
        self.timesteps = solver.timesteps[:max_calls]
        self.needs_noise = solver.needs_noise
        self.step = Timed(solver.step)


class TimedNoise:
    """x_T and every z timed (x_T counts as noise, spread over the run's calls)."""

    def __init__(self, noise):
        self.initial = Timed(noise.initial)
        self.step = Timed(noise.step)


def run_once(unet, name: str, steps: int | None, n: int, shape: tuple, context: np.ndarray, seed: int,
             max_calls: int, guidance: float, rng: str = DEFAULT_RNG) -> dict:
    timed_unet = Timed(guided(unet, guidance))
    solver = TimedSolver(make_sampler(name, unet.spec.schedule, steps), max_calls)
    noise = TimedNoise(make_noise(rng, seed))
    start = time.perf_counter()
    sample(timed_unet, solver, (n, *shape), context, noise=noise, progress=lambda done, total, x: None)
    wall = time.perf_counter() - start
    calls = timed_unet.calls
    noise_seconds = noise.initial.seconds + noise.step.seconds
    glue = wall - timed_unet.seconds - solver.step.seconds - noise_seconds
    return {"calls": calls, "unet_ms": 1e3 * timed_unet.seconds / calls,
            "step_us": 1e6 * solver.step.seconds / calls, "noise_us": 1e6 * noise_seconds / calls,
            "glue_us": 1e6 * glue / calls, "overhead": (wall - timed_unet.seconds) / timed_unet.seconds}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, default=None, help="UNet .onnx (default: the shipped model)")
    parser.add_argument("--n", type=int, default=16, help="sprites per batch (default 16)")
    parser.add_argument("--solvers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    parser.add_argument("--steps", type=int, default=None, help="steps for every solver but ddpm (default: each "
                                                                "solver's default)")
    parser.add_argument("--max-calls", type=int, default=25, help="cut longer trajectories after this many calls")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--guidance", type=float, default=0.0, help="classifier-free guidance w (2N UNet rows)")
    parser.add_argument("--rng", default=DEFAULT_RNG, choices=RNGS, help=f"noise generator (default {DEFAULT_RNG})")
    parser.add_argument("--backend", default="onnxruntime", help="auto|onnxruntime|openvino (default onnxruntime)")
    parser.add_argument("--precision", default=None, help="fp32|bf16|int8 (default: what the file holds)")
    parser.add_argument("--out", type=Path, default=None, help="also write the table (.md) and figures (.json)")
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeats < 1 or args.max_calls < 1:
        parser.error("--n, --repeats and --max-calls must be at least 1")

    unet = load_unet(args.onnx, device="cpu", backend=args.backend, precision=args.precision)
    spec = unet.spec
    context = np.zeros((args.n, spec.n_cfeat), dtype=np.float32)
    x = np.zeros((args.n, *spec.sample_shape), dtype=np.float32)
    unet(x, np.zeros((args.n, 1), np.float32), context)       # warm-up: session and arena
    runs: dict[str, list[dict]] = {name: [] for name in args.solvers}
    for r in range(args.repeats):
        for name in args.solvers:
            steps = None if name == "ddpm" else args.steps
            result = run_once(unet, name, steps, args.n, spec.sample_shape, context, seed=r, max_calls=args.max_calls,
                              guidance=args.guidance, rng=args.rng)
            runs[name].append(result)
            print(f"[{r + 1}/{args.repeats}] {name}: UNet {result['unet_ms']:.2f} ms/call, overhead "
                  f"{100 * result['overhead']:.2f}%", file=sys.stderr, flush=True)

    machine = f"{platform.machine()} {os.cpu_count()} CPUs, {platform.python_implementation()} " \
              f"{platform.python_version()}, NumPy {np.__version__}"
    rows, figures = [], {}
    for name in args.solvers:
        med = {key: statistics.median(run[key] for run in runs[name]) for key in runs[name][0]}
        steps = DEFAULT_STEPS[name] if name == "ddpm" or args.steps is None else args.steps
        med["steps"] = spec.T if steps is None else steps
        figures[name] = med
        verdict = "ok" if med["overhead"] <= TARGET else "ABOVE 3%"
        rows.append(f"| {name} | {med['steps']} | {int(med['calls'])} | {med['unet_ms']:.2f} | {med['step_us']:.0f} | "
                    f"{med['noise_us']:.0f} | {med['glue_us']:.0f} | {100 * med['overhead']:.2f}% | {verdict} |")
    table = "\n".join([
        f"Loop overhead, n = {args.n}, guidance {args.guidance:g}, noise {args.rng}, {unet.backend} {unet.precision}, "
        f"{args.repeats} interleaved repeats (medians), "
        f"up to {args.max_calls} UNet calls per run; {machine}; model {Path(getattr(unet, 'path', '') or '').name}",
        "",
        "| solver | steps | calls timed | UNet ms/call | step µs | noise µs | glue µs | overhead / UNet | ≤ 3% |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows]) + "\n"
    print(table)
    if args.out is not None:
        args.out.write_text(table, encoding="utf-8")
        args.out.with_suffix(".json").write_text(json.dumps({"n": args.n, "guidance": args.guidance,
                                                             "machine": machine, "solvers": figures}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
