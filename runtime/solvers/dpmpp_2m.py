"""DPM-Solver++(2M) (Lu et al. 2022, arXiv:2211.01095, Alg. 2): deterministic, second-order multistep, in data
prediction. With h = λ_t − λ_s0, r0 = (λ_s0 − λ_s1) / h (see multistep.py):

    order 1 (first and last step):  x_t = (σ_t/σ_s0) · x − α_t (e^(−h) − 1) · m0              (eq. 5, = DDIM)
    order 2:                        x_t = (σ_t/σ_s0) · x − α_t (e^(−h) − 1) · D
                                    D = (1 + 1/(2 r0)) · m0 − 1/(2 r0) · m1                    (Alg. 2)
"""
from __future__ import annotations

import numpy as np

from .multistep import MultistepSolver

DEFAULT_STEPS = 20


class DPMSolverPP2M(MultistepSolver):
    name = "dpmpp-2m"
    order = 2
    stochastic = False

    def coefficients(self, order, h, r, alpha_t, sigma_t, sigma_s0):
        a = sigma_t / sigma_s0
        A = -alpha_t * np.expm1(-h)                     # −α_t (e^(−h) − 1)
        if order == 1:
            return a, (A,), 0.0
        half = 0.5 / r[0]
        return a, (A * (1.0 + half), -A * half), 0.0
