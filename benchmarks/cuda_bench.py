"""CUDA benchmark of every sampling path: `python benchmarks/cuda_bench.py [--weights ckpt.pth] [--out cuda_bench.md]`.

Paths (each skipped, with its reason in the table, where its software is missing):

    torch-eager         the torch reference UNet on CUDA, the step in torch, noise by torch.randn
    torch-cudagraph     the same, UNet + step captured once per batch size and replayed per timestep
    ort-cuda            ONNX Runtime CUDA provider, plain session.run, NumPy step (the portable loop)
    ort-iobinding       + IO binding: device buffers allocated once per batch size
    ort-cudagraph       + CUDA graph capture per batch size
    gpu-loop            fused UNet + step ONNX, the whole loop on the device (runtime/backends/ort_cuda.py OrtLoop)
    gpu-loop-cudagraph  the same with CUDA graph replay
    trt-fp32, trt-fp16  TensorRT engines (NumPy step), where tensorrt + cuda-python are installed

Reported per batch n (default 1, 16, 256, 4096): per-step latency (one UNet call + step; for the loop
paths DDPM-500 / 500, marked *), end-to-end DDIM-25 and DDPM-500. Warm-up runs are excluded; each figure
is the median of --repeats runs; torch is timed with CUDA events, everything else with a wall clock
after the work has synchronised (ONNX Runtime and TensorRT calls return host arrays). Writes a markdown
table (and a PNG plot when matplotlib is installed) with the GPU name and versions.

Without a CUDA GPU it exits with a one-line reason. `--cpu-smoke` runs the ONNX Runtime paths on the CPU
at tiny sizes only to check the script itself; its numbers are not CUDA numbers.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from ddpm_edge.runtime.solvers import DDIMSampler, DDPMSampler
from ddpm_edge.runtime.sampling import SeededNoise, sample
from timing import median_seconds  # benchmarks/timing.py (the script's folder is on sys.path)

PATHS = ("torch-eager", "torch-cudagraph", "ort-cuda", "ort-iobinding", "ort-cudagraph", "gpu-loop",
         "gpu-loop-cudagraph", "trt-fp32", "trt-fp16")
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "model.pth"   # the shipped default


class Skip(Exception):
    pass


# --- runners: each has .step(n) -> seconds (or None) and .run(sampler, n) -> seconds ---------------------

class NumpyLoopRunner:
    """A backend callable eps = unet(x, t, c) driven by the NumPy loop."""

    def __init__(self, unet, repeats):
        self.unet, self.repeats, self.spec = unet, repeats, unet.spec

    def step(self, n):
        x = np.random.default_rng(0).standard_normal((n, *self.spec.sample_shape), dtype=np.float32)
        t, c = np.full((n, 1), 0.5, np.float32), np.zeros((n, self.spec.n_cfeat), np.float32)
        sampler = DDIMSampler(self.spec.schedule, 25)
        return median_seconds(lambda: sampler.step(x, self.unet(x, t, c), 250), self.repeats * 4, warmup=3)

    def run(self, sampler, n):
        c = np.zeros((n, self.spec.n_cfeat), np.float32)
        return median_seconds(lambda: sample(self.unet, sampler, (n, *self.spec.sample_shape), c, SeededNoise(0)),
                           self.repeats)


class LoopRunner:
    def __init__(self, loop, repeats):
        self.loop, self.repeats, self.spec = loop, repeats, loop.spec

    def step(self, n):
        return None

    def run(self, sampler, n):
        c = np.zeros((n, self.spec.n_cfeat), np.float32)
        return median_seconds(lambda: self.loop.sample_loop(sampler, (n, *self.spec.sample_shape), c, SeededNoise(0)),
                           self.repeats)


class TorchRunner:
    """UNet + step in torch on CUDA; with `graph`, one CUDA graph per batch size, replayed per timestep."""

    def __init__(self, model, spec, repeats, graph: bool):
        import torch
        self.torch, self.model, self.spec, self.repeats, self.graph = torch, model.cuda().eval(), spec, repeats, graph
        self.graphs = {}

    def _timed(self, fn, repeats, warmup=1):
        torch = self.torch
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeats):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        return statistics.median(times)

    def _state(self, n):
        """Static tensors x, t, c, z, coef [4] and a step function x ← (x − b·eps)·a + d·eps + s·z."""
        torch = self.torch
        if n in self.graphs:
            return self.graphs[n]
        dev = "cuda"
        s = {"x": torch.randn(n, *self.spec.sample_shape, device=dev), "t": torch.full((n, 1), 0.5, device=dev),
             "c": torch.zeros(n, self.spec.n_cfeat, device=dev), "z": torch.zeros(n, *self.spec.sample_shape, device=dev),
             "coef": torch.zeros(4, device=dev)}

        def step():
            with torch.no_grad():
                eps = self.model(s["x"], s["t"], s["c"])
                a, b, d, sz = s["coef"].unbind(0)
                s["x"].copy_((s["x"] - b * eps) * a + d * eps + sz * s["z"])

        if self.graph:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    step()
            torch.cuda.current_stream().wait_stream(side)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g):
                step()
            s["launch"] = g.replay
        else:
            s["launch"] = step
        self.graphs[n] = s
        return s

    def step(self, n):
        s = self._state(n)
        return self._timed(s["launch"], self.repeats * 4, warmup=3)

    def run(self, sampler, n):
        from ddpm_edge.runtime.backends.ort_cuda import step_table
        torch = self.torch
        s = self._state(n)
        table, noisy = step_table(sampler)
        rows = torch.from_numpy(table).cuda()      # [K, 6] on the device, sliced per step
        noisy = set(noisy)

        def loop():
            s["x"].normal_()
            for k in range(len(table)):
                s["t"].copy_(rows[k, 0].expand(n, 1))
                s["coef"].copy_(rows[k, 1:5])
                if k in noisy:
                    s["z"].normal_()
                s["launch"]()
        return self._timed(loop, self.repeats)


# --- setup -------------------------------------------------------------------------------------------

def environment(cpu_smoke: bool) -> dict:
    """GPU name and versions; exits with one line when there is no CUDA GPU."""
    info = {"python": sys.version.split()[0]}
    import onnxruntime as ort
    info["onnxruntime"] = ort.__version__
    has_ort_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    gpu = None
    try:
        import torch
        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
            info["cuda"] = torch.version.cuda
    except ImportError:
        pass
    for name in ("tensorrt", "cuda.bindings"):
        try:
            module = __import__(name, fromlist=["__version__"])
            info[name] = getattr(module, "__version__", "installed")
        except ImportError:
            pass
    if gpu is None and has_ort_cuda:
        try:
            from ddpm_edge.runtime.backends.trt import gpu_info, import_cudart
            gpu = gpu_info(import_cudart())["name"]
        except Exception:
            gpu = "CUDA GPU (name unknown: install torch or cuda-python)"
    if gpu is None and not cpu_smoke:
        print("cuda_bench: no CUDA GPU here (torch.cuda unavailable and onnxruntime has no CUDA provider); "
              "nothing to measure", file=sys.stderr)
        raise SystemExit(3)
    info["device"] = gpu or "CPU (smoke run: not CUDA numbers)"
    info["ort_device"] = "cuda" if has_ort_cuda and not cpu_smoke else "cpu"
    return info


def prepare(args, workdir: Path, info: dict) -> dict:
    """unet.onnx, unet_fp16.onnx, unet_loop.onnx and TensorRT plans, built from the checkpoint."""
    from ddpm_edge.export.fp16 import export_fp16
    from ddpm_edge.export.onnx_export import export_onnx
    from ddpm_edge.export.step_export import export_loop

    files = {"onnx": workdir / "unet.onnx", "onnx16": workdir / "unet_fp16.onnx", "loop": workdir / "unet_loop.onnx"}
    if args.onnx:
        files["onnx"] = Path(args.onnx)
    else:
        export_onnx(args.weights, files["onnx"])
    export_fp16(files["onnx"], files["onnx16"])
    export_loop(files["onnx"], files["loop"])
    if "tensorrt" in info and info["ort_device"] == "cuda":
        from ddpm_edge.export.tensorrt_build import build_engine
        top = max(args.n)
        batch = (1, min(256, top), top)
        for key, source in (("plan32", files["onnx"]), ("plan16", files["onnx16"])):
            try:
                files[key] = build_engine(source, workdir / f"{key}.plan", batch=batch).plan
            except Exception as e:  # recorded as the path's skip reason
                files[key] = Skip(f"build failed: {str(e).splitlines()[0][:80]}")
    return files


def make_runner(path: str, files: dict, info: dict, args):
    from ddpm_edge.runtime.backends.ort import OnnxUnet
    from ddpm_edge.runtime.backends.ort_cuda import OrtIoUnet, load_loop

    dev, r = info["ort_device"], args.repeats
    if path.startswith("torch"):
        if info["device"].startswith("CPU") or "torch" not in info:
            raise Skip("needs torch with CUDA")
        if not args.weights:
            raise Skip("needs --weights (the torch reference model)")
        from ddpm_edge.ddpm_ref.checkpoint import load_checkpoint
        from ddpm_edge.export.fp16 import spec_of
        return TorchRunner(load_checkpoint(args.weights).model, spec_of(files["onnx"]), r, graph=path.endswith("cudagraph"))
    if path == "ort-cuda":
        return NumpyLoopRunner(OnnxUnet(files["onnx"], device=dev), r)
    if path == "ort-iobinding":
        return NumpyLoopRunner(OrtIoUnet(files["onnx"], device=dev), r)
    if path == "ort-cudagraph":
        if dev != "cuda":
            raise Skip("needs ONNX Runtime's CUDA provider")
        return NumpyLoopRunner(OrtIoUnet(files["onnx"], device=dev, cuda_graph=True), r)
    if path.startswith("gpu-loop"):
        graph = path.endswith("cudagraph")
        if graph and dev != "cuda":
            raise Skip("needs ONNX Runtime's CUDA provider")
        return LoopRunner(load_loop(files["loop"], device=dev, cuda_graph=graph), r)
    if path.startswith("trt"):
        plan = files.get("plan32" if path == "trt-fp32" else "plan16")
        if plan is None:
            raise Skip("tensorrt / cuda-python not installed")
        if isinstance(plan, Skip):
            raise plan
        from ddpm_edge.runtime.backends.trt import TensorRTUnet
        return NumpyLoopRunner(TensorRTUnet(plan), r)
    raise Skip("unknown path")


def markdown(info: dict, rows: list[dict], skipped: dict) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in info.items() if k not in ("device", "ort_device"))
    lines = [f"GPU: **{info['device']}**  ", f"Versions: {versions}", "",
             "| path | n | per step (ms) | DDIM-25 (ms) | DDPM-500 (ms) | DDPM-500 vs torch-eager |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    eager = {row["n"]: row["ddpm"] for row in rows if row["path"] == "torch-eager"}
    for row in rows:
        step = f"{row['step'] * 1e3:.3f}" if row["step"] is not None else f"{row['ddpm'] / 500 * 1e3:.3f}*"
        speed = f"{eager[row['n']] / row['ddpm']:.1f}×" if row["n"] in eager else "–"
        lines.append(f"| {row['path']} | {row['n']} | {step} | {row['ddim'] * 1e3:.2f} | {row['ddpm'] * 1e3:.1f} | {speed} |")
    lines += ["", "\\* DDPM-500 / 500 (the loop paths have no separate per-step call).",
              "Medians of repeated runs, warm-up excluded."]
    lines += [f"- {path}: skipped ({reason})" for path, reason in skipped.items()]
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], out: Path) -> Path | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for path in dict.fromkeys(row["path"] for row in rows):
        mine = [row for row in rows if row["path"] == path]
        ax.plot([row["n"] for row in mine], [row["ddpm"] * 1e3 for row in mine], marker="o", label=path)
    ax.set(xscale="log", yscale="log", xlabel="sprites n", ylabel="DDPM-500 end-to-end (ms)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    png = out.with_suffix(".png")
    fig.savefig(png, dpi=120)
    return png


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS) if DEFAULT_WEIGHTS.is_file() else None,
                        help="checkpoint .pth (the torch paths need it; the ONNX is exported from it)")
    parser.add_argument("--onnx", help="use this unet.onnx instead of exporting --weights")
    parser.add_argument("--n", type=int, nargs="+", default=[1, 16, 256, 4096], help="batch sizes")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure (median reported)")
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    parser.add_argument("--out", default="cuda_bench.md", help="markdown results (a .png plot beside it)")
    parser.add_argument("--cpu-smoke", action="store_true", help="check the script on CPU (tiny sizes; not CUDA numbers)")
    args = parser.parse_args(argv)
    if not args.weights and not args.onnx:
        parser.error("give --weights or --onnx")
    info = environment(args.cpu_smoke)
    rows, skipped = [], {}
    with tempfile.TemporaryDirectory(prefix="cuda-bench-") as tmp:
        files = prepare(args, Path(tmp), info)
        for path in args.paths:
            try:
                runner = make_runner(path, files, info, args)
            except Skip as e:
                skipped[path] = str(e)
                continue
            for n in args.n:
                spec = runner.spec
                row = {"path": path, "n": n, "step": runner.step(n),
                       "ddim": runner.run(DDIMSampler(spec.schedule, 25), n),
                       "ddpm": runner.run(DDPMSampler(spec.schedule), n)}
                rows.append(row)
                print(f"{path:>20} n={n:<5} DDIM-25 {row['ddim'] * 1e3:9.2f} ms  DDPM-500 {row['ddpm'] * 1e3:10.1f} ms",
                      file=sys.stderr)
    out = Path(args.out)
    out.write_text(markdown(info, rows, skipped))
    png = plot(rows, out)
    print(f"wrote {out}" + (f" and {png}" if png else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
