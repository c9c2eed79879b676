// What a generated batch becomes for game engines (runtime/assets/outputs.py): per-sprite names, the
// sheet PNG with its generation record, and the TexturePacker "JSON (hash)" atlas.
import contract from "../contract.json" with { type: "json" };
import { gridShape, makeSheet, sheetGeometry } from "./images.js";
import { sheetFill } from "./background.js";
import { encodePng } from "./png.js";

export const DEFAULT_LAYOUT = contract.layout;   // {cols, scale, padding}

/** Per-sprite names: label and index, e.g. food_003. */
export function spriteNames(labels) {
  const width = Math.max(3, String(labels.length - 1).length);
  return labels.map((label, k) => {
    const clean = label.replace(/[^A-Za-z0-9_-]+/g, "-").replace(/^-+|-+$/g, "") || "sprite";
    return `${clean}_${String(k).padStart(width, "0")}`;
  });
}

/** The layout with the column count it gets for n sprites (SheetLayout.fixed). */
export function fixedLayout(layout, n) {
  const l = { ...DEFAULT_LAYOUT, ...layout };
  for (const [name, low, high] of [["scale", 1, 64], ["padding", 0, 1024]]) {
    if (!Number.isInteger(l[name]) || l[name] < low || l[name] > high) {
      throw new RangeError(`sheet ${name} must be an integer from ${low} to ${high}, got ${l[name]}`);
    }
  }
  if (l.cols != null && (!Number.isInteger(l.cols) || l.cols < 1)) throw new RangeError(`sheet cols must be a positive integer, got ${l.cols}`);
  return { cols: gridShape(n, l.cols)[1], scale: l.scale, padding: l.padding };
}

// Atlases (runtime/assets/atlas.py): TexturePacker "JSON (hash)" (Phaser load.atlas, PixiJS Assets.load)
// and "JSON (array)" (melonJS, Phaser); frames named `<sheet stem>/<sprite name>`, never trimmed or rotated.
export const ATLAS_FORMATS = ["hash", "array"];
const APP = "ddpm-edge (texturepacker-compatible json)";

function atlasFrames(names, [height, width], layout) {
  const [size, cells] = sheetGeometry(names.length, height, width, layout.cols, layout.scale, layout.padding);
  return [size, names.map((name, k) => {
    const [x, y, w, h] = cells[k];
    return [name, { frame: { x, y, w, h }, rotated: false, trimmed: false, spriteSourceSize: { x: 0, y: 0, w, h },
      sourceSize: { w, h }, pivot: { x: 0.5, y: 0.5 } }];
  })];
}

function atlasMeta(imageName, [w, h], channels, appVersion) {
  return { app: APP, version: appVersion || "1.0", image: imageName, format: channels === 4 ? "RGBA8888" : "RGB888",
    size: { w, h }, scale: "1" };
}

/** TexturePacker "JSON (hash)": {frames: {name: frame}, meta}; names used as given. */
export function atlasDict(names, spriteSize, layout, imageName, channels = 4, appVersion = "") {
  const [size, frames] = atlasFrames(names, spriteSize, layout);
  return { frames: Object.fromEntries(frames), meta: atlasMeta(imageName, size, channels, appVersion) };
}

/** TexturePacker "JSON (array)": {frames: [{filename, ...frame}], meta}. */
export function atlasArray(names, spriteSize, layout, imageName, channels = 4, appVersion = "") {
  const [size, frames] = atlasFrames(names, spriteSize, layout);
  return { frames: frames.map(([filename, frame]) => ({ filename, ...frame })), meta: atlasMeta(imageName, size, channels, appVersion) };
}

/** Atlas frame names for a sheet: `food/food_003`. */
export function frameNames(sheetStem, names) {
  return names.map((name) => `${sheetStem}/${name}`);
}

const FLOAT_FIELDS = new Set(["guidance", "eta"]);

/** A JS number as Python's json.dumps writes it (floats keep ".0"; exponents as 1e-05). */
function pyNumber(value, isFloat) {
  if (!isFloat || !Number.isFinite(value)) return JSON.stringify(value);
  if (Number.isInteger(value) && Math.abs(value) < 1e16) return `${value}.0`;
  const text = String(value);
  if (Math.abs(value) < 1e-4) {
    const [mant, exp] = value.toExponential().split("e");
    return `${mant}e${exp[0]}${exp.slice(1).padStart(2, "0")}`;
  }
  return text;
}

/** Python's json.dumps(value, sort_keys=True, separators=(",", ":")) (ASCII-escaped), for records. */
export function pyJson(value, key = null) {
  if (value === null || value === undefined) return "null";
  if (typeof value === "number") return pyNumber(value, FLOAT_FIELDS.has(key));
  if (typeof value === "string") return JSON.stringify(value).replace(/[\u0080-\uffff]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`);
  if (Array.isArray(value)) return `[${value.map((v) => pyJson(v, key === "context" ? "guidance" : null)).join(",")}]`;
  if (typeof value === "object") {
    return `{${Object.keys(value).sort().map((k) => `${pyJson(k)}:${pyJson(value[k], k)}`).join(",")}}`;
  }
  return JSON.stringify(value);
}

/** The record every PNG of a batch carries (Batch.record): every parameter, the fixed layout, model,
 *  version, backend and precision. */
export function batchRecord(batch, layout) {
  return { format: contract.record.format, ...batch.params, ...fixedLayout(layout, batch.params.n),
    model: batch.modelPath, model_sha256: batch.modelSha256, version: batch.version,
    backend: batch.backend, precision: batch.precision };
}

/** The sheet PNG (Uint8Array) of a batch, with its `ddpm-edge` record. */
export async function sheetPng(batch, layout = {}) {
  const l = fixedLayout(layout, batch.params.n);
  const [n, h, w, c] = batch.spriteShape;
  const sheet = makeSheet(batch.sprites, batch.spriteShape, { ...l, fill: sheetFill(batch.params.background, c) });
  const record = batchRecord(batch, l);
  const { format, ...rest } = record;
  return encodePng(sheet, { [contract.record.chunk_key]: pyJson({ format, ...rest }) });
}

/** The atlas object of a batch's sheet, "hash" or "array" (write it as JSON beside `imageName`); frames
 *  are named `<imageName's stem>/<sprite name>` as ddpm-run names them. */
export function batchAtlas(batch, layout = {}, imageName = "sprites.png", format = "hash") {
  if (!ATLAS_FORMATS.includes(format)) throw new RangeError(`unknown atlas format ${JSON.stringify(format)}; choose one of ${ATLAS_FORMATS.join(", ")}`);
  const [, h, w, c] = batch.spriteShape;
  const stem = imageName.split("/").pop().replace(/\.[^.]*$/, "");
  const build = format === "hash" ? atlasDict : atlasArray;
  return build(frameNames(stem, batch.names), [h, w], fixedLayout(layout, batch.params.n), imageName, c, batch.version);
}
