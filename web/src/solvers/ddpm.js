// The course's denoise_add_noise (runtime/solvers: DDPMSampler):
//   x_{i-1} = (x_i − eps · (1 − α_i) / √(1 − ᾱ_i)) / √α_i + √β_i · z,   z = 0 at i = 1
import { f } from "../f32.js";
import { ddpmTimesteps } from "../schedule.js";

export class DDPMSampler {
  constructor(schedule) {
    this.name = "ddpm";
    this.schedule = schedule;
    this.timesteps = ddpmTimesteps(schedule);
  }

  needsNoise(i) { return i > 1; }

  /** x, eps, z: Float32Array [N·C·H·W] → x_{i−1} (new array). */
  step(x, eps, i, z = null) {
    const s = this.schedule;
    const epsCoef = f(f(1 - s.alphas[i]) / f(Math.sqrt(f(1 - s.alphas_cumprod[i]))));
    const sqrtA = f(Math.sqrt(s.alphas[i]));
    const noisy = this.needsNoise(i);
    if (noisy && !z) throw new Error(`DDPM step ${i} needs noise z`);
    const sqrtB = f(Math.sqrt(s.betas[i]));
    const out = new Float32Array(x.length);
    for (let k = 0; k < x.length; k++) {
      const mean = f(f(x[k] - f(eps[k] * epsCoef)) / sqrtA);
      out[k] = noisy ? mean + f(sqrtB * z[k]) : mean;
    }
    return out;
  }
}
