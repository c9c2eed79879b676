// The embedding API (runtime/api.py's twin): load a model once, generate sprites many times.
//
//   import * as ort from "onnxruntime-web/wasm";
//   import { SpriteGenerator, sheetPng, batchAtlas } from "ddpm-edge";
//   const gen = await SpriteGenerator.load("unet.onnx", { ort });
//   const batch = await gen.generateBatch({ n: 16, context: "food", seed: 7, sampler: "ddim", steps: 25, guidance: 2 });
//   const png = await sheetPng(batch);             // Uint8Array, carries the ddpm-edge record
//   const atlas = batchAtlas(batch, {}, "food.png");  // Phaser: this.load.atlas("food", "food.png", atlas)
import contract from "./contract.json" with { type: "json" };
import { VERSION, parseContext } from "./contract.js";
import { loadUnet } from "./backends/ort.js";
import { applyBackground, checkTolerance, parseBackground } from "./assets/background.js";
import { spriteNames } from "./assets/outputs.js";
import { Schedule } from "./schedule.js";
import { guided, makeNoise, sample, toUint8 } from "./sampling.js";
import { DEFAULT_STEPS, makeSampler } from "./solvers/index.js";

const MAX_SAMPLES = 1 << 20;
const SEED_BITS = 32;

/** The guidance w when none is given (params.default_guidance): the default class guidance when a class is
 *  asked for and the solver is not one of the course's (ddpm, ddim keep w = 0); 0 when unconditional. */
export function defaultGuidance(sampler, context) {
  if (contract.course_samplers.includes(String(sampler).toLowerCase()) || context == null) return 0;
  if (typeof context === "string") return ["", "none"].includes(context.trim().toLowerCase()) ? 0 : contract.default_class_guidance;
  return Array.from(context).some((v) => Math.fround(v) !== 0) ? contract.default_class_guidance : 0;
}

/** GenerationParams' checks and resolution: every open choice made (seed drawn, default steps, guidance). */
export function resolveParams(given, T) {
  const p = { ...contract.params, rng: contract.web_rng, ...Object.fromEntries(Object.entries(given).filter(([, v]) => v != null)) };
  if (!Number.isInteger(p.n) || p.n < 1 || p.n > MAX_SAMPLES) throw new RangeError(`number of sprites must be an integer, at least 1 and at most ${MAX_SAMPLES}, got ${p.n}`);
  p.sampler = String(p.sampler).toLowerCase();
  if (p.eta != null && (typeof p.eta !== "number" || !Number.isFinite(p.eta))) throw new RangeError(`eta must be a number from 0 to 1, got ${p.eta}`);
  if (p.spacing != null) p.spacing = String(p.spacing).toLowerCase();
  if (p.steps != null && (!Number.isInteger(p.steps) || p.steps < 1)) throw new RangeError(`steps must be a positive integer, got ${p.steps}`);
  if (p.seed != null && !(Number.isSafeInteger(p.seed) && p.seed >= 0)) throw new RangeError(`seed must be a non-negative integer, got ${p.seed}`);
  if (p.guidance != null && (typeof p.guidance !== "number" || !Number.isFinite(p.guidance) || p.guidance < 0 || p.guidance > contract.max_guidance)) {
    throw new RangeError(`guidance must be a finite number from 0 to ${contract.max_guidance}, got ${p.guidance}`);
  }
  p.guidance = p.guidance ?? defaultGuidance(p.sampler, p.context);
  p.background = parseBackground(p.background);
  p.tolerance = checkTolerance(p.tolerance);
  // keying: the browser has v1 (the mask); without a background nothing is keyed and the default is recorded
  if (p.background !== null && given.keying == null) p.keying = "v1";
  if (p.background !== null && !contract.keying.web.includes(p.keying)) {
    throw new RangeError(`background keying ${p.keying} is not in the browser yet; it keys with ${contract.keying.web.join(", ")}`);
  }
  if (p.rng !== "philox") throw new RangeError(`the browser draws noise with philox only, got rng ${JSON.stringify(p.rng)}`);
  p.seed = p.seed ?? globalThis.crypto.getRandomValues(new Uint32Array(1))[0] % 2 ** SEED_BITS;
  p.steps = p.steps ?? DEFAULT_STEPS[p.sampler] ?? T;
  return p;
}

export class SpriteGenerator {
  /** @param unet a backend from backends/ort.js (or any async (x, t, c, n) → eps with .spec, .sha256, .path) */
  constructor(unet) {
    this.unet = unet;
    this.spec = unet.spec;
    this.schedule = new Schedule({ T: this.spec.T, beta1: this.spec.beta1, beta2: this.spec.beta2 });
  }

  /** @param model URL, File/Blob or bytes of an .onnx; options as backends/ort.js loadUnet */
  static async load(model, options) {
    return new SpriteGenerator(await loadUnet(model, options));
  }

  /** Per sprite: its class name (one-hot context), "sprite" (unconditional) or "mix". */
  contextLabels(context, n) {
    const c = parseContext(this.spec, context, n), k = this.spec.n_cfeat, labels = [];
    for (let r = 0; r < n; r++) {
      const row = Array.from(c.subarray(r * k, (r + 1) * k));
      const hot = row.flatMap((v, j) => (v !== 0 ? [j] : []));
      labels.push(hot.length === 0 ? "sprite" : hot.length === 1 && row[hot[0]] === 1 ? this.spec.context_names[hot[0]] : "mix");
    }
    return labels;
  }

  /**
   * Generate `params` ({n, context, seed, sampler, steps, guidance}; rng "philox") and keep what
   * reproduces it: {samples [N·C·H·W], sprites uint8 [N,H,W,C] (C + 1 with the background keyed
   * transparent), spriteShape, names, params (resolved),
   * modelSha256, modelPath, version}.
   * @param progress (done, total, x) => false to cancel (x Float32Array [N,C,H,W]); may be async
   */
  async generateBatch(params = {}, { progress = null } = {}) {
    const p = resolveParams(params, this.spec.T);
    const sampler = makeSampler(p.sampler, this.schedule, { steps: p.steps, eta: p.eta ?? 0, spacing: p.spacing ?? "uniform" });
    const shape = [p.n, this.spec.channels, this.spec.height, this.spec.width];
    const c = parseContext(this.spec, p.context, p.n);
    const samples = await sample(guided(this.unet, p.guidance), sampler, shape, c, makeNoise(p.rng, p.seed), progress);
    const [sprites, spriteShape] = applyBackground(toUint8(samples, shape), [p.n, shape[2], shape[3], shape[1]],
      p.background, p.tolerance);
    return {
      samples, sprites, spriteShape,
      names: spriteNames(this.contextLabels(p.context, p.n)), params: p,
      modelSha256: this.unet.sha256, modelPath: this.unet.path, version: VERSION,
      backend: this.unet.backend ?? "onnxruntime-web", precision: this.unet.precision ?? "fp32",
    };
  }
}
