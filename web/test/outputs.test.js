// Sheets, atlases, records and the contract helpers against what the Python runtime writes.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { inflateSync } from "node:zlib";
import { test } from "node:test";

import { atlasArray, atlasDict, frameNames, pyJson, spriteNames, fixedLayout } from "../src/assets/outputs.js";
import { makeSheet, sheetGeometry } from "../src/assets/images.js";
import { crc32, encodePng } from "../src/assets/png.js";
import { contract, parseContext, specFromMetadata } from "../src/contract.js";
import { readOnnxMetadata } from "../src/backends/onnx.js";

const golden = JSON.parse(readFileSync(new URL("./golden.json", import.meta.url)));

test("sprite names and atlas equal Python's", () => {
  const g = golden.atlas;
  assert.deepEqual(spriteNames(["food", "food", "food", "food", "sprite", "mix"]), g.names);
  assert.deepEqual(atlasDict(frameNames("food", g.names), g.size, g.layout, "food.png", 3, contract.version), g.atlas);
  assert.deepEqual(atlasArray(g.names, g.size, g.layout, "food.png", 4, contract.version), g.array);
});

test("layout defaults, fixed columns and refusals", () => {
  assert.deepEqual(fixedLayout({}, 16), { cols: 4, scale: 4, padding: 0 });
  assert.deepEqual(fixedLayout({ cols: 5 }, 3), { cols: 3, scale: 4, padding: 0 });
  assert.throws(() => fixedLayout({ scale: 0 }, 4), /scale must be an integer from 1 to 64/);
});

test("records serialise like Python's json.dumps(sort_keys=True, separators=(',', ':'))", () => {
  assert.equal(pyJson({ seed: 7, guidance: 2, context: "café", b: null, a: [1, 0.5] }),
    '{"a":[1,0.5],"b":null,"context":"caf\\u00e9","guidance":2.0,"seed":7}');
  assert.equal(pyJson({ guidance: 0.00001 }), '{"guidance":1e-05}');
  assert.equal(pyJson({ context: [1, 0, 0.5] }), '{"context":[1.0,0.0,0.5]}');
});

test("sheet geometry and nearest-neighbour pasting", () => {
  assert.deepEqual(sheetGeometry(3, 2, 2, 2, 2, 1), [[11, 11], [[1, 1, 4, 4], [6, 1, 4, 4], [1, 6, 4, 4]]]);
  const sprites = Uint8Array.from({ length: 2 * 1 * 1 * 3 }, (_, k) => 10 * (k + 1));   // 2 sprites of 1×1 RGB
  const sheet = makeSheet(sprites, [2, 1, 1, 3], { scale: 2, padding: 0, fill: new Uint8Array(3) });
  assert.equal(sheet.width, 4);
  assert.deepEqual(Array.from(sheet.pixels.subarray(0, 12)), [10, 20, 30, 10, 20, 30, 40, 50, 60, 40, 50, 60]);
});

test("PNG: chunks, CRCs, iTXt record and zlib pixels", async () => {
  const pixels = Uint8Array.from({ length: 2 * 3 * 3 }, (_, k) => k * 7);
  const png = await encodePng({ width: 3, height: 2, channels: 3, pixels }, { "ddpm-edge": '{"seed":1}' });
  assert.deepEqual(Array.from(png.subarray(0, 8)), [137, 80, 78, 71, 13, 10, 26, 10]);
  const view = new DataView(png.buffer, png.byteOffset);
  const chunks = {};
  for (let at = 8; at < png.length;) {
    const len = view.getUint32(at), type = new TextDecoder().decode(png.subarray(at + 4, at + 8));
    const data = png.subarray(at + 8, at + 8 + len);
    assert.equal(view.getUint32(at + 8 + len), (crc32(png.subarray(at + 4, at + 8 + len)) ^ 0xffffffff) >>> 0, `${type} CRC`);
    chunks[type] = data;
    at += 12 + len;
  }
  assert.deepEqual(Object.keys(chunks), ["IHDR", "iTXt", "IDAT", "IEND"]);
  assert.deepEqual(Array.from(chunks.IHDR), [0, 0, 0, 3, 0, 0, 0, 2, 8, 2, 0, 0, 0]);
  assert.equal(new TextDecoder().decode(chunks.iTXt), 'ddpm-edge\0\0\0\0\0{"seed":1}');
  const raw = inflateSync(chunks.IDAT);
  assert.deepEqual(Array.from(raw), [0, ...pixels.subarray(0, 9), 0, ...pixels.subarray(9)]);
});

test("contract: metadata, context parsing and refusals", () => {
  const spec = specFromMetadata({ n_cfeat: "3", context_names: '["a", "b", "c"]', T: "100" });
  assert.equal(spec.T, 100);
  assert.deepEqual(Array.from(parseContext(spec, "B", 2)), [0, 1, 0, 0, 1, 0]);
  assert.deepEqual(Array.from(parseContext(spec, "1,0,0.5", 1)), [1, 0, 0.5]);
  assert.deepEqual(Array.from(parseContext(spec, null, 1)), [0, 0, 0]);
  assert.throws(() => parseContext(spec, "dragon", 1), /unknown context "dragon"; this model knows: a, b, c/);
  assert.throws(() => parseContext(spec, "1,0", 1), /context must have 3 values/);
  assert.throws(() => parseContext(spec, "random", 1), /random/);
  assert.deepEqual(specFromMetadata({ n_cfeat: "2" }).context_names, ["class0", "class1"]);
});

test("ONNX metadata is read from the shipped model", () => {
  const meta = readOnnxMetadata(new Uint8Array(readFileSync(new URL("../../weights/unet.onnx", import.meta.url))));
  assert.equal(meta.format, "ddpm-edge/1");
  assert.equal(JSON.parse(meta.context_names).length, Number(meta.n_cfeat));
  assert.throws(() => readOnnxMetadata(new Uint8Array([0x0a, 0x50, 1])), /not an ONNX model/);
});

test("the sheet's record is byte for byte the iTXt payload ddpm-run writes, and reads back", async () => {
  const { batchRecord } = await import("../src/assets/outputs.js");
  const { readRecord, paramsFromRecord } = await import("../src/assets/records.js");
  const { resolveParams } = await import("../src/api.js");
  const g = golden.record;
  const params = resolveParams(g.params, 500);
  assert.deepEqual(params, g.params);
  const batch = { params, modelPath: "unet.onnx", modelSha256: "ab".repeat(32), version: contract.version,
    backend: "onnxruntime-web", precision: "fp32" };
  const record = batchRecord(batch, g.layout);
  const text = pyJson(record);
  const payload = [...new TextEncoder().encode("ddpm-edge"), 0, 0, 0, 0, 0, ...new TextEncoder().encode(text)];
  assert.deepEqual(payload, g.itxt);
  const png = await encodePng({ width: 1, height: 1, channels: 3, pixels: new Uint8Array(3) }, { "ddpm-edge": text });
  const back = readRecord(png);
  assert.deepEqual(back, JSON.parse(text));
  assert.deepEqual(paramsFromRecord(back).params, g.params);
  assert.throws(() => paramsFromRecord({ ...back, rng: "pcg64" }, "old.png"), /old.png was made with pcg64 noise/);
  assert.throws(() => readRecord(new Uint8Array([1, 2, 3]), "x.png"), /x.png is not a PNG/);
  const plain = await encodePng({ width: 1, height: 1, channels: 3, pixels: new Uint8Array(3) });
  assert.throws(() => readRecord(plain, "p.png"), /p.png carries no ddpm-edge generation parameters/);
});

test("background keying equals NumPy's mask for the same sprites", async () => {
  const { backgroundMask, applyBackground, parseBackground, sheetFill } = await import("../src/assets/background.js");
  const g = golden.background;
  const sprites = new Uint8Array(Buffer.from(g.sprites, "base64"));
  const [n, h, w] = g.shape;
  for (const [tol, masks] of Object.entries(g.masks)) {
    const mask = backgroundMask(sprites, g.shape, Number(tol));
    for (let s = 0; s < n; s++) {
      assert.equal(Array.from(mask.subarray(s * h * w, (s + 1) * h * w)).join(""), masks[s], `sprite ${s} tolerance ${tol}`);
    }
  }
  const few = sprites.subarray(0, 3 * h * w * 3);
  assert.deepEqual(Buffer.from(applyBackground(few, [3, h, w, 3], "transparent")[0]), Buffer.from(g.transparent, "base64"));
  assert.deepEqual(Buffer.from(applyBackground(few, [3, h, w, 3], "WHITE", 20)[0]), Buffer.from(g.white, "base64"));
  assert.equal(parseBackground("#ABC"), "#aabbcc");
  assert.equal(parseBackground("keep"), null);
  assert.throws(() => parseBackground("plaid"), /unknown background colour "plaid"/);
  assert.deepEqual(Array.from(sheetFill("#102030", 3)), [16, 32, 48]);
  assert.deepEqual(Array.from(sheetFill("transparent", 4)), [0, 0, 0, 0]);
});
