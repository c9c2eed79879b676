// DPM-Solver++(2M) (runtime/solvers/dpmpp_2m.py; Lu et al. 2022, arXiv:2211.01095, Alg. 2), deterministic:
//   order 1: x_t = (σ_t/σ_s0)·x − α_t (e^(−h) − 1)·m0
//   order 2: x_t = (σ_t/σ_s0)·x − α_t (e^(−h) − 1)·((1 + 1/(2 r0))·m0 − 1/(2 r0)·m1)
import { MultistepSolver } from "./multistep.js";

export class DPMSolverPP2M extends MultistepSolver {
  get name() { return "dpmpp-2m"; }
  get order() { return 2; }
  get stochastic() { return false; }

  coefficients(order, h, r, alphaT, sigmaT, sigmaS0) {
    const a = sigmaT / sigmaS0, A = -alphaT * Math.expm1(-h);
    if (order === 1) return [a, [A], 0];
    const half = 0.5 / r[0];
    return [a, [A * (1 + half), -A * half], 0];
  }
}
