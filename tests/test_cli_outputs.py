"""ddpm-run's game outputs end to end: sheet + TexturePacker atlas + per-sprite PNGs + GIF in one
command, `--from` reproducing a sheet byte for byte, and one-line refusals that leave no files."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageSequence
from conftest import script
from typer.testing import CliRunner

from ddpm_edge.runtime.cli import app
from ddpm_edge.runtime.assets.records import read_record
from ddpm_edge.runtime.schedule import Schedule, ddim_timesteps

FAST = ["--sampler", "ddim", "--steps", "6"]


def ddpm_run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def assert_refused(result, match):
    assert result.exit_code not in (0, None)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ddpm-run: error:") and match in lines[0], result.stderr


def import_texturepacker(json_path: Path) -> dict[str, Image.Image]:
    """What a TexturePacker JSON (hash) importer (Phaser's JSONHash, Godot/Unity plugins) does: read the
    meta, open the image beside the JSON, check its size, cut out every frame."""
    atlas = json.loads(json_path.read_text())
    meta = atlas["meta"]
    image = Image.open(json_path.parent / meta["image"])
    assert image.size == (meta["size"]["w"], meta["size"]["h"]) and float(meta["scale"]) == 1
    assert {"app", "version", "format"} <= set(meta)
    sprites = {}
    for name, entry in atlas["frames"].items():
        f, source, placed = entry["frame"], entry["sourceSize"], entry["spriteSourceSize"]
        assert entry["rotated"] is False and entry["trimmed"] is False
        assert (f["w"], f["h"]) == (source["w"], source["h"]) == (placed["w"], placed["h"])
        assert placed["x"] == placed["y"] == 0
        sprites[name] = image.crop((f["x"], f["y"], f["x"] + f["w"], f["y"] + f["h"]))
    return sprites


def test_one_command_makes_sheet_atlas_sprites_and_gif(small_onnx, tmp_path):
    sheet, gif, each = tmp_path / "sheet.png", tmp_path / "denoise.gif", tmp_path / "sprites"
    result = ddpm_run("--engine", small_onnx, "-n", "4", *FAST, "--seed", "3", "--context", "food", "--out", sheet,
                      "--atlas", "--each", each, "--gif", gif, "--scale", "2", "--cols", "2")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["denoise.gif", "sheet.json", "sheet.png", "sprites"]
    names = [f"food_{k:03d}" for k in range(4)]
    frames = import_texturepacker(tmp_path / "sheet.json")
    assert list(frames) == [f"sheet/{name}" for name in names]          # frame names: the sheet's stem / sprite
    atlas = json.loads((tmp_path / "sheet.json").read_text())
    covered = np.zeros((64, 64), int)                        # 2x2 cells of 32 px, no padding: exact tiling
    for entry in atlas["frames"].values():
        f = entry["frame"]
        covered[f["y"]:f["y"] + f["h"], f["x"]:f["x"] + f["w"]] += 1
    assert Image.open(sheet).size == (64, 64) and (covered == 1).all()
    for name in names:                                       # per-sprite PNGs are the atlas frames
        np.testing.assert_array_equal(np.asarray(Image.open(each / f"{name}.png")), np.asarray(frames[f"sheet/{name}"]))
    with Image.open(gif) as animation:
        assert animation.n_frames == len(ddim_timesteps(Schedule(), 6))   # every step, the last one final
        for frame in ImageSequence.Iterator(animation):
            last = np.asarray(frame.convert("RGB")).astype(int)
    expected = np.asarray(Image.open(sheet).convert("RGB")).astype(int)
    if len(np.unique(expected.reshape(-1, 3), axis=0)) <= 255:
        np.testing.assert_array_equal(last, expected)
    else:
        assert np.abs(last - expected).mean() < 12
    record = read_record(sheet)
    assert record["seed"] == 3 and record["context"] == "food" and record["model_sha256"] and record["version"]
    assert read_record(each / "food_002.png")["sprite"] == 2


def test_from_reproduces_the_sheet_byte_for_byte(small_onnx, tmp_path):
    model = tmp_path / "unet.onnx"       # the model ships beside its sprites: --from finds it by name
    shutil.copy(small_onnx, model)
    sheet = tmp_path / "sheet.png"
    result = ddpm_run("--engine", model, "-n", "5", *FAST, "--out", sheet, "--background", "transparent",
                      "--padding", "1", "--each", tmp_path / "each", "--atlas", "-q")     # no --seed: drawn
    assert result.exit_code == 0, result.output
    assert isinstance(read_record(sheet)["seed"], int)
    assert read_record(sheet)["model"] == "unet.onnx"                            # no local folders recorded
    again = tmp_path / "again.png"
    assert ddpm_run("--from", sheet, "--out", again, "--atlas", "-q").exit_code == 0     # model from the record
    assert again.read_bytes() == sheet.read_bytes()
    atlas, atlas_again = (json.loads(p.read_text()) for p in (tmp_path / "sheet.json", tmp_path / "again.json"))
    assert {k.replace("sheet/", "again/", 1): v for k, v in atlas["frames"].items()} == atlas_again["frames"]
    third = tmp_path / "third.png"                                                 # from a per-sprite PNG
    assert ddpm_run("--from", tmp_path / "each" / "sprite_003.png", "--engine", model, "--out", third,
                    "-q").exit_code == 0
    assert third.read_bytes() == (tmp_path / "each" / "sprite_003.png").read_bytes()   # that sprite alone
    other = tmp_path / "other.png"
    assert ddpm_run("--from", sheet, "--seed", "99", "--out", other, "-q").exit_code == 0
    assert read_record(other)["seed"] == 99 and other.read_bytes() != sheet.read_bytes()


def test_from_refuses_a_different_model(small_onnx, tmp_path):
    model = tmp_path / "model.onnx"
    shutil.copy(small_onnx, model)
    sheet = tmp_path / "sheet.png"
    assert ddpm_run("--engine", model, "-n", "2", *FAST, "--seed", "1", "--out", sheet, "-q").exit_code == 0
    decoy = tmp_path / "decoy.onnx"
    decoy.write_bytes(b"another model")
    assert_refused(ddpm_run("--from", sheet, "--engine", decoy, "--out", tmp_path / "x.png"), "was made by model")
    model.write_bytes(b"retrained since")
    assert_refused(ddpm_run("--from", sheet, "--out", tmp_path / "x.png"), "was made by model")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("args,match", [
    (["--background", "blurple"], "unknown background colour"),
    (["--tolerance", "999"], "tolerance"),
    (["--each", "{tmp}/file.txt/each"], "not a folder"),
    (["--each", "{tmp}/file.txt"], "not a folder"),
    (["--gif", "{tmp}/anim.mp4"], "animation must end"),
    (["--gif", "{tmp}/file.txt/anim.gif"], "not a folder"),
    (["--gif", "{tmp}/sheet.png"], "different files"),
    (["--out", "{tmp}/raw.npy", "--atlas"], "atlas"),
    (["--padding", "-1"], "padding"),
    (["--scale", "0"], "scale"),
    (["--gif", "{tmp}/a.gif", "--gif-every", "0"], "every 1 or more"),
    (["--from", "{tmp}/plain.png"], "no ddpm-edge generation parameters"),
    (["--from", "{tmp}/nothing.png"], "no such file"),
])
def test_bad_input_is_one_line_and_leaves_no_files(small_onnx, tmp_path, args, match):
    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    (tmp_path / "file.txt").write_text("x")
    before = sorted(tmp_path.iterdir())
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = ddpm_run("--engine", small_onnx, "-n", "2", *FAST, "--seed", "1", "--out", tmp_path / "sheet.png",
                      "--atlas", "--each", tmp_path / "each", *args)
    assert_refused(result, match)
    assert sorted(tmp_path.iterdir()) == before


def test_console_script_and_plain_outputs(small_onnx, tmp_path):
    """The installed ddpm-run: a transparent sheet with an APNG, and the old .npy output still works."""
    exe = script("ddpm-run")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([exe, "--engine", str(small_onnx), "-n", "3", *FAST, "--seed", "2", "--background",
                          "transparent", "--gif", "anim.png", "--gif-every", "2", "--gif-ms", "40"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "sprites.png" in run.stderr and "seed 2" in run.stderr
    with Image.open(tmp_path / "anim.png") as animation:
        assert animation.n_frames == len(range(2, len(ddim_timesteps(Schedule(), 6)), 2)) + 1
        animation.seek(animation.n_frames - 1)
        np.testing.assert_array_equal(np.asarray(animation.convert("RGBA")),
                                      np.asarray(Image.open(tmp_path / "sprites.png")))
    assert read_record(tmp_path / "anim.png")["background"] == "transparent"
    raw = subprocess.run([exe, "--engine", str(small_onnx), "-n", "2", *FAST, "--seed", "2", "--out", "raw.npy", "-q"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert raw.returncode == 0 and raw.stderr == ""
    assert np.load(tmp_path / "raw.npy").shape == (2, 3, 16, 16)
