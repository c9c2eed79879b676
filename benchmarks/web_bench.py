"""The browser benchmark: the static page (web/) in headless Chromium, onnxruntime-web wasm with 1 and 2
threads, next to Python ONNX Runtime with 1 and 2 threads, same model, same parameters, one interleaved run.

    python benchmarks/web_bench.py [--rounds 3] [--n 16] [--sampler dpmpp-2m-sde] [--steps 10] [--guidance 2]
                                   [--out benchmarks/results/web]

Per UNet call: the median over every step of every round (guidance > 0: one call of 2N rows per step).
End to end: the page's generate time (noise, every step, guidance and the live preview drawn each step;
model load excluded) against SpriteGenerator.generate_batch in Python (the same work without a preview).
Each round runs every configuration once, in rotated order, so load drift hits all alike. Writes OUT.md
and OUT.json. Needs node, web/'s npm packages (npm ci) and Chromium (see web/README.md).
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
import web_page  # noqa: E402

from ddpm_edge.runtime import __version__  # noqa: E402
from ddpm_edge.runtime.api import SpriteGenerator  # noqa: E402
from ddpm_edge.runtime.backends import default_model_path  # noqa: E402
from ddpm_edge.runtime.backends.ort import OnnxUnet  # noqa: E402
from ddpm_edge.runtime.params import GenerationParams  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def python_run(threads: int, params: GenerationParams) -> tuple[list[float], float]:
    """(per-call ms of one generation, end-to-end ms) with ONNX Runtime limited to `threads`."""
    unet = OnnxUnet(default_model_path(), device="cpu", threads=threads)
    calls: list[float] = []

    def timed(x, t, c):
        start = time.perf_counter()
        eps = unet(x, t, c)
        calls.append((time.perf_counter() - start) * 1e3)
        return eps

    timed.spec, timed.sha256, timed.path, timed.max_batch = unet.spec, unet.sha256, unet.path, None
    generator = SpriteGenerator(unet)
    generator.unet = timed
    n, c, h, w = params.n, *unet.spec.sample_shape
    rows = 2 * n if params.guidance else n
    unet(np.zeros((rows, c, h, w), np.float32), np.zeros((rows, 1), np.float32),
         np.zeros((rows, unet.spec.n_cfeat), np.float32))                          # warm-up, as the page's first call
    start = time.perf_counter()
    generator.generate_batch(params)
    return calls, (time.perf_counter() - start) * 1e3


def table(data: dict) -> list[str]:
    """The Markdown table of a run (OUT.json's content)."""
    a, summary = data["args"], data["summary"]
    guidance = float(a["guidance"])
    rows = 2 * int(a["n"]) if guidance else int(a["n"])
    lines = ["# Browser benchmark (benchmarks/web_bench.py)", "",
             f"{a['n']} sprites, {a['sampler']} {a['steps']} steps, guidance {guidance:g} ({rows} rows per UNet call), "
             f"philox noise, weights/unet.onnx; {a['rounds']} interleaved rounds; machine: {data['machine']}; "
             f"ddpm-edge {data['version']}.", "",
             "| runtime | per UNet call (median) | end to end (median) | × Python ORT, same threads (per call) |",
             "| --- | --- | --- | --- |"]
    for name, s in summary.items():
        threads = name.split(" ", 2)[2]
        ratio = s["call_ms_median"] / summary[f"python ORT {threads}"]["call_ms_median"]
        lines.append(f"| {name} | {s['call_ms_median']:.0f} ms | {s['e2e_s_median']:.2f} s | {ratio:.2f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--sampler", default="dpmpp-2m-sde")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--guidance", type=float, default=2.0)
    ap.add_argument("--context", default="food")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "web")
    args = ap.parse_args(argv)
    params = GenerationParams(n=args.n, sampler=args.sampler, steps=args.steps, guidance=args.guidance,
                              context=args.context, seed=args.seed, rng="philox")
    query = (f"n={args.n}&sampler={args.sampler}&steps={args.steps}&guidance={args.guidance:g}"
             f"&context={args.context}&seed={args.seed}&ep=wasm&proxy=0&autorun=1")   # inference on the page thread
    configs = ["chromium wasm 1 thread", "chromium wasm 2 threads", "python ORT 1 thread", "python ORT 2 threads"]
    calls = {name: [] for name in configs}
    e2e = {name: [] for name in configs}
    load_before = os.getloadavg()[0]
    web_page.vendor()
    with web_page.serve() as url:
        for r in range(args.rounds):
            order = configs[r % len(configs):] + configs[:r % len(configs)]
            for name in order:
                threads = 1 if "1 thread" in name else 2
                if name.startswith("chromium"):
                    result = web_page.drive([f"{url}?{query}&threads={threads}"])[0]
                    if result["error"]:
                        raise SystemExit(f"web_bench: the page failed: {result['error']}")
                    timings = result["timings"]
                    assert timings["threads"] == threads, timings
                    calls[name] += timings["calls"]
                    e2e[name].append(timings["generateMs"])
                else:
                    per_call, total = python_run(threads, params)
                    calls[name] += per_call
                    e2e[name].append(total)
                print(f"[{time.strftime('%H:%M:%S')}] round {r + 1} {name}: {statistics.median(calls[name]):.0f} ms/call, "
                      f"{e2e[name][-1] / 1e3:.2f} s end to end", flush=True)
    summary = {name: {"call_ms_median": statistics.median(calls[name]), "e2e_s_median": statistics.median(e2e[name]) / 1e3,
                      "calls": len(calls[name]), "runs": len(e2e[name])} for name in configs}
    machine = (f"{cpu_name()}, {len(os.sched_getaffinity(0))} cores available, load average {load_before:.1f} before "
               f"and {os.getloadavg()[0]:.1f} after the run")
    data = {"args": {k: str(v) for k, v in vars(args).items()}, "machine": machine, "version": __version__,
            "summary": summary, "calls_ms": calls, "e2e_ms": e2e}
    lines = table(data)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(data, indent=1) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
