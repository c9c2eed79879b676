// From uint8 sprites to a sheet (runtime/assets/images.py): the same grid and cell geometry.

/** [rows, cols] of a sheet: `cols` if given, else the smallest square-ish grid. */
export function gridShape(n, cols = null) {
  const c = Math.max(1, Math.min(n, cols ? cols : Math.ceil(Math.sqrt(n))));
  return [Math.ceil(n / c), c];
}

/** The sheet's [width, height] and each cell's [x, y, w, h], row-major (images.sheet_geometry). */
export function sheetGeometry(n, height, width, cols = null, scale = 1, padding = 0) {
  const [rows, c] = gridShape(n, cols);
  const cw = width * scale, ch = height * scale;
  const size = [padding + c * (cw + padding), padding + rows * (ch + padding)];
  const cells = Array.from({ length: n }, (_, k) =>
    [padding + (k % c) * (cw + padding), padding + Math.floor(k / c) * (ch + padding), cw, ch]);
  return [size, cells];
}

/**
 * sprites uint8 [N,H,W,C] → {width, height, channels, pixels}: cells as sheetGeometry places them,
 * each sprite scaled by nearest neighbour, the rest filled with `fill` (default zeros).
 */
export function makeSheet(sprites, [n, height, width, channels], { cols = null, scale = 1, padding = 0, fill = null } = {}) {
  const [[sw, sh], cells] = sheetGeometry(n, height, width, cols, scale, padding);
  const pixels = new Uint8Array(sw * sh * channels);
  if (fill) for (let p = 0; p < sw * sh; p++) pixels.set(fill, p * channels);
  cells.forEach(([cx, cy], k) => {
    for (let y = 0; y < height * scale; y++) {
      for (let x = 0; x < width * scale; x++) {
        const src = ((k * height + Math.floor(y / scale)) * width + Math.floor(x / scale)) * channels;
        pixels.set(sprites.subarray(src, src + channels), ((cy + y) * sw + cx + x) * channels);
      }
    }
  });
  return { width: sw, height: sh, channels, pixels };
}
