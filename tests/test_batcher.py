"""The continuous batcher (runtime/batching.py): requests share UNet calls and still get exactly the
sprites `generate_raw` / `ddpm-run` give them; admission, cancellation, deadlines, failures."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from ddpm_edge.runtime.api import SpriteGenerator
from ddpm_edge.runtime.batching import ContinuousBatcher, DeadlineExceeded, Overloaded, ShuttingDown
from ddpm_edge.runtime.errors import Cancelled, DdpmEdgeError
from ddpm_edge.runtime.params import GenerationParams
from ddpm_edge.runtime.sampling import SeededNoise, Trajectory, sample
from ddpm_edge.runtime.solvers import make_sampler


class Recording:
    """The shipped UNet, recording the rows of every call; optionally failing or slowed down."""

    def __init__(self, unet, fail_on=(), delay=0.0):
        self.unet, self.fail_on, self.delay = unet, set(fail_on), delay
        self.spec, self.sha256, self.path, self.max_batch = unet.spec, unet.sha256, unet.path, unet.max_batch
        self.calls: list[int] = []
        self.ts: list[np.ndarray] = []

    def __call__(self, x, t, c):
        self.calls.append(x.shape[0])
        self.ts.append(t.copy())
        if len(self.calls) in self.fail_on:
            raise RuntimeError("injected failure")
        if self.delay:
            time.sleep(self.delay)
        return self.unet(x, t, c)


@pytest.fixture(scope="module")
def generator():
    return SpriteGenerator.load(device="cpu")


def recording(generator, **kw) -> SpriteGenerator:
    return SpriteGenerator(Recording(generator.unet, **kw))


REQUESTS = [GenerationParams(n=2, sampler="ddpm", seed=11, context="random"),
            GenerationParams(n=1, sampler="ddim", steps=20, seed=3, context="food", guidance=2.0),
            GenerationParams(n=3, sampler="ddim", steps=7, seed=5),
            GenerationParams(n=1, sampler="ddim", steps=33, seed=9, context="0,1,0.5,0,0", guidance=0.5,
                             background="transparent"),
            GenerationParams(n=2, sampler="dpmpp-2m-sde", steps=10, seed=4, context="food", guidance=2.0),
            GenerationParams(n=1, sampler="dpmpp-3m-sde", steps=12, seed=6, spacing="karras", rng="philox"),
            GenerationParams(n=2, sampler="dpmpp-2m", steps=9, seed=8, spacing="logsnr"),
            GenerationParams(n=1, sampler="ddim", steps=15, seed=10, eta=1.0, rng="philox")]


def test_trajectory_is_the_sample_loop(generator):
    """sample() is Trajectory stepped alone: the same x_0, bit for bit, also when stepped by hand."""
    spec = generator.spec
    c = np.eye(spec.n_cfeat, dtype=np.float32)[[1, 3]]
    solver = make_sampler("ddim", spec.schedule, 10)
    expected = sample(generator.unet, solver, (2, *spec.sample_shape), c, SeededNoise(4))
    trajectory = Trajectory(solver, (2, *spec.sample_shape), c, SeededNoise(4))
    while not trajectory.done:
        trajectory.advance(generator.unet(*trajectory.inputs()))
    assert trajectory.k == trajectory.total == 10
    np.testing.assert_array_equal(trajectory.x, expected)


def test_concurrent_requests_match_generate_raw(generator):
    """Requests of every solver (multistep ones keep history per request), step counts, spacings, noise
    generators, guidance and n, submitted from several threads, share UNet calls and each gets
    generate_batch's x_0 (≤ 1e-4; in fact exactly) and sprites — on the engine generate_batch picks for
    its configuration (backend auto may pick a faster one with an equal quality verdict)."""
    batcher = ContinuousBatcher(generator, max_batch=64)
    results = [None] * len(REQUESTS)

    def client(k):
        results[k] = batcher.generate(REQUESTS[k])

    threads = [threading.Thread(target=client, args=(k,)) for k in range(len(REQUESTS))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    batcher.close()
    for params, batch in zip(REQUESTS, results):
        assert batch is not None
        want = generator.generate_batch(params)
        assert np.abs(batch.samples - want.samples).max() <= 1e-4
        np.testing.assert_array_equal(batch.samples, want.samples)
        np.testing.assert_array_equal(batch.sprites, want.sprites)
        assert batch.params == want.params and batch.names == want.names
        assert (batch.backend, batch.precision) == (want.backend, want.precision)
    steps = sum(len(make_sampler(p.sampler, generator.spec.schedule, p.resolved(500).steps, eta=p.eta,
                                 spacing=p.spacing).timesteps) for p in REQUESTS)
    assert batcher.batch_rows.count < steps                  # calls were shared
    assert batcher.finished["ok"] == len(REQUESTS) and batcher.queued_rows == 0


def test_join_next_tick_leave_at_once(generator):
    """Per-row t: jobs at different steps share a call; a finished job's rows leave at once."""
    gen = recording(generator)
    batcher = ContinuousBatcher(gen, start=False)
    short = batcher.submit(GenerationParams(n=1, sampler="ddim", steps=5, seed=1))
    long = batcher.submit(GenerationParams(n=2, sampler="ddim", steps=10, seed=2))
    batcher._worker.start()
    short.result(30), long.result(30)
    batcher.close()
    assert gen.unet.calls == [3] * 5 + [2] * 5
    # the first call: each job at its own first timestep (t = 1), later t differ by the job's stride
    t = gen.unet.ts[1][:, 0]
    assert t[0] == pytest.approx(400 / 500) and t[1] == pytest.approx(450 / 500)


def test_max_batch_round_robin(generator):
    """No call exceeds max_batch rows; every job progresses (oldest-served first)."""
    gen = recording(generator)
    batcher = ContinuousBatcher(gen, max_batch=4, start=False)
    jobs = [batcher.submit(GenerationParams(n=n, sampler="ddim", steps=5, seed=k)) for k, n in enumerate((3, 2, 2, 1))]
    batcher._worker.start()
    out = [job.result(30) for job in jobs]
    batcher.close()
    assert max(gen.unet.calls) <= 4 and sum(gen.unet.calls) == 5 * 8
    np.testing.assert_array_equal(out[2].samples, generator.generate_raw(2, seed=2, sampler="ddim", steps=5))


def test_oversized_job_runs_alone(generator):
    gen = recording(generator)
    batcher = ContinuousBatcher(gen, max_batch=2)
    batch = batcher.generate(GenerationParams(n=3, sampler="ddim", steps=4, seed=0, guidance=1.0))
    batcher.close()
    assert gen.unet.calls == [6] * 4
    np.testing.assert_array_equal(batch.samples, generator.generate_raw(3, seed=0, sampler="ddim", steps=4,
                                                                        guidance=1.0))


def test_admission_limits(generator):
    batcher = ContinuousBatcher(recording(generator, delay=0.02), max_n=4, max_queued_rows=6)
    with pytest.raises(DdpmEdgeError, match="at most 4 sprites"):
        batcher.submit(GenerationParams(n=5))
    with pytest.raises(DdpmEdgeError, match="unknown context"):
        batcher.submit(GenerationParams(n=1, context="dragon"))
    first = batcher.submit(GenerationParams(n=4, sampler="ddim", steps=50, seed=1))
    with pytest.raises(Overloaded) as overloaded:
        batcher.submit(GenerationParams(n=2, sampler="ddim", steps=5, seed=1, guidance=1.0))   # 4 rows
    assert overloaded.value.retry_after >= 1
    second = batcher.submit(GenerationParams(n=2, sampler="ddim", steps=5, seed=1))           # 2 rows fit
    second.result(30)
    first.cancel()
    with pytest.raises(Cancelled):
        first.result(30)
    batcher.close()
    assert batcher.queued_rows == 0 and batcher.finished == {"ok": 1, "cancelled": 1}
    with pytest.raises(ShuttingDown):
        batcher.submit(GenerationParams(n=1))


def test_deadline(generator):
    batcher = ContinuousBatcher(recording(generator, delay=0.01))
    job = batcher.submit(GenerationParams(n=1, sampler="ddpm", seed=1), timeout=0.2)
    with pytest.raises(DeadlineExceeded, match="deadline exceeded"):
        job.result(30)
    batcher.close()
    assert batcher.finished["deadline"] == 1 and batcher.queued_rows == 0


def test_failed_call_fails_only_its_requests(generator):
    gen = recording(generator, fail_on={2})
    batcher = ContinuousBatcher(gen, start=False)
    doomed = batcher.submit(GenerationParams(n=1, sampler="ddim", steps=3, seed=1))
    batcher._worker.start()
    with pytest.raises(DdpmEdgeError, match="injected failure"):
        doomed.result(30)
    fine = batcher.generate(GenerationParams(n=1, sampler="ddim", steps=3, seed=1))
    batcher.close()
    np.testing.assert_array_equal(fine.samples, generator.generate_raw(1, seed=1, sampler="ddim", steps=3))
    assert batcher.finished == {"error": 1, "ok": 1}


def test_close_drains_or_cancels(generator):
    batcher = ContinuousBatcher(recording(generator))
    job = batcher.submit(GenerationParams(n=1, sampler="ddim", steps=10, seed=1))
    batcher.close(drain=True)
    assert job.result(0).samples.shape[0] == 1
    batcher = ContinuousBatcher(recording(generator, delay=0.01))
    job = batcher.submit(GenerationParams(n=1, sampler="ddpm", seed=1))
    batcher.close(drain=False)
    with pytest.raises(Cancelled):
        job.result(0)
    assert not batcher.running


def test_parallel_slices_same_sprites(generator):
    """parallel=2: each tick's rows go to the backend as 2 slices at once; the sprites do not change."""
    gen = recording(generator)
    batcher = ContinuousBatcher(gen, parallel=2, start=False)
    jobs = [batcher.submit(GenerationParams(n=3, sampler="ddim", steps=5, seed=k, guidance=float(k))) for k in range(3)]
    batcher._worker.start()
    out = [job.result(60) for job in jobs]
    batcher.close()
    assert sorted(gen.unet.calls[:2]) == [7, 8] and sum(gen.unet.calls) == 15 * 5   # 15 rows per tick, 2 slices
    for k, batch in enumerate(out):
        np.testing.assert_array_equal(batch.samples, generator.generate_raw(3, seed=k, sampler="ddim", steps=5,
                                                                            guidance=float(k)))
