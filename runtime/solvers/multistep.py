"""What the DPM-Solver++ family shares (Lu et al. 2022, arXiv:2211.01095): the schedule in (α, σ, λ), the plan of
per-step coefficients, and the history of data predictions.

For an index i of the course schedule (VP: x_i = α_i · x_0 + σ_i · ε):

    α_i = √ᾱ_i,   σ_i = √(1 − ᾱ_i),   λ_i = log α_i − log σ_i        (half log-SNR, eq. 3 of Lu et al.)
    x0_i = (x_i − σ_i · eps) / α_i                                    (data prediction, eq. 4)

A step from s0 = timesteps[k] to t (the next index, or 0 after the last) with h = λ_t − λ_s0 and the
earlier predictions m1 (at s1), m2 (at s2), r_j = (λ_{s_j} − λ_{s_{j+1}}) / h, is linear in everything:

    x_t = a · x_s0 + Σ_j w_j · m_j + c · z            m0 = x0_s0 = p · x_s0 + q · eps

so the plan (p, q, a, w, c) is computed once per solver in float64 and stored as float32 scalars; a step is
a few in-place float32 array operations. Orders follow diffusers' DPMSolverMultistepScheduler with
lower_order_final and final_sigmas_type="zero": step k uses order min(order, k + 1); the last step goes to
index 0 (ᾱ_0 = 1, σ = 0, λ = +∞), where every solver returns m0 (first order, no noise); with fewer than 15
steps the one before it uses order ≤ 2.

A solver instance holds one trajectory's history: make a fresh one (make_sampler) per trajectory.
Shapes: x, eps, z, m_j are [N, C, H, W] float32.
"""
from __future__ import annotations

import numpy as np

from ..errors import DdpmEdgeError
from ..schedule import Schedule
from .spacing import make_timesteps

LOWER_ORDER_BELOW = 15     # fewer steps than this: the second-to-last step uses order ≤ 2 (diffusers' lower_order_final)
_TABLES: dict = {}         # (class, order, schedule, steps, spacing) -> the tables, computed once
MAX_TABLES = 256


class MultistepSolver:
    """Base of the DPM-Solver++ multistep solvers; subclasses give `name`, `order`, `stochastic` and
    `coefficients(order, h, r, alpha_t, sigma_t, sigma_s0) -> (a, weights, c)` for a finite h."""

    name = "multistep"
    order = 1
    stochastic = False
    TABLES = ("alpha", "sigma", "lambda_", "plan")   # per (class, order, schedule, steps, spacing), shared

    def __init__(self, schedule: Schedule, steps: int, spacing: str = "uniform"):
        self.schedule = schedule
        self.spacing = spacing
        self.timesteps = make_timesteps(schedule, steps, spacing)
        key = (type(self), self.order, schedule, int(steps), spacing)
        tables = _TABLES.get(key)
        if tables is None:
            self._make_tables()
            if len(_TABLES) >= MAX_TABLES:
                _TABLES.clear()
            _TABLES[key] = {name: getattr(self, name) for name in self.TABLES}
        else:
            self.__dict__.update(tables)
        self.history: list[np.ndarray] = []      # data predictions m, newest last, at most `order`
        self._k = 0                              # the next step number
        self._scratch: np.ndarray | None = None  # [N, C, H, W] float32, for products added in place

    def _make_tables(self) -> None:
        ab = self.schedule.alphas_cumprod.astype(np.float64)[np.array(self.timesteps + [0])]  # [K+1], last = 1
        self.alpha = np.sqrt(ab)                                                             # [K+1]
        self.sigma = np.sqrt(1.0 - ab)                                                       # [K+1], last = 0
        with np.errstate(divide="ignore"):
            self.lambda_ = np.log(self.alpha) - np.log(self.sigma)                          # [K+1], last = +inf
        for array in (self.alpha, self.sigma, self.lambda_):
            array.flags.writeable = False
        self.plan = tuple(self._plan(k) for k in range(len(self.timesteps)))

    def step_order(self, k: int) -> int:
        K = len(self.timesteps)
        if k == K - 1:
            return 1
        order = min(self.order, k + 1)
        return min(order, 2) if k == K - 2 and K < LOWER_ORDER_BELOW else order

    def _plan(self, k: int):
        f32 = np.float32
        p, q = 1.0 / self.alpha[k], -self.sigma[k] / self.alpha[k]
        if k == len(self.timesteps) - 1:                    # to ᾱ_0 = 1: x_0 = m0 exactly
            return f32(p), f32(q), None, (f32(1.0),), None
        order = self.step_order(k)
        lam = self.lambda_
        h = lam[k + 1] - lam[k]
        r = [(lam[k - j] - lam[k - j - 1]) / h for j in range(order - 1)]   # r0 = h_0/h, r1 = h_1/h
        a, weights, c = self.coefficients(order, h, r, self.alpha[k + 1], self.sigma[k + 1], self.sigma[k])
        return f32(p), f32(q), f32(a), tuple(f32(w) for w in weights), (f32(c) if c else None)

    def coefficients(self, order: int, h: float, r: list[float], alpha_t: float, sigma_t: float,
                     sigma_s0: float) -> tuple[float, tuple[float, ...], float]:
        raise NotImplementedError

    def _add(self, out: np.ndarray, v: np.ndarray, w: np.float32) -> None:
        """out += v · w without a temporary array (the same float32 rounding as `out += v * w`)."""
        if self._scratch is None or self._scratch.shape != v.shape:
            self._scratch = np.empty(v.shape, dtype=np.float32)
        np.multiply(v, w, out=self._scratch)
        out += self._scratch

    def _check_step(self, i: int) -> int:
        k = self._k
        if k >= len(self.timesteps) or self.timesteps[k] != i:
            expected = self.timesteps[k] if k < len(self.timesteps) else "none (trajectory finished)"
            raise DdpmEdgeError(f"{self.name} expected step index {expected}, got {i}: "
                                "use a fresh solver (make_sampler) for each trajectory, in timestep order")
        return k

    def needs_noise(self, i: int) -> bool:
        return self.stochastic and i != self.timesteps[-1]

    def step(self, x: np.ndarray, eps: np.ndarray, i: int, z: np.ndarray | None = None) -> np.ndarray:
        k = self._check_step(i)
        p, q, a, weights, c = self.plan[k]
        if c is not None and z is None:
            raise DdpmEdgeError(f"{self.name} step at index {i} needs noise z")
        m0 = np.multiply(x, p, dtype=np.float32)                 # m0 = p·x + q·eps
        self._add(m0, eps, q)
        self.history.append(m0)
        del self.history[:-self.order]
        self._k = k + 1
        if a is None:
            return m0
        out = self._extrapolate(x, a, weights)
        if c is not None:
            self._add(out, z, c)
        return out

    def _extrapolate(self, x: np.ndarray, a, weights) -> np.ndarray:
        """a·x + Σ_j weights[j]·history[−1−j], the newest model output first, in a fresh float32 array."""
        out = np.multiply(x, a, dtype=np.float32)
        for w, m in zip(weights, reversed(self.history)):
            self._add(out, m, w)
        return out
