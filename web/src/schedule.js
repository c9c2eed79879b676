// The DDPM noise schedule of the course (runtime/schedule.py), in float64 then stored as float32:
//   betas[i] = linspace(beta1, beta2, T + 1)[i], alphas = 1 − betas, alphas_cumprod = cumprod(alphas),
//   alphas_cumprod[0] = 1.
import contract from "./contract.json" with { type: "json" };

const D = contract.schedule;

export class Schedule {
  /** @param {{T?: number, beta1?: number, beta2?: number}} [options] */
  constructor({ T = D.T, beta1 = D.beta1, beta2 = D.beta2 } = {}) {
    if (!Number.isInteger(T) || T < 1) throw new RangeError(`schedule T must be a positive integer, got ${T}`);
    if (!(beta1 > 0 && beta1 <= beta2 && beta2 < 1)) {
      throw new RangeError(`schedule needs 0 < beta1 <= beta2 < 1, got ${beta1}, ${beta2}`);
    }
    Object.assign(this, { T, beta1, beta2 });
    const step = (beta2 - beta1) / T;               // NumPy's linspace: i·step + start, last = stop
    this.betas = new Float32Array(T + 1);
    this.alphas = new Float32Array(T + 1);
    this.alphas_cumprod = new Float32Array(T + 1);
    let cumprod = 1;
    for (let i = 0; i <= T; i++) {
      const beta = i === T ? beta2 : i * step + beta1;
      cumprod *= 1 - beta;
      this.betas[i] = beta;
      this.alphas[i] = 1 - beta;
      this.alphas_cumprod[i] = i === 0 ? 1 : cumprod;
    }
  }

  /** The UNet's time input for step index i: t = i / T. */
  tInput(i) { return i / this.T; }
}

/** DDPM visits every index: T, T−1, …, 1. */
export function ddpmTimesteps(schedule) {
  return Array.from({ length: schedule.T }, (_, k) => schedule.T - k);
}

/** Course lesson 4: stride s = T // steps, indices T, T−s, …, down to the last one above 0. */
export function ddimTimesteps(schedule, steps) {
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`steps must be a positive integer, got ${steps}`);
  if (steps > schedule.T) throw new RangeError(`steps must be at most T=${schedule.T}, got ${steps}`);
  const stride = Math.floor(schedule.T / steps);
  const out = [];
  for (let i = schedule.T; i > 0; i -= stride) out.push(i);
  return out;
}
