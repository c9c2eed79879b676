// The JS runtime against values the NumPy runtime wrote (web/scripts/generate.py → test/golden.json).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

import { PhiloxNoise, philox4x32, philoxNormal, uniform } from "../src/rng.js";
import { guided, sample, toUint8 } from "../src/sampling.js";
import { Schedule, ddimTimesteps } from "../src/schedule.js";
import { makeSampler, makeTimesteps } from "../src/solvers/index.js";
import { f } from "../src/f32.js";

const golden = JSON.parse(readFileSync(new URL("./golden.json", import.meta.url)));
const F32_EPS = 2 ** -23;

/** |a − b| ≤ ulps float32 ulps of b, element-wise. */
function closeUlps(actual, expected, ulps, what) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let k = 0; k < expected.length; k++) {
    const tol = ulps * F32_EPS * Math.max(Math.abs(expected[k]), 1);
    assert.ok(Math.abs(actual[k] - expected[k]) <= tol, `${what}[${k}]: ${actual[k]} vs ${expected[k]}`);
  }
}

test("philox words and uniforms are bit-exact", () => {
  const counters = [[0, 0, 0, 0], [5, 0, 1, 0], [1, 2, 3, 4]];
  counters.forEach((c, k) => assert.deepEqual(philox4x32(c, [7, 0]), golden.philox.words[k]));
  assert.deepEqual([0, 255, 256, 0xffffffff, 0x80000000].map(uniform), golden.philox.uniforms);
});

test("philox normals agree with NumPy to one float32 ulp", () => {
  for (const { seed, stream, count, z } of golden.philox.normals) {
    const big = seed > Number.MAX_SAFE_INTEGER ? BigInt(seed) : seed;
    closeUlps(philoxNormal(big, stream, count), z, 1, `normals seed ${seed}`);
  }
});

test("schedule is NumPy's, bit for bit", () => {
  const s = new Schedule();
  for (const name of ["betas", "alphas", "alphas_cumprod"]) assert.deepEqual(Array.from(s[name]), golden.schedule[name], name);
  for (const [steps, ts] of Object.entries(golden.schedule.ddim_timesteps)) assert.deepEqual(ddimTimesteps(s, Number(steps)), ts);
});

test("timestep spacings equal Python's", () => {
  const s = new Schedule();
  for (const [spacing, bySteps] of Object.entries(golden.schedule.timesteps)) {
    for (const [steps, ts] of Object.entries(bySteps)) assert.deepEqual(makeTimesteps(s, Number(steps), spacing), ts, `${spacing} ${steps}`);
  }
});

test("solver steps reproduce the NumPy steps bit for bit", () => {
  const s = new Schedule();
  for (const g of golden.steps) {
    const sampler = makeSampler(g.sampler, s, { steps: g.steps });
    const out = sampler.step(Float32Array.from(g.x), Float32Array.from(g.eps), g.i, g.z && Float32Array.from(g.z));
    assert.deepEqual(Array.from(out), g.out, `${g.sampler} ${g.steps} step i=${g.i}`);
  }
});

/** The fake UNet of generate.py: eps = 0.5·x + 0.25·t + 0.125·Σc, in float32. */
async function fakeUnet(x, t, c, n) {
  const per = x.length / n, k = c.length / n, out = new Float32Array(x.length);
  for (let r = 0; r < n; r++) {
    let sum = 0;
    for (let j = 0; j < k; j++) sum = f(sum + c[r * k + j]);
    const bias = f(f(t[r] * 0.25) + f(sum * 0.125));
    for (let p = 0; p < per; p++) out[r * per + p] = f(x[r * per + p] * 0.5) + bias;
  }
  return out;
}

test("classifier-free guidance combines like NumPy", async () => {
  const g = golden.guidance, n = golden.shape[0];
  const eps = await guided(fakeUnet, g.w)(Float32Array.from(g.x), new Float32Array(n).fill(g.t), Float32Array.from(g.c), n);
  assert.deepEqual(Array.from(eps), g.eps);
});

test("toUint8 rounds half to even and clips like NumPy", () => {
  assert.deepEqual(Array.from(toUint8(Float32Array.from(golden.to_uint8.x), [1, 1, 1, golden.to_uint8.x.length])),
    golden.to_uint8.out);
});

test("whole loops (philox noise, guidance, solver) follow NumPy", async () => {
  const s = new Schedule();
  for (const g of golden.loops) {
    const sampler = makeSampler(g.sampler, s, { steps: g.steps, ...g.options });
    const out = await sample(guided(fakeUnet, g.guidance), sampler, golden.shape, Float32Array.from(g.c), new PhiloxNoise(g.seed));
    closeUlps(out, g.out, 16, `${g.sampler} ${g.steps} ${JSON.stringify(g.options)} loop w=${g.guidance}`);
  }
});
