"""CPU benchmark: torch eager reference vs the NumPy runtime on ONNX Runtime, side by side in one run.

    python benchmarks/cpu_bench.py [--weights model.pth] [--threads 2] [--sizes 1,16,64] [--out results.md]

For each n: the UNet call alone (per-step latency, median of --repeats), then end-to-end DDIM-25 and
DDPM-500 (median of --e2e-repeats full runs; noise drawing, steps and context included). Both paths use
the same model, the same thread count and the same inputs. Needs the export extra (torch, onnx).
"""
from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from ddpm_edge.ddpm_ref import sampling as ref
from ddpm_edge.ddpm_ref.checkpoint import load_checkpoint
from ddpm_edge.ddpm_ref.model import ContextUnet
from ddpm_edge.export.onnx_export import export_onnx
from ddpm_edge.runtime import __version__
from ddpm_edge.runtime.backends.ort import OnnxUnet
from ddpm_edge.runtime.solvers import make_sampler
from ddpm_edge.runtime.sampling import SeededNoise, sample
from ddpm_edge.runtime.schedule import Schedule
from timing import median_seconds  # benchmarks/timing.py (the script's folder is on sys.path)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, help="checkpoint (default: random ContextUnet(3, 64, 5, 16))")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", default="1,16,64")
    parser.add_argument("--repeats", type=int, default=20, help="timed UNet calls per size")
    parser.add_argument("--e2e-repeats", type=int, default=3, help="timed full sampling runs per size")
    parser.add_argument("--out", type=Path, help="also write the markdown table here")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    scratch = tempfile.TemporaryDirectory(prefix="ddpm-bench-")   # removed when the script ends
    workdir = Path(scratch.name)
    weights = args.weights
    if weights is None:
        torch.manual_seed(0)
        weights = workdir / "random.pth"
        torch.save(ContextUnet(3, 64, 5, 16).state_dict(), weights)
    model = load_checkpoint(weights).model
    onnx_path = export_onnx(weights, workdir / "unet.onnx").path
    unet = OnnxUnet(onnx_path, device="cpu", threads=args.threads)
    schedule = Schedule()

    rows = []
    for n in (int(v) for v in args.sizes.split(",")):
        rng = np.random.default_rng(n)
        x = rng.standard_normal((n, 3, 16, 16), dtype=np.float32)
        t = np.full((n, 1), 0.5, dtype=np.float32)
        c = np.zeros((n, 5), dtype=np.float32)
        xt, tt, ct = (torch.from_numpy(a) for a in (x, t, c))

        def torch_step():
            with torch.no_grad():
                model(xt, tt, ct)

        step_torch = median_seconds(torch_step, args.repeats, warmup=2)
        step_ort = median_seconds(lambda: unet(x, t, c), args.repeats, warmup=2)
        row = {"n": n, "step_torch_ms": step_torch * 1e3, "step_ort_ms": step_ort * 1e3}
        for name, steps in (("ddim25", 25), ("ddpm500", None)):
            sampler = make_sampler(name[:4], schedule, steps)

            def run_ort():
                sample(unet, sampler, (n, 3, 16, 16), c, noise=SeededNoise(0))

            def run_torch():
                x_T = torch.randn(n, 3, 16, 16)
                if steps:
                    ref.sample_ddim(model, schedule, x_T, ct, steps=steps)
                else:
                    ref.sample_ddpm(model, schedule, x_T, ct)

            row[f"{name}_torch_s"] = median_seconds(run_torch, args.e2e_repeats, warmup=0)
            row[f"{name}_ort_s"] = median_seconds(run_ort, args.e2e_repeats, warmup=0)
        rows.append(row)
        print(row, flush=True)

    header = (f"CPU: {cpu_name()}, {args.threads} threads; torch {torch.__version__}, onnxruntime "
              f"{ort.__version__}, ddpm-edge {__version__}; Python {platform.python_version()}\n\n"
              "| n | UNet step, torch eager | UNet step, ORT | speed-up | DDIM-25, torch | DDIM-25, ORT+NumPy "
              "| DDPM-500, torch | DDPM-500, ORT+NumPy |\n|---|---|---|---|---|---|---|---|\n")
    table = header + "".join(
        f"| {r['n']} | {r['step_torch_ms']:.2f} ms | {r['step_ort_ms']:.2f} ms | "
        f"{r['step_torch_ms'] / r['step_ort_ms']:.2f}x | {r['ddim25_torch_s']:.3f} s | {r['ddim25_ort_s']:.3f} s | "
        f"{r['ddpm500_torch_s']:.2f} s | {r['ddpm500_ort_s']:.2f} s |\n" for r in rows)
    print("\n" + table)
    if args.out:
        args.out.write_text(table)


if __name__ == "__main__":
    main()
