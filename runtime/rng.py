"""A portable noise generator: Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
3", SC 2011) with Box–Muller, specified here once and implemented twice, in NumPy (this file) and in
JavaScript (web/src/rng.js), so that one seed gives the same noise in Python and in the browser.

Specification ("philox" in records):

    key     (k0, k1)       = (seed mod 2^32, seed >> 32)                  seed: 0 … 2^64 − 1
    counter (c0, c1, c2, c3) = (j mod 2^32, j >> 32, s mod 2^32, s >> 32)
            j = block index within a draw (0, 1, 2, …), s = stream: 0 for x_T, k + 1 for the z of
            the k-th timestep of the loop (k = 0, 1, …, whether or not earlier steps drew noise)
    block   Philox4x32-10(counter, key) → 4 uint32 words r0 … r3 (Random123's philox4x32_R(10, ·))
    uniform u = ((r >> 8) + 0.5) / 2^24          float64 (exact: at most 25 significant bits), in (0, 1):
                                                 the top 24 bits, never 0 or 1
    normal  (u0, u1) → ρ = √(−2 ln u0), z0 = ρ cos(2π u1), z1 = ρ sin(2π u1), in float64, rounded to
            float32; (u2, u3) → z2, z3 likewise
    draw    a tensor of m elements takes blocks j = 0 … ⌈m/4⌉ − 1 and their normals z0 z1 z2 z3 in order,
            the first m of them, laid out in C order ([N, C, H, W]: sprite-major, so the first sprites'
            noise does not depend on N).

The uniforms are bit-exact across implementations. The normals go through the platform's float64
log/cos/sin, which may differ in the last float64 bit; after rounding to float32 they agree except in
rare ties (tests compare to 1 float32 ulp).
"""
from __future__ import annotations

import numpy as np

from .errors import DdpmEdgeError

PHILOX_M0 = np.uint64(0xD2511F53)
PHILOX_M1 = np.uint64(0xCD9E8D57)
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
ROUNDS = 10
MASK32 = np.uint64(0xFFFFFFFF)
SHIFT32 = np.uint64(32)
SEED_LIMIT = 1 << 64


def philox4x32(counter: np.ndarray, key: tuple[int, int], rounds: int = ROUNDS) -> np.ndarray:
    """counter uint32 [B, 4], key (k0, k1) → uint32 [B, 4]. 32×32 → 64-bit products in uint64."""
    c = np.asarray(counter, dtype=np.uint32).astype(np.uint64)
    c0, c1, c2, c3 = (np.ascontiguousarray(c[:, i]) for i in range(4))   # [B] each
    p0, p1, hi = np.empty_like(c0), np.empty_like(c0), np.empty_like(c0)
    k0, k1 = int(key[0]) & 0xFFFFFFFF, int(key[1]) & 0xFFFFFFFF
    for r in range(rounds):
        if r:   # the key schedule: Weyl increments before rounds 2 … R
            k0, k1 = (k0 + PHILOX_W0) & 0xFFFFFFFF, (k1 + PHILOX_W1) & 0xFFFFFFFF
        np.multiply(c0, PHILOX_M0, out=p0)                              # exact 64-bit products
        np.multiply(c2, PHILOX_M1, out=p1)
        # (c0, c1, c2, c3) ← (hi(p1) ^ c1 ^ k0, lo(p1), hi(p0) ^ c3 ^ k1, lo(p0)), in place
        np.right_shift(p1, SHIFT32, out=hi)
        np.bitwise_xor(hi, c1, out=c0)
        c0 ^= np.uint64(k0)
        np.bitwise_and(p1, MASK32, out=c1)
        np.right_shift(p0, SHIFT32, out=hi)
        np.bitwise_xor(hi, c3, out=c2)
        c2 ^= np.uint64(k1)
        np.bitwise_and(p0, MASK32, out=c3)
    return np.stack([c0, c1, c2, c3], axis=1).astype(np.uint32)


def counters(blocks: int, stream: int) -> np.ndarray:
    """uint32 [blocks, 4]: (j lo, j hi, stream lo, stream hi) for j = 0 … blocks − 1."""
    j = np.arange(blocks, dtype=np.uint64)
    out = np.empty((blocks, 4), dtype=np.uint32)
    out[:, 0] = (j & MASK32).astype(np.uint32)
    out[:, 1] = (j >> SHIFT32).astype(np.uint32)
    out[:, 2] = stream & 0xFFFFFFFF
    out[:, 3] = (stream >> 32) & 0xFFFFFFFF
    return out


def uniforms(words: np.ndarray) -> np.ndarray:
    """uint32 words → float64 uniforms in (0, 1) from their top 24 bits: ((r >> 8) + 0.5) / 2^24, exact."""
    return ((np.asarray(words, dtype=np.uint32) >> np.uint32(8)).astype(np.float64) + 0.5) * 2.0 ** -24


def box_muller(u: np.ndarray) -> np.ndarray:
    """float64 uniforms [B, 4] → float32 normals [B, 4]: pairs (u0, u1), (u2, u3), in float64."""
    u = np.asarray(u, dtype=np.float64)
    rho = np.log(np.ascontiguousarray(u[:, 0::2]))                     # [B, 2], contiguous: 3× faster ufuncs
    rho *= -2.0
    np.sqrt(rho, out=rho)
    theta = np.ascontiguousarray(u[:, 1::2])
    theta *= 2.0 * np.pi
    out = np.empty(u.shape, dtype=np.float32)
    out[:, 0::2] = rho * np.cos(theta)                                  # float64 products, rounded on store
    out[:, 1::2] = rho * np.sin(theta)
    return out


def check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= int(seed) < SEED_LIMIT:
        raise DdpmEdgeError(f"philox seeds are integers from 0 to 2^64 - 1, got {seed!r}")
    return int(seed)


def philox_normal(seed: int, stream: int, shape: tuple) -> np.ndarray:
    """Standard normals float32 of `shape` for (seed, stream), as the module docstring specifies."""
    seed = check_seed(seed)
    m = int(np.prod(shape, dtype=np.int64))
    blocks = -(-m // 4)
    words = philox4x32(counters(blocks, stream), (seed & 0xFFFFFFFF, seed >> 32))
    return box_muller(uniforms(words)).reshape(-1)[:m].reshape(shape)


class PhiloxNoise:
    """The sampling loop's noise ("philox"): x_T from stream 0, the k-th timestep's z from stream k + 1.
    Counter-based, so any step's noise can be made without drawing the ones before it."""

    rng = "philox"

    def __init__(self, seed: int | None):
        if seed is None:
            import secrets
            seed = secrets.randbits(64)
        self.seed = check_seed(seed)

    def initial(self, shape: tuple) -> np.ndarray:
        return philox_normal(self.seed, 0, shape)

    def step(self, k: int, shape: tuple) -> np.ndarray:
        return philox_normal(self.seed, k + 1, shape)
