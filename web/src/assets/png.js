// A small PNG writer (8-bit greyscale, RGB or RGBA, no filtering) with iTXt text chunks, for sheets
// that carry the same `ddpm-edge` record as ddpm-run's. zlib through CompressionStream("deflate")
// (browsers and Node ≥ 18).

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];
const COLOR_TYPE = { 1: 0, 3: 2, 4: 6 };
const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32(bytes, crc = 0xffffffff) {
  for (let k = 0; k < bytes.length; k++) crc = CRC_TABLE[(crc ^ bytes[k]) & 0xff] ^ (crc >>> 8);
  return crc;
}

function chunk(type, data) {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  const typed = new TextEncoder().encode(type);
  out.set(typed, 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, (crc32(out.subarray(4, 8 + data.length)) ^ 0xffffffff) >>> 0);
  return out;
}

async function zlib(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** iTXt: keyword, 0, compression flag 0, method 0, empty language tag, 0, empty translated keyword, 0, UTF-8 text. */
function itxt(key, text) {
  const k = new TextEncoder().encode(key), t = new TextEncoder().encode(text);
  const data = new Uint8Array(k.length + 5 + t.length);
  data.set(k, 0);
  data.set(t, k.length + 5);
  return chunk("iTXt", data);
}

/**
 * @param {{width: number, height: number, channels: 1|3|4, pixels: Uint8Array}} image row-major, interleaved
 * @param {Record<string, string>} [text] iTXt chunks (key → UTF-8 text)
 * @returns {Promise<Uint8Array>} the PNG file
 */
export async function encodePng({ width, height, channels, pixels }, text = {}) {
  if (!(channels in COLOR_TYPE)) throw new RangeError(`PNG sheets have 1, 3 or 4 channels, got ${channels}`);
  const stride = width * channels;
  const raw = new Uint8Array(height * (stride + 1));          // filter type 0 before every row
  for (let y = 0; y < height; y++) raw.set(pixels.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header.set([8, COLOR_TYPE[channels], 0, 0, 0], 8);
  const parts = [Uint8Array.from(SIGNATURE), chunk("IHDR", header),
    ...Object.entries(text).map(([k, v]) => itxt(k, v)), chunk("IDAT", await zlib(raw)), chunk("IEND", new Uint8Array())];
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}
