"""Step-level continuous batching: many requests, each at its own step of its own solver, share UNet calls.

    batcher = ContinuousBatcher(SpriteGenerator.load(), max_batch=64)
    job = batcher.submit(GenerationParams(n=1, seed=3, sampler="ddim"))   # from any thread
    batch = job.result(timeout=60)          # a Batch, the same as generator.generate_batch(params)
    batcher.close()

One worker thread owns the backend. Each tick it takes the active requests (round robin, oldest-served
first, on one engine) until their rows fill `max_batch`, makes ONE UNet call with every row's own t and c (guided
requests contribute 2N rows: c, then zeros), and applies each request's own solver step to its rows
(sampling.Trajectory, the code path of `sample()`). Requests submitted during a tick join the next one;
a finished request leaves at once. The UNet treats rows independently (run_chunked never mixes rows),
so a request's x_0 does not depend on who shared its calls: the same params and seed give what
`ddpm-run` gives.

Admission: at most `max_n` sprites per request and `max_queued_rows` rows waiting or running
(`Overloaded`, with a retry estimate); a per-request deadline (`DeadlineExceeded`); `cancel()` frees a
request's rows at the next tick. A failing UNet call fails only the requests in that call.
"""
from __future__ import annotations

import collections
import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from . import sampling
from .api import SpriteGenerator, parse_context
from .assets.background import apply_background
from .assets.images import to_uint8
from .assets.outputs import Batch, sprite_names
from .errors import Cancelled, DdpmEdgeError
from .params import GenerationParams
from .solvers import make_sampler

DEFAULT_MAX_BATCH = 64          # rows per UNet call
DEFAULT_MAX_N = 64              # sprites per request
DEFAULT_MAX_QUEUED_ROWS = 2048  # rows admitted (waiting + running)
MIN_SLICE_ROWS = 4              # parallel: no slice smaller than this
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class Overloaded(DdpmEdgeError):
    """The queue is full: retry after `retry_after` seconds (HTTP 429)."""

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class DeadlineExceeded(DdpmEdgeError):
    """The request's deadline passed before its sprites were done (HTTP 504)."""


class ShuttingDown(DdpmEdgeError):
    """The batcher is closed or closing (HTTP 503)."""


def make_trajectory(generator: SpriteGenerator, params: GenerationParams) -> sampling.Trajectory:
    """The trajectory `generator.generate_raw` runs for resolved `params`: its solver (a fresh
    instance: multistep solvers keep history), context rows, noise stream (params.rng) and guidance."""
    spec = generator.spec
    solver = make_sampler(params.sampler, spec.schedule, params.steps, eta=params.eta, spacing=params.spacing)
    context = parse_context(spec, params.context, params.n, params.seed)
    noise = sampling.make_noise(params.rng, params.seed)
    return sampling.Trajectory(solver, (params.n, *spec.sample_shape), context, noise, params.guidance)


def engine_for(generator: SpriteGenerator, params: GenerationParams):
    """The backend generate_raw runs `params` on: under backend auto, a faster engine whose quality verdict
    covers exactly this configuration, else the loaded one."""
    choose = getattr(generator, "engine_for", None)
    if choose is None:
        return generator.unet
    return choose(params.sampler, params.steps, params.guidance, params.eta, params.spacing)


def make_batch(generator: SpriteGenerator, params: GenerationParams, samples: np.ndarray, engine=None) -> Batch:
    """x_0 [n,C,H,W] of resolved `params` → the Batch `generator.generate_batch` returns (no frames)."""
    from . import __version__
    engine = engine if engine is not None else generator.unet
    sprites = apply_background(to_uint8(samples), params.background, params.tolerance, params.keying)
    return Batch(samples=samples, sprites=sprites, names=tuple(sprite_names(generator.context_labels(params))),
                 params=params, model_sha256=generator.model_sha256, model_path=generator.model_path,
                 version=__version__, backend=getattr(engine, "backend", "onnxruntime"),
                 precision=getattr(engine, "precision", "fp32"))


class Job:
    """One submitted request. `result()` blocks for its Batch; `future` is a concurrent Future
    (asyncio.wrap_future for async code); `cancel()` frees its rows at the next tick."""

    def __init__(self, params: GenerationParams, trajectory: sampling.Trajectory, deadline: float | None,
                 engine=None):
        self.params, self.trajectory, self.deadline = params, trajectory, deadline
        self.engine = engine         # the backend its rows go to (ticks never mix engines)
        self.future: Future = Future()
        self.submitted = time.monotonic()
        self.last_tick = -1          # the tick that last stepped it: round robin picks the oldest
        self.cancelled = False

    @property
    def rows(self) -> int:
        return self.trajectory.rows

    def cancel(self) -> None:
        self.cancelled = True

    def result(self, timeout: float | None = None) -> Batch:
        return self.future.result(timeout)


class Histogram:
    """A Prometheus histogram: cumulative bucket counts, sum, count."""

    def __init__(self, buckets):
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        k = next((k for k, b in enumerate(self.buckets) if value <= b), len(self.buckets))
        self.counts[k] += 1
        self.sum += value
        self.count += 1


class ContinuousBatcher:
    def __init__(self, generator: SpriteGenerator, max_batch: int = DEFAULT_MAX_BATCH, max_n: int = DEFAULT_MAX_N,
                 max_queued_rows: int = DEFAULT_MAX_QUEUED_ROWS, parallel: int = 1, start: bool = True):
        for name, value in (("max batch", max_batch), ("max n", max_n), ("max queued rows", max_queued_rows),
                            ("parallel", parallel)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise DdpmEdgeError(f"{name} must be a positive integer, got {value!r}")
        self.generator = generator
        self.unet = generator.unet
        self.max_batch, self.max_n, self.max_queued_rows = max_batch, max_n, max_queued_rows
        # parallel > 1: the tick's rows are split into that many slices evaluated at once on threads (the
        # backend releases the GIL); rows are independent, so x_0 does not change. On a CPU this uses the
        # cores without intra-op thread pools, which lose much of their gain on a busy machine.
        self.parallel = parallel
        self._pool = ThreadPoolExecutor(parallel - 1, thread_name_prefix="ddpm-unet") if parallel > 1 else None
        self._cond = threading.Condition()
        self._engine_lock = threading.Lock()
        self._inbox: list[Job] = []      # submitted, joining at the next tick
        self._active: list[Job] = []     # owned by the worker thread
        self._queued_rows = 0            # rows of inbox + active
        self._closing = False
        self._tick = 0
        self._step_seconds = 0.05        # moving average of a tick, for Retry-After
        # metrics (read by serve/app.py's /metrics)
        self.batch_rows = Histogram(BATCH_BUCKETS)
        self.unet_seconds = Histogram(LATENCY_BUCKETS)
        self.finished = collections.Counter()   # outcome → count: ok, cancelled, deadline, error
        self._worker = threading.Thread(target=self._run, name="ddpm-batcher", daemon=True)
        if start:
            self._worker.start()

    # -- submitting ----------------------------------------------------------------------------------

    def submit(self, params: GenerationParams, timeout: float | None = None) -> Job:
        """Admit `params` (resolved here: a seed drawn if none) or raise: DdpmEdgeError for bad input,
        Overloaded when full, ShuttingDown when closing. `timeout`: seconds until the deadline."""
        if params.n > self.max_n:
            raise DdpmEdgeError(f"this server generates at most {self.max_n} sprites per request, got n={params.n}")
        if timeout is not None and not (isinstance(timeout, (int, float)) and math.isfinite(timeout) and timeout > 0):
            raise DdpmEdgeError(f"timeout must be a positive number of seconds, got {timeout!r}")
        params = params.resolved(self.generator.spec.T)
        trajectory = make_trajectory(self.generator, params)   # bad context etc. fail here, in the caller
        with self._engine_lock:     # the first auto choice loads engines: once
            engine = engine_for(self.generator, params)
        deadline = None if timeout is None else time.monotonic() + timeout
        job = Job(params, trajectory, deadline, engine)
        with self._cond:
            if self._closing:
                raise ShuttingDown("the server is shutting down")
            if self._queued_rows + job.rows > self.max_queued_rows and self._queued_rows > 0:
                raise Overloaded(f"server busy: {self._queued_rows} rows queued (limit {self.max_queued_rows})",
                                 self.retry_after())
            self._queued_rows += job.rows
            self._inbox.append(job)
            self._cond.notify()
        return job

    def generate(self, params: GenerationParams, timeout: float | None = None) -> Batch:
        """submit + wait, cancelling the job if the wait is interrupted."""
        job = self.submit(params, timeout)
        try:
            return job.result()
        except BaseException:
            job.cancel()
            raise

    def retry_after(self) -> int:
        """Seconds until a request would likely be admitted: about one request's worth of ticks."""
        steps = max((len(j.trajectory.timesteps) for j in self._active[:1]), default=25)
        return max(1, math.ceil(self._step_seconds * steps))

    # -- state -----------------------------------------------------------------------------------------

    @property
    def queued_rows(self) -> int:
        return self._queued_rows

    @property
    def queued_requests(self) -> int:
        return len(self._inbox) + len(self._active)

    @property
    def running(self) -> bool:
        return self._worker.is_alive() and not self._closing

    def close(self, drain: bool = True, timeout: float | None = 30.0) -> None:
        """Stop admitting; with `drain` let admitted requests finish (up to `timeout` s), then cancel the rest."""
        with self._cond:
            self._closing = True
            if not drain:
                for job in self._inbox + self._active:
                    job.cancel()
            self._cond.notify()
        if self._worker.is_alive():
            self._worker.join(timeout)
            if self._worker.is_alive():           # drain took too long: cancel whatever is left
                with self._cond:
                    for job in self._inbox + self._active:
                        job.cancel()
                    self._cond.notify()
                self._worker.join()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    # -- the worker ----------------------------------------------------------------------------------

    def _finish(self, job: Job, outcome: str, result=None, error: BaseException | None = None) -> None:
        with self._cond:
            self._queued_rows -= job.rows
        self.finished[outcome] += 1
        if not job.future.done():
            job.future.set_exception(error) if error is not None else job.future.set_result(result)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._inbox and not self._active and not self._closing:
                    self._cond.wait()
                if self._closing and not self._inbox and not self._active:
                    return
                self._active.extend(self._inbox)    # new requests join this tick
                self._inbox.clear()
            self._drop_cancelled()
            if self._active:
                self._step(self._select())

    def _drop_cancelled(self) -> None:
        now = time.monotonic()
        keep = []
        for job in self._active:
            if job.cancelled:
                self._finish(job, "cancelled", error=Cancelled("request cancelled"))
            elif job.deadline is not None and now > job.deadline:
                self._finish(job, "deadline", error=DeadlineExceeded(
                    f"deadline exceeded after {now - job.submitted:.1f} s "
                    f"({job.trajectory.k} of {job.trajectory.total} steps done)"))
            else:
                keep.append(job)
        self._active = keep

    def _select(self) -> list[Job]:
        """Jobs for this tick: least recently stepped first, until the next would exceed max_batch rows
        (a job larger than max_batch goes alone; the backend splits it)."""
        chosen, rows = [], 0
        for job in sorted(self._active, key=lambda j: j.last_tick):   # stable: ties in arrival order
            if chosen and (rows + job.rows > self.max_batch or job.engine is not chosen[0].engine):
                continue
            chosen.append(job)
            rows += job.rows
            if rows >= self.max_batch:
                break
        return chosen

    def _unet(self, unet, x: np.ndarray, t: np.ndarray, c: np.ndarray) -> np.ndarray:
        """eps for the tick's rows: one backend call, or `parallel` calls on row slices at once."""
        rows = x.shape[0]
        if self._pool is None or rows < 2 * MIN_SLICE_ROWS:
            return unet(x, t, c)
        k = min(self.parallel, rows // MIN_SLICE_ROWS)
        bounds = [rows * j // k for j in range(k + 1)]
        slices = [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]
        others = [self._pool.submit(unet, x[s], t[s], c[s]) for s in slices[1:]]
        first = unet(x[slices[0]], t[slices[0]], c[slices[0]])
        return np.concatenate([first, *(f.result() for f in others)])

    def _step(self, jobs: list[Job]) -> None:
        self._tick += 1
        started = time.perf_counter()
        try:
            parts = [job.trajectory.inputs() for job in jobs]
            x, t, c = (np.concatenate([p[k] for p in parts]) for k in range(3))   # [R,C,H,W], [R,1], [R,k]
            called = time.perf_counter()
            eps = self._unet(jobs[0].engine or self.unet, x, t, c)                 # [R,C,H,W]
            self.unet_seconds.observe(time.perf_counter() - called)
            self.batch_rows.observe(x.shape[0])
        except Exception as e:   # a failed call fails its requests, never the service
            for job in jobs:
                self._active.remove(job)
                self._finish(job, "error", error=e if isinstance(e, DdpmEdgeError) else
                             DdpmEdgeError(f"generation failed: {type(e).__name__}: {e}", exit_code=70))
            return
        row = 0
        for job in jobs:
            job.last_tick = self._tick
            try:
                job.trajectory.advance(eps[row:row + job.rows])
                if job.trajectory.done:
                    x0 = job.trajectory.x
                    if not np.all(np.isfinite(x0)):
                        raise DdpmEdgeError("the model produced non-finite values", exit_code=4)
                    self._active.remove(job)
                    self._finish(job, "ok", result=make_batch(self.generator, job.params, x0, job.engine))
            except Exception as e:
                if job in self._active:
                    self._active.remove(job)
                self._finish(job, "error", error=e if isinstance(e, DdpmEdgeError) else
                             DdpmEdgeError(f"generation failed: {type(e).__name__}: {e}", exit_code=70))
            row += job.rows
        self._step_seconds = 0.9 * self._step_seconds + 0.1 * (time.perf_counter() - started)

