"""Per UNet call, every CPU engine, one interleaved run: medians and eps error vs fp32.

    python benchmarks/engines.py [--sizes 1,16,64,256] [--budget 300] [--out benchmarks/results/engines]

Engines: torch eager fp32, torch bf16 autocast, onnxruntime fp32 / int8, OpenVINO fp32 / bf16 / int8
(an engine whose package or model is missing is listed with the reason). The int8 models are
weights/unet_int8.onnx and .xml when present, else exported once (ddpm-export --int8) into the cache
($DDPM_EDGE_CACHE or ~/.cache/ddpm-edge), keyed by the fp32 model's sha256; export time is not in the budget.

Timing: at each n, rounds call every engine once in a rotated order (load drift hits all alike); the
rounds stop when that n's share of `--budget` seconds is spent (at least 3). Medians in ms. eps error:
mean and max |eps − eps_fp32| (onnxruntime fp32 the reference) on 128 rows of real DDIM trajectories.
Writes OUT.json and OUT.md. Needs torch (export extra) for the torch rows and openvino for its rows.
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

ROOT = Path(__file__).resolve().parents[1]

from ddpm_edge.runtime import __version__  # noqa: E402
from ddpm_edge.runtime.backends import default_model_path, load_unet  # noqa: E402
from ddpm_edge.runtime.files import sha256_file  # noqa: E402

MACS_PER_SPRITE = 150.6e6   # the course UNet (3×16×16, n_feat 64), counted from its layer shapes


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cache_dir() -> Path:
    return Path(os.environ.get("DDPM_EDGE_CACHE") or Path.home() / ".cache" / "ddpm-edge")


def int8_model(fp32: Path, suffix: str, given: Path | None) -> Path:
    """The int8 twin of `fp32` (.onnx or .xml): given, shipped beside it, or exported once into the cache."""
    if given is not None:
        return given
    shipped = fp32.with_name(f"{fp32.stem}_int8{suffix}")
    if shipped.is_file():
        return shipped
    cached = cache_dir() / "int8" / f"{sha256_file(fp32)[:16]}{suffix}"
    if not cached.is_file():
        from ddpm_edge.export.int8 import export_int8
        cached.parent.mkdir(parents=True, exist_ok=True)
        say(f"exporting {cached.name} (once; cached)")
        export_int8(fp32, cached, gate="none")   # speed only; the quality gate is runtime/gate.py's
    return cached


def torch_engines(weights: Path) -> dict:
    try:
        import torch
        from ddpm_edge.ddpm_ref.checkpoint import load_checkpoint
    except ImportError as e:
        return {"torch eager fp32": f"torch missing ({e})", "torch bf16 autocast": f"torch missing ({e})"}
    model = load_checkpoint(weights).model.eval()

    def eager(x, t, c):
        with torch.no_grad():
            return model(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(c)).numpy()

    def bf16(x, t, c):
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            return model(torch.from_numpy(x), torch.from_numpy(t), torch.from_numpy(c)).float().numpy()

    return {"torch eager fp32": eager, "torch bf16 autocast": bf16}


def runtime_engine(path: Path, **options):
    try:
        return load_unet(path, device="cpu", **options)
    except Exception as e:  # the table lists what it cannot run, and why
        return str(e).splitlines()[0][:160]


def interleaved(fns: dict, make_args, budget_s: float, min_rounds: int = 3, max_rounds: int = 15) -> dict:
    names = list(fns)
    args = make_args()
    for name in names:
        fns[name](*args)   # warm-up
    times = {name: [] for name in names}
    start = time.monotonic()
    for r in range(max_rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            fns[name](*args)
            times[name].append(time.perf_counter() - t0)
        if r + 1 >= min_rounds and time.monotonic() - start > budget_s:
            break
    return {name: (statistics.median(ts), len(ts)) for name, ts in times.items()}


def per_call(engines: dict, sizes: list[int], budget: float) -> list[dict]:
    """Median ms per UNet call of every live engine (callable) at each n, interleaved rounds; an engine given
    as a string is listed as unavailable with that reason. The budget's share grows with n."""
    live = {k: v for k, v in engines.items() if callable(v)}
    weight = {n: max(n, 8) for n in sizes}
    calls = []
    for n in sizes:
        def make_args(n=n):
            rng = np.random.default_rng(n)
            return (rng.standard_normal((n, 3, 16, 16), dtype=np.float32),
                    rng.uniform(0, 1, (n, 1)).astype(np.float32),
                    np.eye(5, dtype=np.float32)[rng.integers(0, 5, n)])
        medians = interleaved(live, make_args, budget * weight[n] / sum(weight.values()))
        base = medians["onnxruntime fp32"][0] if "onnxruntime fp32" in medians else None
        for name in engines:
            if name in medians:
                s, rounds = medians[name]
                calls.append({"n": n, "engine": name, "ms": s * 1e3, "rounds": rounds,
                              "vs_ort_fp32": base / s if base else None,
                              "gflops": 2 * MACS_PER_SPRITE * n / s / 1e9})
            else:
                calls.append({"n": n, "engine": name, "ms": None, "why": str(engines[name])})
        say(f"n={n}: " + ", ".join(f"{k} {v[0] * 1e3:.1f} ms" for k, v in medians.items()))
    return calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--onnx", type=Path, default=None, help="fp32 UNet (default: the shipped model)")
    parser.add_argument("--weights", type=Path, default=ROOT / "weights" / "model.pth")
    parser.add_argument("--int8-onnx", type=Path, default=None)
    parser.add_argument("--int8-xml", type=Path, default=None)
    parser.add_argument("--sizes", default="1,16,64,256")
    parser.add_argument("--budget", type=float, default=180.0, help="seconds of timing over all sizes (at least 3 rounds each)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "engines")
    args = parser.parse_args()
    started = time.monotonic()
    fp32 = args.onnx or default_model_path()
    int8_onnx, int8_xml = int8_model(fp32, ".onnx", args.int8_onnx), int8_model(fp32, ".xml", args.int8_xml)
    threads = len(os.sched_getaffinity(0))
    try:
        import torch
        torch.set_num_threads(threads)
    except ImportError:
        pass
    say("loading engines")
    engines = {**torch_engines(args.weights),
               "onnxruntime fp32": runtime_engine(fp32),
               "onnxruntime int8": runtime_engine(int8_onnx),
               "openvino fp32": runtime_engine(fp32, backend="openvino", precision="fp32"),
               "openvino bf16": runtime_engine(fp32, backend="openvino", precision="bf16"),
               "openvino int8": runtime_engine(int8_xml, backend="openvino", precision="int8")}
    live = {k: v for k, v in engines.items() if callable(v)}
    for name, why in engines.items():
        if not callable(why):
            say(f"{name}: unavailable ({why})")

    say("eps error vs fp32 on real trajectory rows")
    from ddpm_edge.export.int8 import trajectory_rows
    reference_unet = live.get("onnxruntime fp32") or load_unet(fp32, device="cpu")
    rows = trajectory_rows(reference_unet, seed=7, steps=10)
    pick = np.random.default_rng(7).permutation(len(rows))[:128]
    rows = rows.take(pick)
    reference = reference_unet(rows.x, rows.t, rows.c)
    errors = {}
    for name, fn in live.items():
        diff = np.abs(np.asarray(fn(rows.x, rows.t, rows.c), dtype=np.float32) - reference)
        errors[name] = {"mean": float(diff.mean()), "max": float(diff.max())}

    sizes = [int(v) for v in args.sizes.split(",")]
    calls = per_call(engines, sizes, args.budget)

    machine = (f"{cpu_name()}, {threads} threads, load average {os.getloadavg()[0]:.1f} at the end; "
               f"ddpm-edge {__version__}, Python {platform.python_version()}")
    versions = {}
    for module in ("torch", "onnxruntime", "openvino", "nncf"):
        try:
            versions[module] = __import__(module).__version__
        except ImportError:
            versions[module] = None
    command = " ".join(["python benchmarks/engines.py", *sys.argv[1:]])
    lines = [f"Machine: {machine}", f"Versions: {', '.join(f'{k} {v}' for k, v in versions.items() if v)}",
             f"Command: `{command}`", "", "| engine | " + " | ".join(f"n={n} ms (× ort fp32)" for n in sizes)
             + " | mean \\|Δeps\\| | max \\|Δeps\\| |", "|---" * (len(sizes) + 3) + "|"]
    for name in engines:
        cells = []
        for n in sizes:
            row = next(r for r in calls if r["n"] == n and r["engine"] == name)
            cells.append("—" if row["ms"] is None else f"{row['ms']:.2f} ({row['vs_ort_fp32']:.2f}×)")
        err = errors.get(name)
        tail = [f"{err['mean']:.4f}", f"{err['max']:.3f}"] if err else ["unavailable: " + str(engines[name]), ""]
        lines.append(f"| {name} | " + " | ".join(cells) + " | " + " | ".join(tail) + " |")
    table = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(table)
    args.out.with_suffix(".json").write_text(json.dumps(
        {"machine": machine, "versions": versions, "command": command, "per_call": calls, "eps_error": errors,
         "int8_models": {"onnx": str(int8_onnx), "xml": str(int8_xml)}}, indent=1) + "\n")
    print("\n" + table)
    say(f"done in {time.monotonic() - started:.0f} s; wrote {args.out.with_suffix('.md')} and .json")


if __name__ == "__main__":
    main()
