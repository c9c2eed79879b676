// Course lesson 4's deterministic denoise_ddim, stride s = T // steps (runtime/solvers: DDIMSampler):
//   x0 = (x_i − √(1 − ᾱ_i) · eps) / √ᾱ_i,   x_{i−s} = √ᾱ_{i−s} · x0 + √(1 − ᾱ_{i−s}) · eps
import { f } from "../f32.js";
import { ddimTimesteps } from "../schedule.js";

export class DDIMSampler {
  constructor(schedule, steps) {
    this.name = "ddim";
    this.schedule = schedule;
    this.timesteps = ddimTimesteps(schedule, steps);
    this.stride = Math.floor(schedule.T / steps);
  }

  needsNoise() { return false; }

  prev(i) { return Math.max(i - this.stride, 0); }

  step(x, eps, i) {
    const ab = this.schedule.alphas_cumprod;
    const abT = ab[i], abPrev = ab[this.prev(i)];
    const sqrtOneMinusT = f(Math.sqrt(f(1 - abT)));
    const ratio = f(f(Math.sqrt(abPrev)) / f(Math.sqrt(abT)));
    const sqrtOneMinusPrev = f(Math.sqrt(f(1 - abPrev)));
    const out = new Float32Array(x.length);
    for (let k = 0; k < x.length; k++) {
      const x0 = f(f(x[k] - f(sqrtOneMinusT * eps[k])) * ratio);
      out[k] = x0 + f(sqrtOneMinusPrev * eps[k]);
    }
    return out;
  }
}
