"""The embedding API on the small exported model: keyed outputs, batches that record how to reproduce
them, threads, cancellation, model checks for records, and the worked example script."""
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ddpm_edge.runtime.api import GenerationParams, SpriteGenerator, render
from ddpm_edge.runtime.errors import Cancelled, DdpmEdgeError
from ddpm_edge.runtime.assets.outputs import SheetLayout, Targets
from ddpm_edge.runtime.assets.records import read_record

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(sampler="ddim", steps=3)


@pytest.fixture(scope="module")
def gen(small_onnx):
    return SpriteGenerator.load(small_onnx, device="cpu")


def test_generate_with_backgrounds(gen):
    plain = gen.generate(3, seed=1, **FAST)
    keyed = gen.generate(3, seed=1, background="transparent", **FAST)
    white = gen.generate(3, seed=1, background="white", **FAST)
    assert plain.shape == white.shape == (3, 16, 16, 3) and keyed.shape == (3, 16, 16, 4)
    assert plain.dtype == keyed.dtype == white.dtype == np.uint8
    opaque = keyed[..., 3] == 255
    np.testing.assert_array_equal(keyed[..., :3][opaque], plain[opaque])
    np.testing.assert_array_equal(white[opaque], plain[opaque])
    assert (white[~opaque] == 255).all()
    with pytest.raises(DdpmEdgeError, match="unknown background colour"):
        gen.generate(1, seed=1, background="blurple", **FAST)


def test_batch_records_a_drawn_seed_and_reproduces(gen):
    batch = gen.generate_batch(GenerationParams(n=2, sampler="ddim"))
    assert isinstance(batch.params.seed, int) and batch.params.steps == 25      # open choices made and kept
    again = gen.generate_batch(batch.params)
    np.testing.assert_array_equal(again.sprites, batch.sprites)
    assert batch.model_sha256 == gen.model_sha256 and batch.model_path == gen.unet.path.name  # no local folders
    record = batch.record(SheetLayout())
    assert record["seed"] == batch.params.seed and record["cols"] == 2 and record["version"]


def test_batch_frames_and_names(gen):
    batch = gen.generate_batch(GenerationParams(n=3, sampler="ddim", steps=10, seed=2, context="food"),
                               frames_every=3)
    assert len(batch.frames) == 3 and all(f.shape == (3, 16, 16, 3) for f in batch.frames)   # steps 3, 6, 9
    assert batch.names == ("food_000", "food_001", "food_002")
    auto = gen.generate_batch(GenerationParams(n=1, sampler="ddim", steps=10, seed=2), frames_every="auto")
    assert len(auto.frames) == 9 and auto.names == ("sprite_000",)
    mixed = gen.generate_batch(GenerationParams(n=1, seed=2, context="1,0,0.6,0,0", **FAST))
    assert mixed.names == ("mix_000",)
    random = gen.generate_batch(GenerationParams(n=20, seed=2, context="random", **FAST))
    assert {name.rsplit("_", 1)[0] for name in random.names} <= set(gen.spec.context_names)
    with pytest.raises(DdpmEdgeError, match="frames_every"):
        gen.generate_batch(GenerationParams(n=1, **FAST), frames_every=0)


def test_threads_share_one_generator(gen):
    seeds = [11, 12, 13, 14, 15, 16]
    serial = [gen.generate(2, seed=s, context="random", **FAST) for s in seeds]
    with ThreadPoolExecutor(max_workers=4) as pool:
        threaded = list(pool.map(lambda s: gen.generate(2, seed=s, context="random", **FAST), seeds))
    for a, b in zip(serial, threaded):
        np.testing.assert_array_equal(a, b)


def test_cancel_through_progress(gen):
    seen = []

    def stop_after_two(done, total, x):
        seen.append((done, total, x.shape))
        return done < 2

    with pytest.raises(Cancelled):
        gen.generate_batch(GenerationParams(n=2, sampler="ddim", steps=10, seed=1), frames_every=1,
                           progress=stop_after_two)
    assert seen == [(1, 10, (2, 3, 16, 16)), (2, 10, (2, 3, 16, 16))]
    assert gen.generate(1, seed=1, **FAST).shape == (1, 16, 16, 3)            # still usable afterwards


def test_params_validation():
    for kwargs, match in [({"n": 0}, "at least 1"), ({"sampler": "euler"}, "sampler"), ({"seed": -1}, "seed"),
                          ({"steps": 0}, "steps"), ({"guidance": float("nan")}, "guidance"),
                          ({"tolerance": 300}, "tolerance"), ({"background": "nope"}, "colour")]:
        with pytest.raises(DdpmEdgeError, match=match):
            GenerationParams(**kwargs)
    assert GenerationParams(background="White").background == "#ffffff"
    assert GenerationParams(context=np.array([1, 0, 0, 0, 0])).context == [1, 0, 0, 0, 0]


def test_load_for_record_checks_the_model(small_onnx, tmp_path):
    record = {"model": str(small_onnx), "model_sha256": SpriteGenerator.load(small_onnx).model_sha256}
    beside = str(small_onnx.parent / "sheet.png")  # the recorded model file is looked up beside the PNG
    assert SpriteGenerator.load_for_record(record, source=beside).model_sha256 == record["model_sha256"]
    assert SpriteGenerator.load_for_record(record, engine=small_onnx).model_path == small_onnx.name
    other = tmp_path / "other.onnx"
    other.write_bytes(b"a different model")
    with pytest.raises(DdpmEdgeError, match="was made by model sha256"):
        SpriteGenerator.load_for_record(record, engine=other)
    with pytest.raises(DdpmEdgeError, match="missing"):
        SpriteGenerator.load_for_record({**record, "model": str(tmp_path / "gone.onnx")})
    with pytest.raises(DdpmEdgeError, match="does not record which model"):
        SpriteGenerator.load_for_record({"model": str(small_onnx)})


def test_render_from_a_png_with_overrides(small_onnx, tmp_path):
    model = tmp_path / small_onnx.name   # beside the PNGs, where a record's model is looked up
    model.write_bytes(small_onnx.read_bytes())
    first = render(Targets(sheet=tmp_path / "a.png"), engine=model, n=4, seed=3, scale=2, **FAST)
    same = render(Targets(sheet=tmp_path / "b.png"), source=tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    assert same.params == first.params
    other = render(Targets(sheet=tmp_path / "c.png"), source=tmp_path / "a.png", seed=4, padding=1)
    assert other.params.seed == 4 and read_record(tmp_path / "c.png")["padding"] == 1
    assert Image.open(tmp_path / "c.png").size == (1 + 2 * 33, 1 + 2 * 33)
    switched = render(Targets(sheet=tmp_path / "d.png"), source=tmp_path / "a.png", sampler="ddim")
    assert switched.params.steps == 25                                           # steps follow a new sampler
    with pytest.raises(DdpmEdgeError, match="unknown settings"):
        render(Targets(sheet=tmp_path / "e.png"), engine=small_onnx, colour="red")


def test_build_assets_example(small_onnx, tmp_path):
    out = tmp_path / "assets"
    cmd = [sys.executable, str(ROOT / "examples" / "build_assets.py"), "--model", str(small_onnx), "--out", str(out),
           "--n", "4", "--steps", "3", "--seed", "5", "--scale", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    classes = SpriteGenerator.load(small_onnx).spec.context_names
    expected = {"preview.gif"} | {f"{c}.png" for c in classes} | {f"{c}.json" for c in classes} | set(classes)
    assert {p.name for p in out.iterdir()} == expected
    assert sorted(p.name for p in (out / "food").iterdir()) == [f"food_{k:03d}.png" for k in range(4)]
    assert Image.open(out / "food.png").mode == "RGBA"
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and again.stdout.count("up to date") == len(classes), again.stdout
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    bad = subprocess.run(cmd[:2] + ["--model", str(tmp_path / "nope.onnx"), "--out", str(out)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("build_assets: error:") and "Traceback" not in bad.stderr
