// The solver registry (runtime/solvers/__init__.py): makeSampler(name, schedule, {steps, eta, spacing})
// → a fresh solver (multistep solvers keep history) with .name, .schedule, .timesteps (descending
// indices, first = T), .needsNoise(i), .step(x, eps, i, z) → x_prev (Float32Array).
import contract from "../contract.json" with { type: "json" };
import { DDIMSampler } from "./ddim.js";
import { DDPMSampler } from "./ddpm.js";
import { DPMSolverPP2M } from "./dpmpp_2m.js";
import { DPMSolverPP2MSDE } from "./dpmpp_2m_sde.js";
import { DPMSolverPP3MSDE } from "./dpmpp_3m_sde.js";
import { SPACINGS, makeTimesteps } from "./spacing.js";
import { UniPC } from "./unipc.js";

const CLASSES = { "dpmpp-2m": DPMSolverPP2M, "dpmpp-2m-sde": DPMSolverPP2MSDE, "dpmpp-3m-sde": DPMSolverPP3MSDE, unipc: UniPC };
/** The solvers this package has (contract.samplers lists the Python runtime's). */
export const SAMPLERS = ["ddpm", "ddim", ...Object.keys(CLASSES)];
export const DEFAULT_STEPS = { ddim: 25, "dpmpp-2m": 20, "dpmpp-2m-sde": 20, "dpmpp-3m-sde": 20, unipc: 10, ...contract.default_steps };

export function makeSampler(name, schedule, { steps = null, eta = 0, spacing = "uniform" } = {}) {
  const key = String(name).toLowerCase();
  if (!SAMPLERS.includes(key)) throw new RangeError(`unknown sampler ${JSON.stringify(name)}; choose one of ${SAMPLERS.join(", ")}`);
  if (!Number.isFinite(eta) || eta < 0 || eta > 1) throw new RangeError(`eta must be a number from 0 to 1, got ${eta}`);
  if (eta !== 0 && key !== "ddim") throw new RangeError(`eta applies to the ddim sampler only, not ${key}`);
  if (!SPACINGS.includes(String(spacing).toLowerCase())) throw new RangeError(`unknown spacing ${JSON.stringify(spacing)}; choose one of ${SPACINGS.join(", ")}`);
  spacing = String(spacing).toLowerCase();
  if (key === "ddpm") {
    if (spacing !== "uniform") throw new RangeError(`ddpm visits every index; spacing ${JSON.stringify(spacing)} applies to the other samplers`);
    if (steps != null && steps !== schedule.T) throw new RangeError(`ddpm runs all ${schedule.T} steps; use another sampler (ddim, dpmpp-2m-sde, …) for ${steps}`);
    return new DDPMSampler(schedule);
  }
  steps = steps ?? DEFAULT_STEPS[key];
  if (key === "ddim") {
    makeTimesteps(schedule, steps, spacing);
    return new DDIMSampler(schedule, steps, { eta, spacing });
  }
  return new CLASSES[key](schedule, steps, spacing);
}

export { DDIMSampler, DDPMSampler, DPMSolverPP2M, DPMSolverPP2MSDE, DPMSolverPP3MSDE, SPACINGS, UniPC, makeTimesteps };
