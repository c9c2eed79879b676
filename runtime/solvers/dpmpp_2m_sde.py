"""SDE-DPM-Solver++(2M) (Lu et al. 2022, arXiv:2211.01095, §5 and Appendix: the data-prediction SDE solver),
midpoint form, as diffusers' DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++",
solver_type="midpoint"). With h = λ_t − λ_s0, r0 = (λ_s0 − λ_s1) / h (see multistep.py), z ~ N(0, I):

    order 1:  x_t = (σ_t/σ_s0) e^(−h) · x + α_t (1 − e^(−2h)) · m0 + σ_t √(1 − e^(−2h)) · z
    order 2:  x_t = (σ_t/σ_s0) e^(−h) · x + α_t (1 − e^(−2h)) · (D0 + ½ D1) + σ_t √(1 − e^(−2h)) · z
              D0 = m0,  D1 = (m0 − m1) / r0

Every step but the last draws z; the last goes to x_0 = m0 (σ_t = 0).
"""
from __future__ import annotations

import numpy as np

from .multistep import MultistepSolver

DEFAULT_STEPS = 20


def sde_first_order(h, alpha_t, sigma_t, sigma_s0):
    """(a, A, c): x_t = a·x + A·m0 + c·z, the first-order SDE-DPM-Solver++ step."""
    e2 = -np.expm1(-2.0 * h)                           # 1 − e^(−2h)
    return sigma_t / sigma_s0 * np.exp(-h), alpha_t * e2, sigma_t * np.sqrt(e2)


class DPMSolverPP2MSDE(MultistepSolver):
    name = "dpmpp-2m-sde"
    order = 2
    stochastic = True

    def coefficients(self, order, h, r, alpha_t, sigma_t, sigma_s0):
        a, A, c = sde_first_order(h, alpha_t, sigma_t, sigma_s0)
        if order == 1:
            return a, (A,), c
        half = 0.5 / r[0]
        return a, (A * (1.0 + half), -A * half), c
