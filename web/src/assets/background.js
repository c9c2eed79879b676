// Background keying (runtime/assets/background.py): the model draws each sprite on a plain background;
// find it and key it out. Per sprite the background colour is the border's dominant colour (the border
// pixel with the most border pixels within `tolerance` of it, median over those); background is what
// connects to the border through pixels within `tolerance` of it (4-connected flood fill), plus opaque
// specks with no opaque 8-neighbour; a sprite whose border is under MIN_BORDER_SHARE near that colour keeps
// everything. Integer arithmetic throughout, so the mask equals NumPy's for the same uint8 sprites.
import { rint } from "../f32.js";

export const TRANSPARENT = "transparent";
export const DEFAULT_TOLERANCE = 32;
const MIN_BORDER_SHARE = 0.25;
const NAMED = { white: "#ffffff", black: "#000000", red: "#ff0000", lime: "#00ff00", blue: "#0000ff",
  gray: "#808080", grey: "#808080", magenta: "#ff00ff", fuchsia: "#ff00ff", cyan: "#00ffff", aqua: "#00ffff",
  yellow: "#ffff00", green: "#008000" };

/** null / "keep" / "none" → null (sprites as drawn); "transparent"; #RGB, #RRGGBB or a basic colour name → "#rrggbb". */
export function parseBackground(text) {
  if (text == null || ["", "keep", "none"].includes(String(text).trim().toLowerCase())) return null;
  const t = String(text).trim().toLowerCase();
  if (t === TRANSPARENT) return TRANSPARENT;
  const hex = NAMED[t] ?? t;
  if (/^#[0-9a-f]{6}$/.test(hex)) return hex;
  if (/^#[0-9a-f]{3}$/.test(hex)) return `#${[...hex.slice(1)].map((c) => c + c).join("")}`;
  throw new RangeError(`unknown background colour ${JSON.stringify(t)}: use #RRGGBB, a basic colour name (white), transparent, or keep`);
}

export function checkTolerance(tolerance) {
  if (!Number.isInteger(tolerance) || tolerance < 0 || tolerance > 255) {
    throw new RangeError(`background tolerance must be an integer from 0 to 255, got ${tolerance}`);
  }
  return tolerance;
}

/** Border pixel offsets (pixel indices) in background.py's order: top row, bottom row, left and right columns. */
function borderIndices(h, w) {
  const out = [];
  for (let x = 0; x < w; x++) out.push(x);
  for (let x = 0; x < w; x++) out.push((h - 1) * w + x);
  for (let y = 1; y < h - 1; y++) out.push(y * w);
  for (let y = 1; y < h - 1; y++) out.push(y * w + w - 1);
  return out;
}

const distance = (img, a, b, c) => {
  let d = 0;
  for (let k = 0; k < c; k++) d = Math.max(d, Math.abs(img[a * c + k] - img[b * c + k]));
  return d;
};

/** One sprite's dominant border colour (Int16 per channel). */
function borderColour(img, h, w, c, tolerance, border) {
  const B = border.length;
  let best = 0, bestCount = -1;
  const close = new Uint8Array(B * B);
  for (let i = 0; i < B; i++) {
    let count = 0;
    for (let j = 0; j < B; j++) {
      if (distance(img, border[i], border[j], c) <= tolerance) { close[i * B + j] = 1; count++; }
    }
    if (count > bestCount) { best = i; bestCount = count; }
  }
  const colour = [];
  for (let k = 0; k < c; k++) {
    const values = [];
    for (let j = 0; j < B; j++) if (close[best * B + j]) values.push(img[border[j] * c + k]);
    values.sort((a, b) => a - b);
    const m = values.length >> 1;
    colour.push(rint(values.length % 2 ? values[m] : (values[m - 1] + values[m]) / 2));
  }
  return colour;
}

/** sprites uint8 [N,H,W,C] → Uint8Array [N,H,W], 1 where the pixel is background. */
export function backgroundMask(sprites, [n, h, w, c], tolerance = DEFAULT_TOLERANCE) {
  checkTolerance(tolerance);
  const border = borderIndices(h, w), plane = h * w;
  const out = new Uint8Array(n * plane);
  for (let s = 0; s < n; s++) {
    const img = sprites.subarray(s * plane * c, (s + 1) * plane * c);
    const colour = borderColour(img, h, w, c, tolerance, border);
    const near = new Uint8Array(plane);
    for (let p = 0; p < plane; p++) {
      let d = 0;
      for (let k = 0; k < c; k++) d = Math.max(d, Math.abs(img[p * c + k] - colour[k]));
      near[p] = d <= tolerance ? 1 : 0;
    }
    const mask = new Uint8Array(plane);
    const stack = [];
    for (const p of border) if (near[p] && !mask[p]) { mask[p] = 1; stack.push(p); }
    while (stack.length) {                                  // flood fill: the same fixed point as _grow4
      const p = stack.pop(), y = Math.floor(p / w), x = p % w;
      for (const [dy, dx] of [[-1, 0], [1, 0], [0, -1], [0, 1]]) {
        const yy = y + dy, xx = x + dx, q = yy * w + xx;
        if (yy >= 0 && yy < h && xx >= 0 && xx < w && near[q] && !mask[q]) { mask[q] = 1; stack.push(q); }
      }
    }
    const specks = [];                                      // opaque pixels without an opaque 8-neighbour
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        if (mask[y * w + x]) continue;
        let opaque = 0;
        for (let dy = -1; dy <= 1; dy++) {
          for (let dx = -1; dx <= 1; dx++) {
            const yy = y + dy, xx = x + dx;
            if ((dy || dx) && yy >= 0 && yy < h && xx >= 0 && xx < w && !mask[yy * w + xx]) opaque++;
          }
        }
        if (opaque === 0) specks.push(y * w + x);
      }
    }
    for (const p of specks) mask[p] = 1;
    let nearBorder = 0;
    for (const p of border) nearBorder += near[p];
    if (nearBorder / border.length >= MIN_BORDER_SHARE) out.set(mask, s * plane);
  }
  return out;
}

/** Key the background of sprites [N,H,W,3]: null keeps them; "transparent" → RGBA [N,H,W,4] with the
 *  background (0,0,0,0); "#rrggbb" → the background replaced by that colour. Returns [pixels, shape]. */
export function applyBackground(sprites, shape, background, tolerance = DEFAULT_TOLERANCE) {
  const bg = parseBackground(background);
  if (bg === null) return [sprites, shape];
  const [n, h, w, c] = shape;
  if (c !== 3) throw new RangeError(`background keying takes RGB sprites, got ${c} channels`);
  const mask = backgroundMask(sprites, shape, tolerance);
  if (bg === TRANSPARENT) {
    const out = new Uint8Array(n * h * w * 4);
    for (let p = 0; p < n * h * w; p++) {
      if (!mask[p]) { out.set(sprites.subarray(p * 3, p * 3 + 3), p * 4); out[p * 4 + 3] = 255; }
    }
    return [out, [n, h, w, 4]];
  }
  const colour = [1, 3, 5].map((k) => parseInt(bg.slice(k, k + 2), 16));
  const out = Uint8Array.from(sprites);
  for (let p = 0; p < n * h * w; p++) if (mask[p]) out.set(colour, p * 3);
  return [out, shape];
}

/** Colour of the sheet's padding and empty cells (outputs.sheet_fill). */
export function sheetFill(background, channels) {
  const bg = parseBackground(background);
  if (bg === null || ![3, 4].includes(channels)) return new Uint8Array(channels);
  if (bg === TRANSPARENT) return new Uint8Array(4);
  const rgb = [1, 3, 5].map((k) => parseInt(bg.slice(k, k + 2), 16));
  return Uint8Array.from(channels === 4 ? [...rgb, 255] : rgb);
}
