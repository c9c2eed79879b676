// SDE-DPM-Solver++(2M), midpoint (runtime/solvers/dpmpp_2m_sde.py; Lu et al. 2022, arXiv:2211.01095):
//   order 1: x_t = (σ_t/σ_s0) e^(−h)·x + α_t (1 − e^(−2h))·m0 + σ_t √(1 − e^(−2h))·z
//   order 2: … + α_t (1 − e^(−2h))·(D0 + ½ D1), D0 = m0, D1 = (m0 − m1)/r0
import { MultistepSolver } from "./multistep.js";

/** [a, A, c]: x_t = a·x + A·m0 + c·z, the first-order SDE-DPM-Solver++ step. */
export function sdeFirstOrder(h, alphaT, sigmaT, sigmaS0) {
  const e2 = -Math.expm1(-2 * h);
  return [(sigmaT / sigmaS0) * Math.exp(-h), alphaT * e2, sigmaT * Math.sqrt(e2)];
}

export class DPMSolverPP2MSDE extends MultistepSolver {
  get name() { return "dpmpp-2m-sde"; }
  get order() { return 2; }
  get stochastic() { return true; }

  coefficients(order, h, r, alphaT, sigmaT, sigmaS0) {
    const [a, A, c] = sdeFirstOrder(h, alphaT, sigmaT, sigmaS0);
    if (order === 1) return [a, [A], c];
    const half = 0.5 / r[0];
    return [a, [A * (1 + half), -A * half], c];
  }
}
