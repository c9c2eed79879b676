// float32 arithmetic as NumPy does it: every operation on float32 operands rounds once to float32.
// (float64 then Math.fround is exact for + − × ÷ √ of float32 operands: double has > 2·24 + 2 bits.)
export const f = Math.fround;

/** NumPy's rint: round half to even. */
export function rint(v) {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
