// DDIM (runtime/solvers/ddim.py; Song et al. 2021, arXiv:2010.02502), the course's lesson-4 denoise_ddim
// at η = 0, with η > 0 adding fresh noise per step (eq. 12, σ_t of eq. 16):
//   x0 = (x_i − √(1 − ᾱ_i)·eps) / √ᾱ_i,   x_prev = √ᾱ_prev·x0 + √(1 − ᾱ_prev − σ_i²)·eps + σ_i·z
// η = 0 keeps the course's float32 expression; η > 0 uses float64 coefficients: x_prev = a·x + b·eps + σ·z.
import { f } from "../f32.js";
import { makeTimesteps } from "./spacing.js";

export class DDIMSampler {
  constructor(schedule, steps, { eta = 0, spacing = "uniform" } = {}) {
    this.name = "ddim";
    this.schedule = schedule;
    this.timesteps = makeTimesteps(schedule, steps, spacing);
    this.stride = Math.floor(schedule.T / steps);
    this.spacing = spacing;
    this.eta = eta;
    this.prevOf = new Map(this.timesteps.map((i, k) => [i, this.timesteps[k + 1] ?? 0]));
    this.coef = new Map();
    if (eta > 0) {
      const ab = schedule.alphas_cumprod;
      for (const [i, p] of this.prevOf) {
        const sigma = eta * Math.sqrt((1 - ab[p]) / (1 - ab[i])) * Math.sqrt(1 - ab[i] / ab[p]);
        const direction = Math.sqrt(Math.max(1 - ab[p] - sigma ** 2, 0));
        const a = Math.sqrt(ab[p]) / Math.sqrt(ab[i]);
        this.coef.set(i, [f(a), f(direction - a * Math.sqrt(1 - ab[i])), f(sigma)]);
      }
    }
  }

  needsNoise(i) { return this.eta > 0 && this.prev(i) > 0; }

  prev(i) { return this.spacing === "uniform" ? Math.max(i - this.stride, 0) : this.prevOf.get(i); }

  step(x, eps, i, z = null) {
    const out = new Float32Array(x.length);
    if (this.eta === 0) {                       // the course's expression
      const ab = this.schedule.alphas_cumprod;
      const abT = ab[i], abPrev = ab[this.prev(i)];
      const s1 = f(Math.sqrt(f(1 - abT))), ratio = f(f(Math.sqrt(abPrev)) / f(Math.sqrt(abT)));
      const s2 = f(Math.sqrt(f(1 - abPrev)));
      for (let k = 0; k < x.length; k++) out[k] = f(f(x[k] - f(s1 * eps[k])) * ratio) + f(s2 * eps[k]);
      return out;
    }
    const [a, b, sigma] = this.coef.get(i);
    const noisy = this.needsNoise(i);
    if (noisy && !z) throw new Error(`DDIM step ${i} with eta ${this.eta} needs noise z`);
    for (let k = 0; k < x.length; k++) {
      const v = f(f(x[k] * a) + f(eps[k] * b));
      out[k] = noisy ? v + f(z[k] * sigma) : v;
    }
    return out;
  }
}
