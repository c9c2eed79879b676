// SDE-DPM-Solver++(3M) (runtime/solvers/dpmpp_3m_sde.py): diffusers' sde-dpmsolver++ at solver_order=3.
//   D1_0 = (m0 − m1)/r0, D1_1 = (m1 − m2)/r1, D1 = D1_0 + r0/(r0 + r1)·(D1_0 − D1_1), D2 = (D1_0 − D1_1)/(r0 + r1)
//   x_t = (σ_t/σ_s0) e^(−h)·x + α_t (1 − e^(−2h))·D0 + α_t ((1 − e^(−2h))/(−2h) + 1)·D1
//         + α_t ((1 − e^(−2h) − 2h)/(2h)² − ½)·D2 + σ_t √(1 − e^(−2h))·z
import { DPMSolverPP2MSDE, sdeFirstOrder } from "./dpmpp_2m_sde.js";

export class DPMSolverPP3MSDE extends DPMSolverPP2MSDE {
  get name() { return "dpmpp-3m-sde"; }
  get order() { return 3; }

  coefficients(order, h, r, alphaT, sigmaT, sigmaS0) {
    if (order < 3) return super.coefficients(order, h, r, alphaT, sigmaT, sigmaS0);
    const [a, A, c] = sdeFirstOrder(h, alphaT, sigmaT, sigmaS0);
    const e2 = -Math.expm1(-2 * h);
    const B = alphaT * (e2 / (-2 * h) + 1);
    const C = alphaT * ((e2 - 2 * h) / (2 * h) ** 2 - 0.5);
    const [r0, r1] = r;
    const u = B * (1 + r0 / (r0 + r1)) + C / (r0 + r1);
    const v = (-B * r0) / (r0 + r1) - C / (r0 + r1);
    return [a, [A + u / r0, -u / r0 + v / r1, -v / r1], c];
  }
}
