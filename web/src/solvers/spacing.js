// Which schedule indices a solver visits (runtime/solvers/spacing.py): `steps` integers in 1 … T,
// descending, the first = T.
//   uniform  the course's DDIM stride s = T // steps
//   logsnr   uniform in half log-SNR λ_i = log(√ᾱ_i / √(1 − ᾱ_i)) from λ_T to λ_1 (Lu et al. 2022, §3.3)
//   karras   σ_k = (σ_max^(1/ρ) + k/(steps−1) · (σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, ρ = 7 (Karras et al. 2022, eq. 5)
// logsnr and karras interpolate linearly (in λ, or in log σ) and round to the nearest index, once each.
import { rint } from "../f32.js";
import { ddimTimesteps } from "../schedule.js";

export const SPACINGS = ["uniform", "logsnr", "karras"];
const KARRAS_RHO = 7;

/** NumPy's linspace(start, stop, num): i·step + start, the last exactly stop. */
export function linspace(start, stop, num) {
  if (num === 1) return [start];
  const step = (stop - start) / (num - 1);
  return Array.from({ length: num }, (_, i) => (i === num - 1 ? stop : i * step + start));
}

/** NumPy's interp(x, xp, fp) for ascending xp. */
export function interp(x, xp, fp) {
  const n = xp.length;
  if (x >= xp[n - 1]) return fp[n - 1];
  if (x < xp[0]) return fp[0];
  let lo = 0, hi = n - 1;                                   // xp[lo] <= x < xp[hi]
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (xp[mid] <= x) lo = mid; else hi = mid;
  }
  if (x === xp[lo]) return fp[lo];
  const slope = (fp[lo + 1] - fp[lo]) / (xp[lo + 1] - xp[lo]);
  return slope * (x - xp[lo]) + fp[lo];
}

function check(schedule, steps) {
  if (!Number.isInteger(steps) || steps < 1) throw new RangeError(`steps must be a positive integer, got ${steps}`);
  if (steps > schedule.T) throw new RangeError(`steps must be at most T=${schedule.T}, got ${steps}`);
}

function toIndices(positions) {
  return [...new Set(positions.map(rint))].sort((a, b) => b - a);
}

/** values over indices 1 … T (strictly monotone); targets → fractional indices. */
function indexOf(values, targets) {
  let index = values.map((_, k) => k + 1);
  if (values[0] > values[values.length - 1]) { values = values.slice().reverse(); index = index.reverse(); }
  return targets.map((t) => interp(t, values, index));
}

function logsnr(schedule, steps) {
  const ab = Array.from(schedule.alphas_cumprod.subarray(1));
  const lam = ab.map((a) => 0.5 * (Math.log(a) - Math.log1p(-a)));
  return toIndices(indexOf(lam, linspace(lam[lam.length - 1], lam[0], steps)));
}

function karras(schedule, steps, rho = KARRAS_RHO) {
  const ab = Array.from(schedule.alphas_cumprod.subarray(1));
  const sigma = ab.map((a) => Math.sqrt((1 - a) / a));
  const hi = sigma[sigma.length - 1] ** (1 / rho), lo = sigma[0] ** (1 / rho);
  const targets = linspace(0, 1, steps).map((r) => (hi + r * (lo - hi)) ** rho);
  return toIndices(indexOf(sigma.map(Math.log), targets.map(Math.log)));
}

export function makeTimesteps(schedule, steps, spacing = "uniform") {
  const name = String(spacing).toLowerCase();
  if (!SPACINGS.includes(name)) throw new RangeError(`unknown spacing ${JSON.stringify(spacing)}; choose one of ${SPACINGS.join(", ")}`);
  check(schedule, steps);
  return { uniform: ddimTimesteps, logsnr, karras }[name](schedule, steps);
}
