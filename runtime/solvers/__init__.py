"""Solvers (samplers) in NumPy, one per file, model-free: a solver lists its `timesteps` (schedule indices,
descending, first = T) and maps (x_i, eps, i, z) to x_prev. The sampling loop (runtime/sampling.py) calls the
UNet once per timestep with t = i / T and draws z where `needs_noise(i)`.

    ddpm          the course's ancestral DDPM, all T steps            ddpm.py
    ddim          the course's DDIM (lesson 4), η ≥ 0                  ddim.py
    dpmpp-2m      DPM-Solver++(2M)                                     dpmpp_2m.py
    dpmpp-2m-sde  SDE-DPM-Solver++(2M), midpoint                       dpmpp_2m_sde.py
    dpmpp-3m-sde  SDE-DPM-Solver++(3M)                                 dpmpp_3m_sde.py
    unipc         UniPC (bh2), predictor-corrector                     unipc.py

Multistep solvers keep their history inside: `make_sampler` returns a fresh instance, one per trajectory.
Shapes: x, eps, z are [N, C, H, W] float32. The torch twin of ddpm/ddim lives in ddpm_ref/sampling.py.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import DdpmEdgeError
from ..schedule import Schedule
from .ddim import DEFAULT_DDIM_STEPS, DDIMSampler
from .ddpm import DDPMSampler
from .dpmpp_2m import DPMSolverPP2M
from .dpmpp_2m_sde import DPMSolverPP2MSDE
from .dpmpp_3m_sde import DPMSolverPP3MSDE
from .spacing import SPACINGS, make_timesteps
from .unipc import UniPC

SAMPLERS = {
    "ddpm": DDPMSampler,
    "ddim": DDIMSampler,
    "dpmpp-2m": DPMSolverPP2M,
    "dpmpp-2m-sde": DPMSolverPP2MSDE,
    "dpmpp-3m-sde": DPMSolverPP3MSDE,
    "unipc": UniPC,
}
DEFAULT_SAMPLER = "dpmpp-2m-sde"   # ddpm-run and SpriteGenerator without a sampler: README "Defaults"
DEFAULT_STEPS = {              # None: all T steps
    "ddpm": None,
    "ddim": DEFAULT_DDIM_STEPS,
    "dpmpp-2m": 20,
    "dpmpp-2m-sde": 10,        # the default: the yardstick's equal-to-DDPM-500 choice (README "Defaults")
    "dpmpp-3m-sde": 20,
    "unipc": 10,
}
COURSE_SAMPLERS = ("ddpm", "ddim")    # the course's own: no default guidance, reproduced exactly
# w when a class is asked for and no --guidance is given (modern solvers only): the yardstick's choice,
# README "Defaults" (w = 2 lifts class accuracy far above DDPM-500's at a lower Fréchet distance)
DEFAULT_CLASS_GUIDANCE = 2.0
GPU_LOOP_SAMPLERS = ("ddpm", "ddim")   # the fused device loop (runtime/backends/loop_graph.py) has only these steps
SAMPLER_HELP = {
    "ddpm": "the course's DDPM",
    "ddim": "DDIM of course lesson 4, --eta adds noise",
    "dpmpp-2m": "DPM-Solver++(2M), deterministic",
    "dpmpp-2m-sde": "SDE-DPM-Solver++(2M), stochastic",
    "dpmpp-3m-sde": "SDE-DPM-Solver++(3M), stochastic",
    "unipc": "UniPC bh2 predictor-corrector, deterministic",
}


def check_sampler(name) -> str:
    """The registry name for `name` (any case), or a one-line refusal."""
    if not isinstance(name, str) or name.lower() not in SAMPLERS:
        raise DdpmEdgeError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return name.lower()


def check_eta(name: str, eta) -> float:
    if isinstance(eta, bool) or not isinstance(eta, (int, float, np.integer, np.floating)) or not math.isfinite(eta) or not 0 <= eta <= 1:
        raise DdpmEdgeError(f"eta must be a number from 0 to 1, got {eta!r}")
    if eta != 0 and name != "ddim":
        raise DdpmEdgeError(f"eta applies to the ddim sampler only, not {name}")
    return float(eta)


def check_spacing(name: str, spacing) -> str:
    if not isinstance(spacing, str) or spacing.lower() not in SPACINGS:
        raise DdpmEdgeError(f"unknown spacing {spacing!r}; choose one of {', '.join(SPACINGS)}")
    if name == "ddpm" and spacing.lower() != "uniform":
        raise DdpmEdgeError(f"ddpm visits every index; spacing {spacing!r} applies to the other samplers")
    return spacing.lower()


def default_steps(name: str, T: int) -> int:
    steps = DEFAULT_STEPS[check_sampler(name)]
    return T if steps is None else steps


def make_sampler(name: str, schedule: Schedule, steps: int | None = None, eta: float = 0.0,
                 spacing: str = "uniform"):
    """A fresh solver for one trajectory. `ddpm` always runs all T steps; the others run `steps`
    (default DEFAULT_STEPS[name]) indices chosen by `spacing` (uniform, logsnr, karras); `eta` is DDIM's."""
    name = check_sampler(name)
    eta = check_eta(name, eta)
    spacing = check_spacing(name, spacing)
    if name == "ddpm":
        if steps not in (None, schedule.T):
            raise DdpmEdgeError(f"ddpm runs all {schedule.T} steps; use another sampler (ddim, dpmpp-2m-sde, …) "
                                f"for {steps}")
        return DDPMSampler(schedule)
    steps = DEFAULT_STEPS[name] if steps is None else steps
    if name == "ddim":
        make_timesteps(schedule, steps, spacing)          # validates steps before the stride is taken
        return DDIMSampler(schedule, steps, eta=eta, spacing=spacing)
    return SAMPLERS[name](schedule, steps, spacing=spacing)


__all__ = ["SAMPLERS", "DEFAULT_SAMPLER", "DEFAULT_STEPS", "DEFAULT_DDIM_STEPS", "GPU_LOOP_SAMPLERS", "SPACINGS",
           "DDPMSampler", "DDIMSampler", "DPMSolverPP2M", "DPMSolverPP2MSDE", "DPMSolverPP3MSDE", "UniPC", "make_sampler",
           "make_timesteps", "check_sampler", "default_steps"]
