"""The solvers against an independent implementation, diffusers' schedulers, on the course schedule
(trained_betas = the course's betas, num_train_timesteps = T + 1, so diffusers' index i is ours), step
for step: both are fed the same x, the same model outputs and the same noise at every step.

The one difference between the schedules is ᾱ_0 (course: 1; diffusers: 1 − β_0). DPM-Solver++ with
final_sigmas_type="zero" ends at σ = 0 itself; for DDIM the scheduler's alphas_cumprod is set to the
course's (ᾱ_0 = 1) so that its last step, to index 0, is the course's, and the last step is also checked
against the analytic x0 = (x − √(1 − ᾱ_i)·eps)/√ᾱ_i. Plus golden values, spacings and refusals.
"""
import numpy as np
import pytest

from ddpm_edge.runtime.errors import DdpmEdgeError
from ddpm_edge.runtime.schedule import Schedule, ddim_timesteps
from ddpm_edge.runtime.solvers import (DEFAULT_STEPS, SAMPLERS, DDIMSampler, check_sampler, default_steps,
                                       make_sampler, make_timesteps)

SHAPE = (3, 3, 8, 8)
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),          # diffusers on NumPy 2
              pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")]  # its log σ at ᾱ_0 = 1


def fake_model(schedule, seed=0):
    """eps(x, i) of a denoiser that knows a fixed x0* (plus a little error): keeps magnitudes realistic."""
    rng = np.random.default_rng(seed)
    x0_star = rng.uniform(-1, 1, SHAPE).astype(np.float32)
    ab = schedule.alphas_cumprod.astype(np.float64)

    def eps(x, i):
        e = (x - np.sqrt(ab[i]) * x0_star) / np.sqrt(1.0 - ab[i]) + 0.1 * rng.standard_normal(SHAPE)
        return e.astype(np.float32)
    return eps


def run_ours(solver, schedule, seed=0):
    """Our trajectory: returns (x_T, [eps_k], [z_k or None], [x after step k])."""
    rng = np.random.default_rng(seed + 100)
    model = fake_model(schedule, seed)
    x = rng.standard_normal(SHAPE, dtype=np.float32)
    x_T, epss, zs, xs = x, [], [], []
    for i in solver.timesteps:
        z = rng.standard_normal(SHAPE, dtype=np.float32) if solver.needs_noise(i) else None
        eps = model(x, i)
        x = solver.step(x, eps, i, z)
        assert x.dtype == np.float32 and x.shape == SHAPE
        epss.append(eps), zs.append(z), xs.append(x)
    return x_T, epss, zs, xs


@pytest.fixture(scope="module")
def diffusers():
    return pytest.importorskip("diffusers")


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def dpm_scheduler(diffusers, torch, schedule, algorithm, order, timesteps):
    sched = diffusers.DPMSolverMultistepScheduler(
        num_train_timesteps=schedule.T + 1, trained_betas=schedule.betas.astype(np.float64).tolist(),
        algorithm_type=algorithm, solver_order=order, solver_type="midpoint", prediction_type="epsilon",
        lower_order_final=True, final_sigmas_type="zero", thresholding=False)
    sched.alphas_cumprod = torch.from_numpy(schedule.alphas_cumprod.copy())   # course rounding (float64 → float32)
    sched.set_timesteps(timesteps=list(timesteps))
    return sched


def test_diffusers_reads_the_course_schedule(diffusers):
    """trained_betas with T + 1 entries: diffusers' ᾱ_i is ours for i ≥ 1 (it keeps ᾱ_0 = 1 − β_0)."""
    s = Schedule()
    sched = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=s.T + 1,
                                                  trained_betas=s.betas.astype(np.float64).tolist())
    theirs = sched.alphas_cumprod.numpy()
    np.testing.assert_allclose(theirs[1:], s.alphas_cumprod[1:], rtol=2e-6)
    assert theirs[0] == pytest.approx(1 - s.betas[0]) and s.alphas_cumprod[0] == 1


@pytest.mark.parametrize("name, algorithm, order", [
    ("dpmpp-2m", "dpmsolver++", 2),
    ("dpmpp-2m-sde", "sde-dpmsolver++", 2),
    ("dpmpp-3m-sde", "sde-dpmsolver++", 3),
])
@pytest.mark.parametrize("steps, spacing", [(10, "uniform"), (20, "logsnr"), (12, "karras"), (25, "karras"),
                                            (1, "uniform"), (3, "logsnr")])
def test_dpm_solvers_match_diffusers_step_for_step(diffusers, torch, name, algorithm, order, steps, spacing):
    s = Schedule()
    solver = make_sampler(name, s, steps, spacing=spacing)
    x_T, epss, zs, xs = run_ours(solver, s)
    sched = dpm_scheduler(diffusers, torch, s, algorithm, order, solver.timesteps)
    assert sched.timesteps.tolist() == solver.timesteps
    x = x_T
    for k, i in enumerate(solver.timesteps):
        noise = None if zs[k] is None else torch.from_numpy(zs[k])
        if algorithm.startswith("sde") and noise is None:           # the last step: diffusers multiplies it by 0
            assert k == len(solver.timesteps) - 1
            noise = torch.zeros(SHAPE)
        theirs = sched.step(torch.from_numpy(epss[k]), i, torch.from_numpy(x), variance_noise=noise).prev_sample
        np.testing.assert_allclose(xs[k], theirs.numpy(), rtol=1e-4, atol=2e-5, err_msg=f"step {k} (index {i})")
        x = xs[k]                                                      # both continue from our x
    sigma, alpha = np.sqrt(1 - s.alphas_cumprod[i]), np.sqrt(s.alphas_cumprod[i])
    np.testing.assert_allclose(xs[-1], (xs[-2] if len(xs) > 1 else x_T) / alpha - sigma / alpha * epss[-1],
                               rtol=1e-5, atol=1e-5)                   # the last step lands on x0


@pytest.mark.parametrize("steps, eta", [(25, 1.0), (10, 0.5), (20, 0.3)])
def test_ddim_eta_matches_diffusers_step_for_step(diffusers, torch, steps, eta):
    s = Schedule()
    assert (s.T + 1) // steps == s.T // steps          # diffusers' stride is num_train_timesteps // steps
    solver = make_sampler("ddim", s, steps, eta=eta)
    x_T, epss, zs, xs = run_ours(solver, s)
    assert [z is None for z in zs] == [False] * (len(zs) - 1) + [True]
    sched = diffusers.DDIMScheduler(num_train_timesteps=s.T + 1, trained_betas=s.betas.astype(np.float64).tolist(),
                                    clip_sample=False, set_alpha_to_one=True, steps_offset=0,
                                    prediction_type="epsilon", thresholding=False)
    sched.alphas_cumprod = torch.from_numpy(s.alphas_cumprod.copy())       # ᾱ_0 = 1, as the course
    sched.set_timesteps(steps)
    x = x_T
    for k, i in enumerate(solver.timesteps):
        noise = torch.from_numpy(zs[k]) if zs[k] is not None else torch.zeros(SHAPE)
        theirs = sched.step(torch.from_numpy(epss[k]), i, torch.from_numpy(x), eta=eta,
                            variance_noise=noise).prev_sample
        np.testing.assert_allclose(xs[k], theirs.numpy(), rtol=1e-4, atol=2e-5, err_msg=f"step {k} (index {i})")
        x = xs[k]
    ab = s.alphas_cumprod[i]
    np.testing.assert_allclose(xs[-1], (xs[-2] - np.sqrt(1 - ab) * epss[-1]) / np.sqrt(ab), rtol=1e-5, atol=1e-5)


def course_ddim_step(schedule, stride, x, eps, i):
    """Course lesson 4's denoise_ddim as runtime/solvers shipped it before η (the expression, verbatim)."""
    ab = schedule.alphas_cumprod
    ab_t, ab_prev = ab[i], ab[max(i - stride, 0)]
    x0 = (x - np.sqrt(1.0 - ab_t) * eps) * np.float32(np.sqrt(ab_prev) / np.sqrt(ab_t))
    return (x0 + np.sqrt(1.0 - ab_prev) * eps).astype(np.float32, copy=False)


@pytest.mark.parametrize("steps", [25, 7, 1, 500])
def test_ddim_eta_zero_is_the_course_step_bit_for_bit(rng, steps):
    s = Schedule()
    solver = make_sampler("ddim", s, steps, eta=0.0)
    assert solver.timesteps == ddim_timesteps(s, steps) and not any(map(solver.needs_noise, solver.timesteps))
    x = rng.standard_normal(SHAPE, dtype=np.float32)
    for i in solver.timesteps[:30]:
        eps = rng.standard_normal(SHAPE, dtype=np.float32)
        ours, course = solver.step(x, eps, i), course_ddim_step(s, s.T // steps, x, eps, i)
        assert np.array_equal(ours, course)
        x = ours


# golden values: the first 4 numbers of x after the middle step of run_ours (seed 0), recorded when the
# solvers matched diffusers (x_0 itself is mostly the fake model's x0*, the same for every solver)
GOLDEN = {
    ("ddim", 10, "uniform", 0.5): [-0.4771447, -0.9396787, -0.1156192, -1.5596619],
    ("dpmpp-2m", 10, "uniform", 0.0): [-0.7812684, -0.7908375, -0.4235198, -1.5719026],
    ("dpmpp-2m-sde", 10, "karras", 0.0): [0.146138, -0.6825582, -0.7597868, -0.8439322],
    ("dpmpp-3m-sde", 20, "logsnr", 0.0): [0.1607802, -0.1530419, -0.6862254, -1.0650781],
    ("unipc", 10, "karras", 0.0): [-0.1394023, -0.6123497, -0.821733, -1.2810596],
}


@pytest.mark.parametrize("key", list(GOLDEN))
def test_golden_values(key):
    name, steps, spacing, eta = key
    s = Schedule()
    xs = run_ours(make_sampler(name, s, steps, eta=eta, spacing=spacing), s)[3]
    np.testing.assert_allclose(xs[len(xs) // 2].reshape(-1)[:4], GOLDEN[key], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("steps", [1, 2, 5, 10, 25, 100, 500])
@pytest.mark.parametrize("spacing", ["uniform", "logsnr", "karras"])
def test_spacings_are_descending_unique_indices_from_T(steps, spacing):
    s = Schedule()
    t = make_timesteps(s, steps, spacing)
    assert t[0] == s.T and all(1 <= i <= s.T for i in t) and t == sorted(set(t), reverse=True)
    assert len(t) <= max(steps, len(ddim_timesteps(s, steps)))
    if steps <= 25:
        assert len(t) == (len(ddim_timesteps(s, steps)) if spacing == "uniform" else steps)
    if spacing != "uniform" and steps > 1:
        assert t[-1] == 1


@pytest.mark.parametrize("steps", [5, 10, 20])
def test_karras_and_logsnr_spacings_match_diffusers_formulas(diffusers, steps):
    """Karras (ρ = 7) and Lu's uniform-λ sigmas from diffusers' own converters, mapped to indices with its
    _sigma_to_t over the course's σ_1 … σ_T, rounded."""
    s = Schedule()
    sched = diffusers.DPMSolverMultistepScheduler(num_train_timesteps=s.T + 1,
                                                  trained_betas=s.betas.astype(np.float64).tolist())
    ab = s.alphas_cumprod.astype(np.float64)[1:]
    sigmas = np.sqrt((1 - ab) / ab)                       # [T], index 1 … T
    log_sigmas = np.log(sigmas)
    karras = sched._convert_to_karras(in_sigmas=sigmas[::-1].copy(), num_inference_steps=steps)
    lu = np.exp(sched._convert_to_lu(in_lambdas=log_sigmas[::-1].copy(), num_inference_steps=steps))
    for theirs, spacing in ((karras, "karras"), (lu, "logsnr")):
        t = np.rint(sched._sigma_to_t(np.asarray(theirs), log_sigmas)).astype(int) + 1
        assert make_timesteps(s, steps, spacing) == sorted(set(t.tolist()), reverse=True)


def test_registry():
    s = Schedule()
    assert set(SAMPLERS) == set(DEFAULT_STEPS) == {"ddpm", "ddim", "dpmpp-2m", "dpmpp-2m-sde", "dpmpp-3m-sde", "unipc"}
    for name in SAMPLERS:
        a, b = make_sampler(name, s), make_sampler(name.upper(), s)
        assert a is not b and a.name == name and a.schedule is s
        assert len(a.timesteps) == default_steps(name, s.T) and a.timesteps[0] == s.T
    assert make_sampler("dpmpp-2m-sde", s, 10).needs_noise(500)
    assert not make_sampler("dpmpp-2m-sde", s, 10).needs_noise(50)      # the last step goes to x0
    assert not make_sampler("dpmpp-2m", s, 10).needs_noise(500)


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="euler"), "unknown sampler 'euler'; choose one of ddpm, ddim, dpmpp-2m"),
    (dict(name="dpmpp-2m", spacing="cosine"), "unknown spacing 'cosine'"),
    (dict(name="dpmpp-2m", steps=501), "steps must be at most T=500"),
    (dict(name="ddim", steps=501), "steps must be at most T=500"),
    (dict(name="dpmpp-2m-sde", steps=0), "steps must be a positive integer"),
    (dict(name="ddim", steps=2.5), "steps must be a positive integer"),
    (dict(name="dpmpp-2m", eta=0.5), "eta applies to the ddim sampler only"),
    (dict(name="ddpm", eta=1.0), "eta applies to the ddim sampler only"),
    (dict(name="ddim", eta=1.5), "eta must be a number from 0 to 1"),
    (dict(name="ddim", eta=float("nan")), "eta must be a number from 0 to 1"),
    (dict(name="ddpm", steps=50), "ddpm runs all 500 steps"),
    (dict(name="ddpm", spacing="karras"), "ddpm visits every index"),
    (dict(name=None), "unknown sampler None"),
])
def test_refusals_are_one_line(kwargs, match):
    name = kwargs.pop("name")
    with pytest.raises(DdpmEdgeError, match=match) as info:
        make_sampler(name, Schedule(), **kwargs)
    assert "\n" not in str(info.value)


def test_multistep_solver_refuses_steps_out_of_order(rng):
    s = Schedule()
    solver = make_sampler("dpmpp-2m", s, 5)
    x = rng.standard_normal(SHAPE, dtype=np.float32)
    with pytest.raises(DdpmEdgeError, match="expected step index 500, got 400"):
        solver.step(x, x, 400)
    for i in solver.timesteps:
        x = solver.step(x, x * 0.5, i)
    with pytest.raises(DdpmEdgeError, match="fresh solver"):
        solver.step(x, x, 500)
    sde = make_sampler("dpmpp-2m-sde", s, 5)
    with pytest.raises(DdpmEdgeError, match="needs noise"):
        sde.step(x, x, 500)
    assert sde.step(x, x, 500, np.zeros_like(x)).shape == x.shape        # a refused step changed nothing
    assert check_sampler("DDIM") == "ddim" and isinstance(make_sampler("ddim", s), DDIMSampler)


def test_generation_params_carry_solver_settings():
    from ddpm_edge.runtime.params import GenerationParams
    from ddpm_edge.runtime.solvers import DEFAULT_SAMPLER
    p = GenerationParams(4, sampler="DDIM", eta=np.float32(0.5), spacing="Karras")
    assert (p.sampler, p.eta, p.spacing) == ("ddim", 0.5, "karras") and type(p.eta) is float
    assert GenerationParams().sampler == DEFAULT_SAMPLER and GenerationParams().eta == 0.0
    for name in SAMPLERS:
        assert GenerationParams(sampler=name).resolved(500).steps == default_steps(name, 500)
    old = {f: v for f, v in GenerationParams(2, seed=1).as_dict().items() if f not in ("eta", "spacing")}
    assert GenerationParams.from_record(old) == GenerationParams(2, seed=1)      # a /1 record: eta 0, uniform
    for kwargs, match in ((dict(sampler="dpmpp-2m", eta=0.2), "eta applies to the ddim sampler only"),
                          (dict(spacing="cosine"), "unknown spacing"), (dict(sampler="heun"), "unknown sampler"),
                          (dict(sampler="ddim", eta=True), "eta must be a number")):
        with pytest.raises(DdpmEdgeError, match=match):
            GenerationParams(**kwargs)


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("steps, spacing", [(10, "uniform"), (6, "karras"), (20, "logsnr"), (2, "uniform"),
                                            (1, "logsnr")])
def test_unipc_matches_diffusers_step_for_step(diffusers, torch, order, steps, spacing):
    """UniPCMultistepScheduler has no custom timesteps: its timesteps and σ are set to ours (σ_last = 0)."""
    from ddpm_edge.runtime.solvers import UniPC
    s = Schedule()
    solver = UniPC(s, steps, spacing, order=order) if order != 2 else make_sampler("unipc", s, steps, spacing=spacing)
    x_T, epss, zs, xs = run_ours(solver, s)
    sched = diffusers.UniPCMultistepScheduler(
        num_train_timesteps=s.T + 1, trained_betas=s.betas.astype(np.float64).tolist(), solver_order=order,
        solver_type="bh2", predict_x0=True, lower_order_final=True, final_sigmas_type="zero",
        prediction_type="epsilon", thresholding=False)
    sched.set_timesteps(len(solver.timesteps))
    ab = s.alphas_cumprod.astype(np.float64)[solver.timesteps]
    sched.sigmas = torch.from_numpy(np.append(np.sqrt((1 - ab) / ab), 0.0).astype(np.float32))
    sched.timesteps = torch.tensor(solver.timesteps)
    x = x_T
    for k, i in enumerate(solver.timesteps):
        theirs = sched.step(torch.from_numpy(epss[k]), i, torch.from_numpy(x)).prev_sample
        np.testing.assert_allclose(xs[k], theirs.numpy(), rtol=1e-4, atol=3e-5, err_msg=f"step {k} (index {i})")
        x = xs[k]


def test_every_solver_samples_through_the_api(tmp_path):
    """Each registered solver end to end on the tiny ONNX model (with guidance): finite, reproducible from
    the seed, and each its own trajectory (a fresh solver per call, so a second call does not see the
    first one's history)."""
    from pathlib import Path
    from ddpm_edge.runtime.api import SpriteGenerator
    gen = SpriteGenerator.load(Path(__file__).parent / "data" / "records_v1" / "tiny.onnx", device="cpu")
    seen = []
    for name in SAMPLERS:
        steps = None if name == "ddpm" else 6     # 3M SDE differs from 2M SDE from the 3rd of 6 steps
        a = gen.generate_raw(2, seed=3, sampler=name, steps=steps, guidance=2.0, context="hero")
        b = gen.generate_raw(2, seed=3, sampler=name, steps=steps, guidance=2.0, context="hero")
        assert a.shape == (2, 3, 16, 16) and a.dtype == np.float32 and np.isfinite(a).all()
        assert np.array_equal(a, b), name
        assert not any(np.array_equal(a, other) for other in seen), name
        seen.append(a)
