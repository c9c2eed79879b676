// Philox4x32-10 + Box–Muller: the portable noise generator ("philox"), specified in runtime/rng.py and
// mirrored here word for word. Uniforms are bit-exact with NumPy; normals agree after float32 rounding
// (float64 log/cos/sin may differ in their last bit between platforms).

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;
const TWO_32 = 4294967296;

/** High 32 bits of the 64-bit product of two uint32 (16-bit limbs: every partial product is exact). */
function mulhi(a, b) {
  const al = a & 0xffff, ah = a >>> 16, bl = b & 0xffff, bh = b >>> 16;
  const lh = al * bh, hl = ah * bl;
  const mid = ((al * bl) >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (ah * bh + (lh >>> 16) + (hl >>> 16) + Math.floor(mid / 65536)) >>> 0;
}

/** One block: counter [c0, c1, c2, c3], key [k0, k1] (uint32 numbers) → 4 uint32 words. */
export function philox4x32(counter, key, rounds = 10) {
  let [c0, c1, c2, c3] = counter.map((v) => v >>> 0);
  let [k0, k1] = key.map((v) => v >>> 0);
  for (let r = 0; r < rounds; r++) {
    if (r) { k0 = (k0 + W0) >>> 0; k1 = (k1 + W1) >>> 0; }   // Weyl key schedule before rounds 2 … R
    const hi0 = mulhi(M0, c0), lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi(M1, c2), lo1 = Math.imul(M1, c2) >>> 0;
    [c0, c1, c2, c3] = [(hi1 ^ c1 ^ k0) >>> 0, lo1, (hi0 ^ c3 ^ k1) >>> 0, lo0];
  }
  return [c0, c1, c2, c3];
}

/** A uint32 word → its uniform in (0, 1): ((r >>> 8) + 0.5) / 2^24, exact in float64. */
export function uniform(word) {
  return ((word >>> 8) + 0.5) / 16777216;
}

/** seed (number ≤ 2^53 − 1 or BigInt < 2^64) → key [lo, hi]. */
export function seedKey(seed) {
  const big = BigInt(seed);
  if (big < 0n || big >= 1n << 64n) throw new RangeError(`philox seeds are integers from 0 to 2^64 - 1, got ${seed}`);
  return [Number(big & 0xffffffffn), Number(big >> 32n)];
}

/** `count` standard normals (Float32Array) of (seed, stream): blocks j = 0, 1, … with counter
 *  (j lo, j hi, stream lo, stream hi); (u0, u1) → ρ cos θ, ρ sin θ; (u2, u3) likewise. */
export function philoxNormal(seed, stream, count) {
  const key = seedKey(seed);
  const s = Number(stream);
  const sLo = s % TWO_32 >>> 0, sHi = Math.floor(s / TWO_32) >>> 0;
  const out = new Float32Array(count);
  for (let j = 0, k = 0; k < count; j++) {
    const w = philox4x32([j % TWO_32 >>> 0, Math.floor(j / TWO_32) >>> 0, sLo, sHi], key);
    for (let p = 0; p < 4 && k < count; p += 2) {
      const rho = Math.sqrt(-2 * Math.log(uniform(w[p])));
      const theta = 2 * Math.PI * uniform(w[p + 1]);
      out[k++] = rho * Math.cos(theta);
      if (k < count) out[k++] = rho * Math.sin(theta);
    }
  }
  return out;
}

/** The loop's noise ("philox"): x_T from stream 0, the k-th timestep's z from stream k + 1. */
export class PhiloxNoise {
  constructor(seed) {
    seedKey(seed);
    this.seed = seed;
    this.rng = "philox";
  }
  /** @param {number} size elements of x_T */
  initial(size) { return philoxNormal(this.seed, 0, size); }
  /** @param {number} k timestep number, @param {number} size */
  step(k, size) { return philoxNormal(this.seed, k + 1, size); }
}
