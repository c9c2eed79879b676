"""ONNX Runtime with device-resident buffers: IO binding, CUDA graphs, and the device-resident loop.

Three ways to run, fastest last (the NumPy loop with `OnnxUnet` stays the portable default):

    OrtIoUnet   eps = unet(x, t, c) per timestep, the step in NumPy. x, t, c, eps live in buffers
                allocated once per batch size and bound with IO binding; with `cuda_graph` the CUDA
                provider captures the UNet once per batch size (one session per batch size, because a
                captured graph is fixed to its shapes and addresses) and replays it afterwards.
    OrtLoop     the fused UNet + step graph (loop_graph.py): one run per timestep, x and the
                step counter k ping-pong between two device buffers, so the host only launches runs.
                All noise is drawn up front on the host, in the same order as `sample()` with
                `SeededNoise` (x_T, then z for each step that needs one), and uploaded in blocks.
                Same seed → same sprites as the NumPy loop. Guidance runs in a guided loop graph
                (2N UNet rows per run); a loop built from a plain UNet makes that graph when first asked.

Everything here also runs on ONNX Runtime's CPU provider (device "cpu"), which is how it is tested
without a GPU; `cuda_graph` needs the CUDA provider. Shapes: x [N, C, H, W], c [N, n_cfeat].
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..contract import INPUT_NAMES, OUTPUT_NAMES, run_chunked
from ..errors import Cancelled, DdpmEdgeError, MissingDependency
from ..files import HashedFile
from .ort import _import_ort, open_session, providers_for, session_spec
from .loop_graph import GUIDED, GUIDED_INPUTS, LOOP_GRAPH, LOOP_INPUTS, LOOP_OUTPUTS, fuse_loop

NOISE_BLOCK_BYTES = 1 << 30       # pre-drawn noise uploaded per block of at most this size


def _device_of(device: str) -> tuple[list, str]:
    """(providers, OrtValue device type) for device auto / cpu / cuda."""
    providers = providers_for(device)
    return providers, ("cuda" if providers[0] == "CUDAExecutionProvider" else "cpu")


def ort_version(ort) -> tuple[int, int]:
    """(major, minor) of an onnxruntime module."""
    try:
        return tuple(int(part) for part in ort.__version__.split(".")[:2])
    except ValueError:
        return (0, 0)


def _session(model, providers, cuda_graph: bool, label):
    if cuda_graph:
        if providers[0] != "CUDAExecutionProvider":
            raise MissingDependency("--cuda-graph needs ONNX Runtime's CUDA provider (onnxruntime-gpu and a GPU)")
        providers = [("CUDAExecutionProvider", {"enable_cuda_graph": "1"})]  # no CPU fallback: capture needs all-CUDA
    return open_session(model, providers, label)


class OrtIoUnet(HashedFile):
    """eps = unet(x, t, c) through IO binding (and optionally CUDA graphs), one buffer set per batch size."""

    backend = "onnxruntime"

    @property
    def precision(self) -> str:
        return self.spec.precision   # fp32 or fp16 (from the metadata)

    def __init__(self, path: str | os.PathLike, device: str = "auto", cuda_graph: bool = False,
                 max_batch: int | None = None):
        self.ort = _import_ort()
        self.path = Path(path)
        if not self.path.is_file():
            raise DdpmEdgeError(f"model file not found: {self.path}")
        self.providers, self.device_type = _device_of(device)
        self.cuda_graph = cuda_graph
        self._sessions: dict[int, object] = {}   # batch size → session (one only, unless cuda_graph)
        self._buffers: dict[int, tuple] = {}     # batch size → (binding, x, t, c, eps OrtValues)
        first = _session(self.path, self.providers, cuda_graph, self.path)
        self._spare = first if cuda_graph else None   # with cuda_graph, the first batch size captures in it
        if not cuda_graph:
            self._sessions[0] = first
        names = ({i.name for i in first.get_inputs()}, [o.name for o in first.get_outputs()])
        if names[0] != set(INPUT_NAMES) or OUTPUT_NAMES[0] not in names[1]:
            raise DdpmEdgeError(f"{self.path} is not a ddpm UNet: needs inputs x, t, c and output eps")
        self.spec = session_spec(first)
        if max_batch is not None and max_batch < 1:
            raise DdpmEdgeError(f"max batch must be >= 1, got {max_batch}")
        self.max_batch = max_batch

    def _session_for(self, n: int):
        key = n if self.cuda_graph else 0
        if key not in self._sessions:
            spare, self._spare = self._spare, None
            self._sessions[key] = spare or _session(self.path, self.providers, self.cuda_graph, self.path)
        return self._sessions[key]

    def _bound(self, n: int):
        if n not in self._buffers:
            session, new = self._session_for(n), self.ort.OrtValue.ortvalue_from_shape_and_type
            shapes = self.spec.shapes(n)
            values = {name: new(shapes[name], np.float32, self.device_type, 0) for name in (*INPUT_NAMES, "eps")}
            binding = session.io_binding()
            for name in INPUT_NAMES:
                binding.bind_ortvalue_input(name, values[name])
            binding.bind_ortvalue_output("eps", values["eps"])
            self._buffers[n] = (session, binding, values)
        return self._buffers[n]

    def _run(self, x: np.ndarray, t: np.ndarray, c: np.ndarray) -> np.ndarray:
        session, binding, values = self._bound(x.shape[0])
        for name, array in (("x", x), ("t", t), ("c", c)):
            values[name].update_inplace(array)       # host → bound buffer; the address never changes
        session.run_with_iobinding(binding)
        return np.array(values["eps"].numpy(), copy=True)

    def __call__(self, x: np.ndarray, t: np.ndarray, c: np.ndarray) -> np.ndarray:
        return run_chunked(self.spec, self._run, x, t, c, self.max_batch)


def step_table(sampler) -> tuple[np.ndarray, list[int]]:
    """Per timestep k of `sampler`: (t, a, b, d, s, slot) as float32 [K, 6] (slot filled by the caller),
    and the list of k that take a noise draw. x_prev = (x − b·eps)·a + d·eps + s·z."""
    sched = sampler.schedule
    alpha = sched.alphas.astype(np.float64)
    ab = sched.alphas_cumprod.astype(np.float64)
    beta = sched.betas.astype(np.float64)
    rows, noisy = [], []
    for k, i in enumerate(sampler.timesteps):
        if sampler.name == "ddpm":
            s = np.sqrt(beta[i]) if sampler.needs_noise(i) else 0.0
            row = (1.0 / np.sqrt(alpha[i]), (1.0 - alpha[i]) / np.sqrt(1.0 - ab[i]), 0.0, s)
        elif sampler.name == "ddim":
            prev, sigma = sampler.prev(i), sampler.sigma(i)      # σ = 0 unless η > 0 (solvers/ddim.py)
            row = (np.sqrt(ab[prev]) / np.sqrt(ab[i]), np.sqrt(1.0 - ab[i]),
                   np.sqrt(max(1.0 - ab[prev] - sigma ** 2, 0.0)), sigma)
        else:
            raise DdpmEdgeError(f"the device loop has no step for sampler {sampler.name!r}")
        if sampler.needs_noise(i):
            noisy.append(k)
        rows.append((sched.t_input(i), *row, 0.0))
    return np.asarray(rows, dtype=np.float32), noisy


class OrtLoop(HashedFile):
    """The fused loop model run on the device; `sample_loop` replaces `sample()` for it.
    `unet`: the plain UNet ModelProto it was fused from, if any (to fuse the guided graph on demand)."""

    backend = "onnxruntime"

    @property
    def precision(self) -> str:
        return self.spec.precision   # fp32 or fp16 (from the metadata)

    def __init__(self, model: str | os.PathLike | bytes, device: str = "auto", cuda_graph: bool = False,
                 path: str | os.PathLike | None = None, unet=None):
        self.ort = _import_ort()
        self.path = Path(path if path is not None else model)
        self.model = model if isinstance(model, bytes) else str(model)
        self.device, self.providers, self.device_type = device, *_device_of(device)
        self.cuda_graph = cuda_graph
        if cuda_graph and ort_version(self.ort) < (1, 18):
            raise MissingDependency(f"--gpu-loop --cuda-graph needs onnxruntime-gpu >= 1.18 (one session holds two "
                                    f"graphs, by gpu_graph_id); this is {self.ort.__version__}")
        self.max_batch = None
        self._unet, self._guided_twin = unet, None
        self._states: dict[tuple, tuple] = {}   # (N, noise slots, K) → (session, bindings, buffers)
        self._shared = None
        session = self._new_session()
        names = ([i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()])
        self.guided = session.get_modelmeta().custom_metadata_map.get("guidance") == GUIDED
        if set(names[0]) != set(GUIDED_INPUTS if self.guided else LOOP_INPUTS) or set(names[1]) != set(LOOP_OUTPUTS):
            raise DdpmEdgeError(f"{self.path} is not a ddpm-edge loop model (ddpm-export --gpu-loop)")
        self._shared = None if cuda_graph else session
        self._spare = session if cuda_graph else None   # the first captured shape reuses it
        self.spec = session_spec(session)

    def _new_session(self):
        if self._shared is not None:
            return self._shared
        if getattr(self, "_spare", None) is not None:
            session, self._spare = self._spare, None
            return session
        return _session(self.model, self.providers, self.cuda_graph, f"loop model {self.path}")

    def _state(self, shape: tuple, slots: int, steps: int):
        """Buffers (allocated once per shape: CUDA graphs replay fixed addresses) and two bindings:
        even runs read (x_a, k_a) and write (x_b, k_b); odd runs the other way round."""
        key = (tuple(shape), slots, steps)
        if key not in self._states:
            new, dev = self.ort.OrtValue.ortvalue_from_shape_and_type, self.device_type
            buf = {"x": [new(shape, np.float32, dev, 0), new(shape, np.float32, dev, 0)],
                   "k": [new((), np.int64, dev, 0), new((), np.int64, dev, 0)],
                   "c": new((shape[0], self.spec.n_cfeat), np.float32, dev, 0),
                   "noise": new((slots, *shape), np.float32, dev, 0),
                   "table": new((steps, 6), np.float32, dev, 0)}
            shared_inputs = ("c", "noise", "table")
            if self.guided:
                buf["w"] = new((), np.float32, dev, 0)
                shared_inputs += ("w",)
            session = self._new_session()
            bindings, options = [], []
            for parity in (0, 1):
                binding = session.io_binding()
                binding.bind_ortvalue_input("x", buf["x"][parity])
                binding.bind_ortvalue_input("k", buf["k"][parity])
                for name in shared_inputs:
                    binding.bind_ortvalue_input(name, buf[name])
                binding.bind_ortvalue_output("x_prev", buf["x"][1 - parity])
                binding.bind_ortvalue_output("k_next", buf["k"][1 - parity])
                run_options = self.ort.RunOptions()
                if self.cuda_graph:  # one captured graph per parity (their buffer addresses differ)
                    run_options.add_run_config_entry("gpu_graph_id", str(parity + 1))
                bindings.append(binding)
                options.append(run_options)
            self._states[key] = (session, bindings, options, buf)
        return self._states[key]

    def _guided(self) -> "OrtLoop":
        """The guided twin of an unguided loop, fused from the plain UNet when first needed."""
        if self._guided_twin is None:
            if self._unet is None:
                raise DdpmEdgeError(f"{self.path.name} is a loop model without guidance: export it with "
                                    "`ddpm-export --onnx unet.onnx --gpu-loop F --loop-guidance`, or give "
                                    "--gpu-loop the UNet .onnx")
            self._guided_twin = OrtLoop(fuse_loop(self._unet, guided=True).SerializeToString(), device=self.device,
                                        cuda_graph=self.cuda_graph, path=self.path)
        return self._guided_twin

    def sample_loop(self, sampler, shape: tuple, context: np.ndarray, noise, progress=None,
                    guidance: float = 0.0, progress_every: int | None = None) -> np.ndarray:
        """x_0 [N, C, H, W] float32, like `sample(guided(unet, guidance), sampler, shape, context, noise,
        progress)`, except that `progress` (which copies x to the host) is called about every 5% of the
        steps, at the last, and at every multiple of `progress_every` (animation frames)."""
        if guidance and not self.guided:
            return self._guided().sample_loop(sampler, shape, context, noise, progress, guidance, progress_every)
        n = shape[0]
        if tuple(shape[1:]) != self.spec.sample_shape:
            raise DdpmEdgeError(f"sample shape {tuple(shape[1:])} does not match the model's {self.spec.sample_shape}")
        context = np.ascontiguousarray(context, dtype=np.float32)
        if context.shape != (n, self.spec.n_cfeat):
            raise DdpmEdgeError(f"context must be [{n}, {self.spec.n_cfeat}], got {context.shape}")
        table, noisy = step_table(sampler)
        steps = len(table)
        per_draw = int(np.prod(shape)) * 4
        block = max(1, min(len(noisy), NOISE_BLOCK_BYTES // per_draw)) if noisy else 0
        slots = block + 1                                   # the last slot stays zeros
        table[:, 5] = block
        for j, k in enumerate(noisy):
            table[k, 5] = j % block
        x_T = noise.initial(tuple(shape))                   # same draw order as sample(): x_T first …
        session, bindings, options, buf = self._state(tuple(shape), slots, steps)
        buf["x"][0].update_inplace(np.ascontiguousarray(x_T, dtype=np.float32))
        buf["k"][0].update_inplace(np.zeros((), np.int64))
        buf["c"].update_inplace(context)
        buf["table"].update_inplace(table)
        if self.guided:
            buf["w"].update_inplace(np.asarray(guidance, dtype=np.float32))
        host_noise = np.zeros((slots, *shape), np.float32)
        if not noisy:                                       # DDIM: s = 0, but 0 · uninitialised memory may be NaN
            buf["noise"].update_inplace(host_noise)
        first_of_block = {k: j for j, k in enumerate(noisy) if j % block == 0}
        every = max(1, steps // 20)
        frames = progress_every or steps
        for k in range(steps):
            if k in first_of_block:                          # … then z for each noisy step, in order
                j0 = first_of_block[k]
                host_noise[:block] = 0
                for j, kk in enumerate(noisy[j0:j0 + block]):
                    host_noise[j] = noise.step(kk, tuple(shape))
                buf["noise"].update_inplace(host_noise)
            session.run_with_iobinding(bindings[k % 2], options[k % 2])
            if progress is not None and ((k + 1) % every == 0 or (k + 1) % frames == 0 or k + 1 == steps):
                if progress(k + 1, steps, buf["x"][(k + 1) % 2].numpy()) is False:
                    raise Cancelled("sampling cancelled")
        return np.array(buf["x"][steps % 2].numpy(), copy=True)


def is_loop_model(path: str | os.PathLike) -> bool:
    """Whether an ONNX file is a fused loop model, from its metadata (cheap: no session)."""
    ort = _import_ort()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception:
        return False
    return session.get_modelmeta().custom_metadata_map.get("graph") == LOOP_GRAPH


def load_loop(path: str | os.PathLike, device: str = "auto", cuda_graph: bool = False) -> OrtLoop:
    """A loop model file, or a plain UNet ONNX fused in memory (needs the `onnx` package)."""
    path = Path(path)
    if not path.is_file():
        raise DdpmEdgeError(f"model file not found: {path}")
    if path.suffix.lower() != ".onnx":
        raise DdpmEdgeError(f"--gpu-loop runs ONNX models through ONNX Runtime, not {path.name}")
    if is_loop_model(path):
        return OrtLoop(path, device=device, cuda_graph=cuda_graph)
    try:
        import onnx
    except ImportError:
        raise MissingDependency(f"{path.name} is a plain UNet: make a loop model with `ddpm-export --onnx "
                                f"{path.name} --gpu-loop unet_loop.onnx` (add --loop-guidance for --guidance), "
                                "or pip install onnx") from None
    unet = onnx.load(str(path))
    return OrtLoop(fuse_loop(unet).SerializeToString(), device=device, cuda_graph=cuda_graph, path=path, unet=unet)


def load_gpu_backend(path: str | os.PathLike | None, device: str = "auto", io_binding: bool = False,
                     cuda_graph: bool = False, gpu_loop: bool = False, max_batch: int | None = None):
    """The backend behind `ddpm-run --io-binding / --cuda-graph / --gpu-loop`."""
    from . import default_model_path

    path = default_model_path() if path is None else Path(path)
    if path.suffix.lower() != ".onnx":
        raise DdpmEdgeError(f"--io-binding, --cuda-graph and --gpu-loop apply to .onnx models, not {path.name}")
    if gpu_loop:
        if max_batch is not None:
            raise DdpmEdgeError("--gpu-loop runs all sprites in one batch; drop --max-batch")
        return load_loop(path, device=device, cuda_graph=cuda_graph)
    return OrtIoUnet(path, device=device, cuda_graph=cuda_graph, max_batch=max_batch)
