// The solver registry (runtime/solvers/__init__.py): makeSampler(name, schedule, {steps}) → a fresh
// solver with .name, .schedule, .timesteps (descending indices, first = T), .needsNoise(i),
// .step(x, eps, i, z) → x_prev (Float32Array).
import contract from "../contract.json" with { type: "json" };
import { DDIMSampler } from "./ddim.js";
import { DDPMSampler } from "./ddpm.js";

export const SAMPLERS = contract.samplers;
export const DEFAULT_STEPS = contract.default_steps;

const MAKERS = {
  ddpm: (schedule, steps) => {
    if (steps != null && steps !== schedule.T) {
      throw new RangeError(`ddpm runs all ${schedule.T} steps; use the ddim sampler for ${steps}`);
    }
    return new DDPMSampler(schedule);
  },
  ddim: (schedule, steps) => new DDIMSampler(schedule, steps ?? DEFAULT_STEPS.ddim),
};

export function makeSampler(name, schedule, { steps = null } = {}) {
  const make = MAKERS[String(name).toLowerCase()];
  if (!make) throw new RangeError(`unknown sampler ${JSON.stringify(name)}; choose one of ${Object.keys(MAKERS).join(", ")}`);
  return make(schedule, steps);
}

export { DDIMSampler, DDPMSampler };
