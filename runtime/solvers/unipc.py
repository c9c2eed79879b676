"""UniPC (Zhao et al. 2023, arXiv:2302.04867): the unified predictor UniP and corrector UniC, B(h) = e^(−h) − 1
("bh2"), in data prediction, as diffusers' UniPCMultistepScheduler(solver_type="bh2", predict_x0=True,
lower_order_final=True, final_sigmas_type="zero"). One UNet call per step: the corrector reuses the model
output at the new point, which the next predictor needs anyway.

With hh = −h, h = λ_t − λ_s0 (see multistep.py), φ₁ term hφ₁ = e^(hh) − 1, r_i = (λ_{s_i} − λ_s0)/h < 0 and
D_i = (m_i − m0)/r_i for the earlier predictions m_i (UniP-p and UniC-p of the paper, data prediction):

    UniP-p:  x_t = (σ_t/σ_s0) · x − α_t hφ₁ · m0 − α_t B(h) · Σ_{i<p} ρ^p_i D_i
    UniC-p:  x_t^c = (σ_t/σ_s0) · x_s0 − α_t hφ₁ · m0 − α_t B(h) · (Σ_{i<p} ρ^c_i D_i + ρ^c_p · (m_t − m0))

ρ solves R ρ = g with R_{ki} = r_i^(k−1) (r_p = 1) and g_k = k! · φ_{k+1}(hh) · hh / B(h), with the exponential
integrator functions φ_1(x) = (e^x − 1)/x, φ_{k+1}(x) = (φ_k(x) − 1/k!)/x; the predictor drops the last row and
column; the order-2 predictor and order-1 corrector use ρ = ½. Step k predicts with order min(order, K − k, k + 1); each step first corrects the sample it was given with the
model output at it, then predicts from the corrected sample. The last step returns x0 = m0.
"""
from __future__ import annotations

from math import factorial

import numpy as np

from .multistep import MultistepSolver

DEFAULT_STEPS = 10


def _rhos(r: list[float], hh: float, order: int, predictor: bool) -> np.ndarray:
    """ρ for UniP-order (predictor) or UniC-order: R ρ = g, R_{k,i} = r_i^(k−1), g_k = k!·φ_{k+1}(hh)·hh/B(h)."""
    B = np.expm1(hh)
    if predictor and order <= 2:
        return np.array([0.5] if order == 2 else [])
    if not predictor and order == 1:
        return np.array([0.5])
    rks = np.array([*r, 1.0])
    g, h_phi_k = [], np.expm1(hh) / hh - 1.0               # h φ_2(hh) / hh form, then the recurrence
    for k in range(1, order + 1):
        g.append(h_phi_k * factorial(k) / B)
        h_phi_k = h_phi_k / hh - 1.0 / factorial(k + 1)
    R = np.stack([rks ** (k - 1) for k in range(1, order + 1)])
    g = np.array(g)
    return np.linalg.solve(R[:-1, :-1], g[:-1]) if predictor else np.linalg.solve(R, g)


class UniPC(MultistepSolver):
    name = "unipc"
    order = 2
    stochastic = False
    TABLES = (*MultistepSolver.TABLES, "correctors")

    def __init__(self, schedule, steps, spacing="uniform", order: int | None = None):
        if order is not None:
            self.order = int(order)
        super().__init__(schedule, steps, spacing)
        self._last = None                        # the (corrected) sample the previous step predicted from

    def _make_tables(self) -> None:
        super()._make_tables()
        self.correctors = (None, *(self._corrector(k) for k in range(1, len(self.timesteps))))

    def step_order(self, k: int) -> int:
        return min(self.order, len(self.timesteps) - k, k + 1)

    def _terms(self, k: int, order: int):
        """The interval from s0 = timesteps[k] to t = timesteps[k+1] (or index 0): h, hh, r_i, α_t, σ_t/σ_s0."""
        lam = self.lambda_
        h = lam[k + 1] - lam[k]
        r = [(lam[k - i] - lam[k]) / h for i in range(1, order)]
        return h, -h, r, self.alpha[k + 1], self.sigma[k + 1] / self.sigma[k]

    def _combine(self, order, hh, r, alpha_t, rho, extra: float = 0.0):
        """Weights of m0, m1, … for −α_t hφ₁ m0 − α_t B(h) (Σ ρ_i D_i + extra·(· − m0))."""
        B = np.expm1(hh)
        weights = [-alpha_t * np.expm1(hh) + alpha_t * B * (sum(rho[i] / r[i] for i in range(order - 1)) + extra)]
        weights += [-alpha_t * B * rho[i] / r[i] for i in range(order - 1)]
        return weights

    def _plan(self, k: int):
        f32 = np.float32
        p, q = 1.0 / self.alpha[k], -self.sigma[k] / self.alpha[k]
        if k == len(self.timesteps) - 1:
            return f32(p), f32(q), None, (f32(1.0),), None
        order = self.step_order(k)
        h, hh, r, alpha_t, a = self._terms(k, order)
        weights = self._combine(order, hh, r, alpha_t, _rhos(r, hh, order, predictor=True))
        return f32(p), f32(q), f32(a), tuple(f32(w) for w in weights), None

    def _corrector(self, k: int):
        """UniC at step k corrects x_k, predicted over the interval of step k − 1 with that step's order:
        (a on x_{k−1}, weight of the new m_k, weights of m_{k−1}, m_{k−2}, …)."""
        order = self.step_order(k - 1)
        h, hh, r, alpha_t, a = self._terms(k - 1, order)
        rho = _rhos(r, hh, order, predictor=False)
        B = np.expm1(hh)
        weights = self._combine(order, hh, r, alpha_t, rho[:-1], extra=rho[-1])
        return np.float32(a), np.float32(-alpha_t * B * rho[-1]), tuple(np.float32(w) for w in weights)

    def step(self, x: np.ndarray, eps: np.ndarray, i: int, z: np.ndarray | None = None) -> np.ndarray:
        k = self._check_step(i)
        p, q, a, weights, _ = self.plan[k]
        m_new = np.multiply(x, p, dtype=np.float32)               # the model's x0 at the uncorrected x_k
        self._add(m_new, eps, q)
        if k > 0:                                                  # UniC: correct x_k with m_new
            a_c, w_new, w_old = self.correctors[k]
            x = np.multiply(self._last, a_c, dtype=np.float32)
            self._add(x, m_new, w_new)
            for w, m in zip(w_old, reversed(self.history)):
                self._add(x, m, w)
        self.history.append(m_new)
        del self.history[:-self.order]
        self._last = x
        self._k = k + 1
        if a is None:
            return m_new
        return self._extrapolate(x, a, weights)
