// The embedding API end to end in node with a stand-in UNet: parameters resolved like GenerationParams,
// a batch, its sheet PNG (record read back) and atlas, refusals in one line.
import assert from "node:assert/strict";
import { test } from "node:test";

import { SpriteGenerator, batchAtlas, contract, readRecord, resolveParams, sheetPng, specFromMetadata } from "../src/index.js";

function fakeUnet() {
  const unet = async (x, t, c, n) => Float32Array.from(x, (v, k) => 0.5 * v + 0.01 * (k % 7));
  return Object.assign(unet, { spec: specFromMetadata({}), sha256: "cd".repeat(32), path: "fake.onnx",
    backend: "onnxruntime-web", precision: "fp32" });
}

test("resolveParams fills ddpm-run's defaults and refuses bad input in one line", () => {
  const p = resolveParams({ n: 3, sampler: "DDIM" }, 500);
  assert.equal(p.sampler, "ddim");
  assert.equal(p.steps, 25);
  assert.equal(resolveParams({}, 500).sampler, contract.params.sampler);
  assert.equal(p.rng, "philox");
  assert.ok(Number.isInteger(p.seed) && p.seed >= 0 && p.seed < 2 ** 32);
  assert.throws(() => resolveParams({ n: 0 }, 500), /number of sprites must be an integer, at least 1/);
  assert.throws(() => resolveParams({ guidance: -1 }, 500), /guidance must be a finite number from 0 to/);
  assert.equal(resolveParams({ sampler: "dpmpp-2m-sde", context: "food" }, 500).guidance, 2);   // params.default_guidance
  assert.equal(resolveParams({ sampler: "ddim", context: "food" }, 500).guidance, 0);
  assert.equal(resolveParams({ sampler: "unipc", context: "none" }, 500).guidance, 0);
  assert.equal(resolveParams({ sampler: "unipc", context: [0, 0, 0, 0, 0] }, 500).guidance, 0);
  assert.equal(resolveParams({ sampler: "unipc", context: "food", guidance: 0 }, 500).guidance, 0);
  assert.equal(resolveParams({ background: "transparent" }, 500).keying, "v1");
  assert.equal(resolveParams({}, 500).keying, contract.keying.default);
  assert.throws(() => resolveParams({ background: "transparent", keying: "v2" }, 500), /keying v2 is not in the browser yet/);
  assert.throws(() => resolveParams({ rng: "pcg64" }, 500), /philox only/);
  assert.throws(() => resolveParams({ background: "plaid" }, 500), /unknown background colour/);
});

test("a batch becomes a sheet PNG carrying its record, and an atlas", async () => {
  const gen = new SpriteGenerator(fakeUnet());
  const seen = [];
  const batch = await gen.generateBatch({ n: 3, seed: 9, sampler: "dpmpp-2m-sde", steps: 4, context: "food", guidance: 1,
    background: "transparent" }, { progress: (done, total) => { seen.push([done, total]); } });
  assert.deepEqual(seen, [[1, 4], [2, 4], [3, 4], [4, 4]]);
  assert.deepEqual(batch.spriteShape, [3, 16, 16, 4]);
  assert.deepEqual(batch.names, ["food_000", "food_001", "food_002"]);
  const again = await new SpriteGenerator(fakeUnet()).generateBatch(batch.params);
  assert.deepEqual(again.samples, batch.samples);                       // the record's params reproduce it
  const png = await sheetPng(batch, { scale: 2, padding: 1 });
  const record = readRecord(png);
  assert.equal(record.model, "fake.onnx");
  assert.equal(record.background, "transparent");
  assert.equal(record.cols, 2);
  const atlas = batchAtlas(batch, { scale: 2, padding: 1 }, "food.png");
  assert.deepEqual(Object.keys(atlas.frames), ["food/food_000", "food/food_001", "food/food_002"]);
  assert.deepEqual(atlas.meta.size, { w: 67, h: 67 });
  const view = new DataView(png.buffer, png.byteOffset);
  assert.deepEqual([view.getUint32(16), view.getUint32(20), png[25]], [67, 67, 6]);   // RGBA, as the atlas says
  await assert.rejects(gen.generateBatch({ n: 1, context: "dragon" }), /unknown context "dragon"/);
  await assert.rejects(gen.generateBatch({ n: 1, sampler: "euler" }), /unknown sampler "euler"/);
});
