"""SDE-DPM-Solver++(3M): the third-order multistep data-prediction SDE solver of diffusers'
DPMSolverMultistepScheduler(algorithm_type="sde-dpmsolver++", solver_order=3), built on Lu et al. 2022
(arXiv:2211.01095) with the third-order differences of DPM-Solver (Lu et al. 2022, arXiv:2206.00927, §3.3).
With h = λ_t − λ_s0, r0 = (λ_s0 − λ_s1)/h, r1 = (λ_s1 − λ_s2)/h (see multistep.py), z ~ N(0, I):

    D0 = m0,  D1_0 = (m0 − m1)/r0,  D1_1 = (m1 − m2)/r1
    D1 = D1_0 + r0/(r0 + r1) · (D1_0 − D1_1),   D2 = (D1_0 − D1_1)/(r0 + r1)
    x_t = (σ_t/σ_s0) e^(−h) · x + α_t (1 − e^(−2h)) · D0
          + α_t ((1 − e^(−2h))/(−2h) + 1) · D1
          + α_t ((1 − e^(−2h) − 2h)/(2h)² − ½) · D2 + σ_t √(1 − e^(−2h)) · z

The first step is first order, the second second order (as dpmpp_2m_sde); with fewer than 15 steps the
second-to-last is second order; the last goes to x_0 = m0.
"""
from __future__ import annotations

import numpy as np

from .dpmpp_2m_sde import DPMSolverPP2MSDE, sde_first_order

DEFAULT_STEPS = 20


class DPMSolverPP3MSDE(DPMSolverPP2MSDE):
    name = "dpmpp-3m-sde"
    order = 3
    stochastic = True

    def coefficients(self, order, h, r, alpha_t, sigma_t, sigma_s0):
        if order < 3:
            return super().coefficients(order, h, r, alpha_t, sigma_t, sigma_s0)
        a, A, c = sde_first_order(h, alpha_t, sigma_t, sigma_s0)
        e2 = -np.expm1(-2.0 * h)
        B = alpha_t * (e2 / (-2.0 * h) + 1.0)
        C = alpha_t * ((e2 - 2.0 * h) / (2.0 * h) ** 2 - 0.5)
        r0, r1 = r
        # D1 and D2 as combinations of D1_0 and D1_1, then of m0, m1, m2
        u = B * (1.0 + r0 / (r0 + r1)) + C / (r0 + r1)       # weight of D1_0
        v = -B * r0 / (r0 + r1) - C / (r0 + r1)              # weight of D1_1
        return a, (A + u / r0, -u / r0 + v / r1, -v / r1), c
