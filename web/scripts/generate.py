"""Write what the JS package takes from the Python runtime, so each fact has one source:

    web/src/contract.json   the model I/O contract, schedule defaults, samplers, records, layouts
    web/test/golden.json    values the NumPy runtime computes, which the JS unit tests must reproduce

    python web/scripts/generate.py          # rewrite both
    python web/scripts/generate.py --check  # exit 1 when either is out of date (tests/test_web_js.py)
"""
from __future__ import annotations

import base64
import json
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np

from ddpm_edge.runtime import __version__, solvers
from ddpm_edge.runtime.api import AUTO_FRAMES
from ddpm_edge.runtime.assets import records
from ddpm_edge.runtime.assets.atlas import frame_names, texturepacker_array
from ddpm_edge.runtime.assets import background
from ddpm_edge.runtime.assets.background import apply_background, background_mask
from ddpm_edge.runtime.limits import MAX_GUIDANCE
from ddpm_edge.runtime.assets.images import to_uint8
from ddpm_edge.runtime.assets.outputs import Batch, SheetLayout, atlas_dict, sprite_names
from ddpm_edge.runtime.contract import COURSE_CONTEXT_NAMES, INPUT_NAMES, OUTPUT_NAMES, ModelSpec
from ddpm_edge.runtime.params import GenerationParams
from ddpm_edge.runtime.rng import PhiloxNoise, philox4x32, philox_normal, uniforms
from ddpm_edge.runtime.sampling import DEFAULT_RNG, RNGS, guided, sample
from ddpm_edge.runtime.schedule import Schedule, ddim_timesteps

WEB = Path(__file__).resolve().parents[1]
ROOT = WEB.parent
CONTRACT = WEB / "src" / "contract.json"
GOLDEN = WEB / "test" / "golden.json"


def contract() -> dict:
    spec = ModelSpec()
    params = {f.name: f.default for f in fields(GenerationParams)}
    return {
        "version": __version__,
        "inputs": list(INPUT_NAMES), "outputs": list(OUTPUT_NAMES),
        "spec": {k: getattr(spec, k) for k in ("channels", "height", "width", "n_cfeat", "T", "beta1", "beta2")}
        | {"context_names": list(COURSE_CONTEXT_NAMES)},
        "schedule": spec.schedule.as_dict(),
        "samplers": list(solvers.SAMPLERS),
        "default_steps": dict(getattr(solvers, "DEFAULT_STEPS", {"ddim": solvers.DEFAULT_DDIM_STEPS})),
        "rngs": list(RNGS), "default_rng": DEFAULT_RNG, "web_rng": "philox",
        "params": params,
        "course_samplers": list(solvers.COURSE_SAMPLERS), "default_class_guidance": solvers.DEFAULT_CLASS_GUIDANCE,
        "max_guidance": MAX_GUIDANCE,
        "keying": {"default": background.DEFAULT_KEYING, "legacy": background.LEGACY_KEYING, "web": ["v1"]},
        "layout": SheetLayout().as_dict(),
        "record": {"chunk_key": records.CHUNK_KEY, "format": records.RECORD_FORMAT, "v1_defaults": records.V1_DEFAULTS},
        "auto_frames": AUTO_FRAMES,
    }


def floats(a) -> list:
    return np.asarray(a, dtype=np.float32).reshape(-1).tolist()


def fake_unet(x, t, c):
    """A model stand-in whose float32 arithmetic JS repeats exactly: eps = 0.5·x + 0.25·t + 0.125·Σc."""
    n = x.shape[0]
    bias = (t.reshape(n, 1, 1, 1) * np.float32(0.25)
            + c.sum(axis=1, dtype=np.float32).reshape(n, 1, 1, 1) * np.float32(0.125))
    return (x * np.float32(0.5) + bias).astype(np.float32)


def solver_cases(spacings: list[str]) -> list[tuple]:
    """(sampler, steps, guidance, make_sampler options) of the whole-loop goldens: every solver the Python
    runtime has, every spacing, DDIM with η."""
    cases = [("ddim", 7, 0.0, {}), ("ddim", 10, 2.0, {}), ("ddpm", None, 0.0, {})]
    for name in solvers.SAMPLERS:
        if name in ("ddpm", "ddim"):
            continue
        cases += [(name, 20, 0.0, {})] + [(name, 10, 2.0, {"spacing": sp} if sp != "uniform" else {}) for sp in spacings]
    if len(spacings) > 1:
        cases += [("ddim", 10, 2.0, {"eta": 0.5}), ("ddim", 12, 0.0, {"eta": 1.0, "spacing": spacings[1]}),
                  ("ddim", 5, 0.0, {"spacing": spacings[-1]})]
    return cases


def sample_sprites() -> np.ndarray:
    """uint8 [N,16,16,3]: the shipped model's sprites (weights/samples sheets: 4× scale, 2 px padding, 8 columns),
    plus made-up ones: a sprite without a clear background, one with an isolated speck, a flat one."""
    from PIL import Image
    sprites = []
    for name in ("food_ddim25_w2.png", "face_ddpm.png", "animal_ddim25.png"):
        sheet = np.asarray(Image.open(ROOT / "weights" / "samples" / name).convert("RGB"))
        for k in range(32):
            y, x = 2 + (k // 8) * 66, 2 + (k % 8) * 66
            sprites.append(sheet[y:y + 64:4, x:x + 64:4])
    g = np.random.default_rng(5)
    noisy = g.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    speck = np.full((16, 16, 3), 200, np.uint8)
    speck[7, 7] = (10, 20, 30)
    speck[3:6, 3:6] = (90, 40, 40)
    flat = np.full((16, 16, 3), 17, np.uint8)
    return np.stack(sprites + [noisy, speck, flat])


def background_golden() -> dict:
    sprites = sample_sprites()
    masks = {str(tol): ["".join("1" if v else "0" for v in m.reshape(-1)) for m in background_mask(sprites, tol)]
             for tol in (0, 8, 32, 80)}
    few = sprites[:3]
    return {"shape": list(sprites.shape), "sprites": base64.b64encode(sprites.tobytes()).decode(), "masks": masks,
            "transparent": base64.b64encode(apply_background(few, "transparent", keying="v1").tobytes()).decode(),
            "white": base64.b64encode(apply_background(few, "#ffffff", 20, keying="v1").tobytes()).decode()}


def golden() -> dict:
    g = np.random.default_rng(20261124)
    shape = (2, 3, 2, 2)

    def normal():
        return g.standard_normal(shape, dtype=np.float32)

    schedule = Schedule()
    out = {"shape": list(shape)}
    out["philox"] = {
        "words": [[int(w) for w in row] for row in philox4x32(np.array([[0, 0, 0, 0], [5, 0, 1, 0], [1, 2, 3, 4]],
                                                                       dtype=np.uint32), (7, 0))],
        "uniforms": uniforms(np.array([0, 255, 256, 0xFFFFFFFF, 0x80000000], dtype=np.uint32)).tolist(),
        "normals": [{"seed": seed, "stream": stream, "count": count, "z": floats(philox_normal(seed, stream, (count,)))}
                    for seed, stream, count in ((7, 0, 64), (2**40 + 3, 2**33 + 5, 10), (2**53 - 1, 1, 7))],
    }
    out["schedule"] = {"T": schedule.T, "betas": floats(schedule.betas), "alphas": floats(schedule.alphas),
                       "alphas_cumprod": floats(schedule.alphas_cumprod),
                       "ddim_timesteps": {str(s): ddim_timesteps(schedule, s) for s in (1, 7, 25, 500)}}
    steps = []
    for name, n_steps, indices in (("ddpm", None, (500, 250, 2, 1)), ("ddim", 25, (500, 260, 20)),
                                   ("ddim", 7, (500, 72))):
        sampler = solvers.make_sampler(name, schedule, n_steps)
        for i in indices:
            x, eps, z = normal(), normal(), normal()
            steps.append({"sampler": name, "steps": n_steps, "i": i, "x": floats(x), "eps": floats(eps),
                          "z": floats(z) if sampler.needs_noise(i) else None,
                          "out": floats(sampler.step(x, eps, i, z if sampler.needs_noise(i) else None))})
    out["steps"] = steps
    x, c = normal(), np.eye(5, dtype=np.float32)[[1, 3]]
    t = np.full((2, 1), 0.5, dtype=np.float32)
    out["guidance"] = {"w": 2.0, "x": floats(x), "c": floats(c), "t": 0.5,
                       "eps": floats(guided(fake_unet, 2.0)(x, t, c))}
    edges = np.array([-1.5, -1, -0.9999, 1 / 255 - 1, 0, 0.5 / 127.5, 1.5 / 127.5, 0.999, 1, 7], dtype=np.float32)
    out["to_uint8"] = {"x": floats(edges), "out": to_uint8(edges.reshape(1, 1, 1, -1)).reshape(-1).tolist()}
    spacings = list(getattr(solvers, "SPACINGS", ("uniform",)))
    make_timesteps = getattr(solvers, "make_timesteps", lambda s, steps, spacing: ddim_timesteps(s, steps))
    out["schedule"]["timesteps"] = {spacing: {str(n): make_timesteps(schedule, n, spacing) for n in (1, 7, 10, 25, 60, 500)}
                                    for spacing in spacings}
    loops = []
    c = np.eye(5, dtype=np.float32)[[2, 0]]
    for name, n_steps, w, options in solver_cases(spacings):
        sampler = solvers.make_sampler(name, schedule, n_steps, **options)
        x0 = sample(guided(fake_unet, w), sampler, shape, c, noise=PhiloxNoise(11))
        loops.append({"sampler": name, "steps": n_steps, "guidance": w, "seed": 11, "c": floats(c),
                      "options": options, "out": floats(x0)})
    out["loops"] = loops
    layout = SheetLayout(cols=3, scale=2, padding=1)
    names = sprite_names(["food"] * 4 + ["sprite", "mix"])
    out["atlas"] = {"names": names, "layout": layout.as_dict(), "size": [16, 16],
                    "atlas": atlas_dict(frame_names("food", names), (16, 16), layout, "food.png", 3, __version__),
                    "array": texturepacker_array(names, (16, 16), layout, "food.png", 4, __version__)}
    out["background"] = background_golden()
    params = GenerationParams(n=6, sampler="dpmpp-2m-sde", steps=10, seed=7, context="food", guidance=2.0,
                              spacing="logsnr", rng="philox")
    batch = Batch(samples=np.zeros((6, 3, 16, 16), np.float32), sprites=np.zeros((6, 16, 16, 3), np.uint8),
                  names=tuple(names), params=params, model_sha256="ab" * 32, model_path="unet.onnx",
                  version=__version__, backend="onnxruntime-web")
    record = batch.record(layout)
    chunk = records.png_info(record).chunks[0][1]           # the iTXt payload ddpm-run writes
    out["record"] = {"params": params.as_dict(), "layout": layout.as_dict(), "itxt": list(chunk)}
    return out


def dump(data: dict) -> str:
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def main(argv: list[str]) -> int:
    wanted = {CONTRACT: dump(contract()), GOLDEN: dump(golden())}
    if "--check" in argv:
        stale = [str(p.relative_to(WEB)) for p, text in wanted.items()
                 if not p.is_file() or p.read_text(encoding="utf-8") != text]
        if stale:
            print(f"out of date: {', '.join(stale)}; run python web/scripts/generate.py", file=sys.stderr)
            return 1
        return 0
    for path, text in wanted.items():
        path.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
