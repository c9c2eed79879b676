// The sampling loop (runtime/sampling.py): one UNet call eps = unet(x, t, c) per timestep, the step in
// float32 JS. Tensors are flat Float32Arrays in C order: x [N,C,H,W], t [N,1], c [N,n_cfeat].
import { f, rint } from "./f32.js";
import { PhiloxNoise } from "./rng.js";

/** Injected draws: xT (Float32Array) and z (array of Float32Array, z[k] for the k-th timestep). */
export class InjectedNoise {
  constructor(xT, z = []) { this.xT = xT; this.z = z; }
  initial(size) {
    if (this.xT.length !== size) throw new RangeError(`injected x_T has ${this.xT.length} values, expected ${size}`);
    return Float32Array.from(this.xT);
  }
  step(k) {
    if (!this.z[k]) throw new RangeError(`injected noise has no z for timestep number ${k}`);
    return this.z[k];
  }
}

export class Cancelled extends Error {}

/**
 * Run the reverse process from x_T to x_0 and return x_0 (Float32Array [N·C·H·W], unclipped).
 * @param {(x: Float32Array, t: Float32Array, c: Float32Array, n: number) => Promise<Float32Array>} unet
 * @param sampler a solver from solvers/index.js (fresh per trajectory)
 * @param {number[]} shape [N, C, H, W]
 * @param {Float32Array} context [N·n_cfeat]
 * @param noise {initial(size), step(k, size)}
 * @param progress (done, total, x) => false to cancel (may be async)
 */
export async function sample(unet, sampler, shape, context, noise, progress = null) {
  const [n] = shape;
  const size = shape.reduce((a, b) => a * b, 1);
  let x = noise.initial(size);
  const total = sampler.timesteps.length;
  const t = new Float32Array(n);
  for (let k = 0; k < total; k++) {
    const i = sampler.timesteps[k];
    const z = sampler.needsNoise(i) ? noise.step(k, size) : null;
    t.fill(sampler.schedule.tInput(i));
    const eps = await unet(x, t, context, n);
    x = sampler.step(x, eps, i, z);
    if (progress && (await progress(k + 1, total, x)) === false) throw new Cancelled("sampling cancelled");
  }
  return x;
}

/** Classifier-free guidance as a UNet wrapper: eps = (1 + w)·eps(x, t, c) − w·eps(x, t, 0), one call of
 *  2N rows. w = 0 returns `unet` unchanged. */
export function guided(unet, weight) {
  if (!Number.isFinite(weight) || weight < 0) throw new RangeError(`guidance must be a finite number >= 0, got ${weight}`);
  if (weight === 0) return unet;
  const w = f(weight), onePlusW = f(1 + w);
  return async (x, t, c, n) => {
    const x2 = new Float32Array(2 * x.length); x2.set(x); x2.set(x, x.length);
    const t2 = new Float32Array(2 * t.length); t2.set(t); t2.set(t, t.length);
    const c2 = new Float32Array(2 * c.length); c2.set(c);            // second half: zeros (unconditional)
    const eps = await unet(x2, t2, c2, 2 * n);
    const out = new Float32Array(x.length);
    for (let k = 0; k < x.length; k++) out[k] = f(onePlusW * eps[k]) - f(w * eps[k + x.length]);
    return out;
  };
}

/** [N,C,H,W] floats in about [−1, 1] → [N,H,W,C] uint8: clip, rint((x + 1)·127.5). */
export function toUint8(samples, [n, channels, height, width]) {
  const out = new Uint8Array(samples.length);
  const plane = height * width;
  for (let s = 0; s < n; s++) {
    for (let ch = 0; ch < channels; ch++) {
      for (let p = 0; p < plane; p++) {
        const v = Math.min(1, Math.max(-1, samples[(s * channels + ch) * plane + p]));
        out[(s * plane + p) * channels + ch] = rint(f(f(v + 1) * 127.5));
      }
    }
  }
  return out;
}

export function makeNoise(rng, seed) {
  if (rng !== "philox") throw new RangeError(`the browser draws noise with philox only (pcg64 is NumPy's), got ${rng}`);
  return new PhiloxNoise(seed);
}
