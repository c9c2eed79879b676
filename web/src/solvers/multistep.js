// What the DPM-Solver++ family shares (runtime/solvers/multistep.py; Lu et al. 2022, arXiv:2211.01095):
//   α_i = √ᾱ_i, σ_i = √(1 − ᾱ_i), λ_i = log α_i − log σ_i, m0 = x0_s0 = p·x + q·eps
//   x_t = a·x + Σ_j w_j·m_j + c·z
// The plan (p, q, a, w, c) per step is computed in float64 and rounded to float32; steps are float32.
import { f } from "../f32.js";
import { makeTimesteps } from "./spacing.js";

const LOWER_ORDER_BELOW = 15;

export class MultistepSolver {
  /** subclasses set name, order, stochastic and coefficients(order, h, r, alphaT, sigmaT, sigmaS0) → [a, weights, c] */
  constructor(schedule, steps, spacing = "uniform") {
    this.schedule = schedule;
    this.spacing = spacing;
    this.timesteps = makeTimesteps(schedule, steps, spacing);
    const ab = [...this.timesteps, 0].map((i) => schedule.alphas_cumprod[i]);
    this.alpha = ab.map(Math.sqrt);
    this.sigma = ab.map((a) => Math.sqrt(1 - a));
    this.lambda = this.alpha.map((a, k) => Math.log(a) - Math.log(this.sigma[k]));
    this.plan = this.timesteps.map((_, k) => this.makePlan(k));
    this.history = [];
    this.k = 0;
  }

  stepOrder(k) {
    const K = this.timesteps.length;
    if (k === K - 1) return 1;
    const order = Math.min(this.order, k + 1);
    return k === K - 2 && K < LOWER_ORDER_BELOW ? Math.min(order, 2) : order;
  }

  makePlan(k) {
    const p = f(1 / this.alpha[k]), q = f(-this.sigma[k] / this.alpha[k]);
    if (k === this.timesteps.length - 1) return { p, q, a: null, weights: [1], c: null };
    const order = this.stepOrder(k);
    const lam = this.lambda;
    const h = lam[k + 1] - lam[k];
    const r = Array.from({ length: order - 1 }, (_, j) => (lam[k - j] - lam[k - j - 1]) / h);
    const [a, weights, c] = this.coefficients(order, h, r, this.alpha[k + 1], this.sigma[k + 1], this.sigma[k]);
    return { p, q, a: f(a), weights: weights.map(f), c: c ? f(c) : null };
  }

  needsNoise(i) { return this.stochastic && i !== this.timesteps[this.timesteps.length - 1]; }

  checkStep(i) {
    const k = this.k;
    if (k >= this.timesteps.length || this.timesteps[k] !== i) {
      throw new Error(`${this.name} expected step index ${this.timesteps[k] ?? "none (trajectory finished)"}, got ${i}: use a fresh solver per trajectory`);
    }
    return k;
  }

  step(x, eps, i, z = null) {
    const k = this.checkStep(i);
    const { p, q, a, weights, c } = this.plan[k];
    const m0 = new Float32Array(x.length);
    for (let e = 0; e < x.length; e++) m0[e] = f(x[e] * p) + f(eps[e] * q);
    this.history.push(m0);
    if (this.history.length > this.order) this.history.shift();
    this.k = k + 1;
    if (a === null) return m0;
    const out = new Float32Array(x.length);
    for (let e = 0; e < x.length; e++) out[e] = x[e] * a;
    weights.forEach((w, j) => {
      const m = this.history[this.history.length - 1 - j];
      for (let e = 0; e < x.length; e++) out[e] = out[e] + f(m[e] * w);
    });
    if (c !== null) {
      if (!z) throw new Error(`${this.name} step at index ${i} needs noise z`);
      for (let e = 0; e < x.length; e++) out[e] = out[e] + f(z[e] * c);
    }
    return out;
  }
}
