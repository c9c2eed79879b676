// UniPC (runtime/solvers/unipc.py; Zhao et al. 2023, arXiv:2302.04867), bh2, data prediction, as diffusers'
// UniPCMultistepScheduler(solver_type="bh2", predict_x0=True, lower_order_final=True, final_sigmas_type="zero").
// With hh = −h, B(h) = e^(hh) − 1, r_i = (λ_{s_i} − λ_s0)/h, D_i = (m_i − m0)/r_i:
//   UniP-p: x_t = (σ_t/σ_s0)·x − α_t (e^(hh) − 1)·m0 − α_t B(h)·Σ_{i<p} ρ^p_i D_i
//   UniC-p: x_t^c = (σ_t/σ_s0)·x_s0 − α_t (e^(hh) − 1)·m0 − α_t B(h)·(Σ_{i<p} ρ^c_i D_i + ρ^c_p·(m_t − m0))
// ρ solves R ρ = g, R_{ki} = r_i^(k−1) (r_p = 1), g_k = k!·φ_{k+1}(hh)·hh/B(h).
import { f } from "../f32.js";
import { MultistepSolver } from "./multistep.js";

const factorial = (k) => (k <= 1 ? 1 : k * factorial(k - 1));

/** Solve A x = b (small, dense) by Gaussian elimination with partial pivoting (LAPACK gesv's method). */
export function solve(A, b) {
  const n = b.length, M = A.map((row, i) => [...row, b[i]]);
  for (let c = 0; c < n; c++) {
    let piv = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(M[r][c]) > Math.abs(M[piv][c])) piv = r;
    [M[c], M[piv]] = [M[piv], M[c]];
    for (let r = c + 1; r < n; r++) {
      const l = M[r][c] / M[c][c];
      for (let j = c; j <= n; j++) M[r][j] -= l * M[c][j];
    }
  }
  const x = new Array(n);
  for (let r = n - 1; r >= 0; r--) {
    let s = M[r][n];
    for (let j = r + 1; j < n; j++) s -= M[r][j] * x[j];
    x[r] = s / M[r][r];
  }
  return x;
}

function rhos(r, hh, order, predictor) {
  const B = Math.expm1(hh);
  if (predictor && order <= 2) return order === 2 ? [0.5] : [];
  if (!predictor && order === 1) return [0.5];
  const rks = [...r, 1];
  const g = [];
  let hPhiK = Math.expm1(hh) / hh - 1;
  for (let k = 1; k <= order; k++) {
    g.push((hPhiK * factorial(k)) / B);
    hPhiK = hPhiK / hh - 1 / factorial(k + 1);
  }
  const R = Array.from({ length: order }, (_, k) => rks.map((v) => v ** k));
  return predictor ? solve(R.slice(0, -1).map((row) => row.slice(0, -1)), g.slice(0, -1)) : solve(R, g);
}

export class UniPC extends MultistepSolver {
  get name() { return "unipc"; }
  get order() { return 2; }
  get stochastic() { return false; }

  constructor(schedule, steps, spacing = "uniform") {
    super(schedule, steps, spacing);
    this.correctors = [null, ...this.timesteps.slice(1).map((_, j) => this.corrector(j + 1))];
    this.last = null;
  }

  stepOrder(k) { return Math.min(this.order, this.timesteps.length - k, k + 1); }

  terms(k, order) {
    const lam = this.lambda, h = lam[k + 1] - lam[k];
    const r = Array.from({ length: order - 1 }, (_, j) => (lam[k - j - 1] - lam[k]) / h);
    return [h, -h, r, this.alpha[k + 1], this.sigma[k + 1] / this.sigma[k]];
  }

  combine(order, hh, r, alphaT, rho, extra = 0) {
    const B = Math.expm1(hh);
    let sum = 0;
    for (let i = 0; i < order - 1; i++) sum += rho[i] / r[i];
    const weights = [-alphaT * Math.expm1(hh) + alphaT * B * (sum + extra)];
    for (let i = 0; i < order - 1; i++) weights.push((-alphaT * B * rho[i]) / r[i]);
    return weights;
  }

  makePlan(k) {
    const p = f(1 / this.alpha[k]), q = f(-this.sigma[k] / this.alpha[k]);
    if (k === this.timesteps.length - 1) return { p, q, a: null, weights: [1], c: null };
    const order = this.stepOrder(k);
    const [, hh, r, alphaT, a] = this.terms(k, order);
    return { p, q, a: f(a), weights: this.combine(order, hh, r, alphaT, rhos(r, hh, order, true)).map(f), c: null };
  }

  corrector(k) {
    const order = this.stepOrder(k - 1);
    const [, hh, r, alphaT, a] = this.terms(k - 1, order);
    const rho = rhos(r, hh, order, false);
    const B = Math.expm1(hh);
    const weights = this.combine(order, hh, r, alphaT, rho.slice(0, -1), rho[rho.length - 1]);
    return [f(a), f(-alphaT * B * rho[rho.length - 1]), weights.map(f)];
  }

  step(x, eps, i) {
    const k = this.checkStep(i);
    const { p, q, a, weights } = this.plan[k];
    const mNew = new Float32Array(x.length);
    for (let e = 0; e < x.length; e++) mNew[e] = f(x[e] * p) + f(eps[e] * q);
    if (k > 0) {                                              // UniC: correct x_k with the model's x0 at it
      const [aC, wNew, wOld] = this.correctors[k];
      const corrected = new Float32Array(x.length);
      for (let e = 0; e < x.length; e++) corrected[e] = this.last[e] * aC;
      for (let e = 0; e < x.length; e++) corrected[e] = corrected[e] + f(mNew[e] * wNew);
      wOld.forEach((w, j) => {
        const m = this.history[this.history.length - 1 - j];
        for (let e = 0; e < x.length; e++) corrected[e] = corrected[e] + f(m[e] * w);
      });
      x = corrected;
    }
    this.history.push(mNew);
    if (this.history.length > this.order) this.history.shift();
    this.last = x;
    this.k = k + 1;
    if (a === null) return mNew;
    const out = new Float32Array(x.length);
    for (let e = 0; e < x.length; e++) out[e] = x[e] * a;
    weights.forEach((w, j) => {
      const m = this.history[this.history.length - 1 - j];
      for (let e = 0; e < x.length; e++) out[e] = out[e] + f(m[e] * w);
    });
    return out;
  }
}
