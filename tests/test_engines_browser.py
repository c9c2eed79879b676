"""ddpm-run's atlases in the engines game developers use, in headless Chromium (Debian's chromium, driven by
playwright-core; tests/browser): Phaser 3.90 (`this.load.atlas`, hash and array layouts) and PixiJS 8.22
(`Assets.load`, hash layout) find every frame at its rectangle and size, and those rectangles hold the
sheet's own pixels; two sheets of the same class coexist in PixiJS's global texture cache."""
import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ddpm_edge.runtime.cli import app

from conftest import ROOT

BROWSER_DIR = ROOT / "tests" / "browser"
SCALE = 4


def need(tool: str) -> str:
    path = shutil.which(tool) or (tool == "chromium" and os.path.exists("/usr/bin/chromium") and "/usr/bin/chromium")
    if not path:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed (.ci/run installs it): the engine test cannot run")
        pytest.skip(f"{tool} is not installed")
    return path


@pytest.fixture(scope="module")
def engines(small_onnx, tmp_path_factory):
    node = need("node")
    need("chromium")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():   # .ci/run installs them; so do we
        subprocess.run([need("npm"), "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=BROWSER_DIR,
                       check=True, capture_output=True, timeout=900)
    assets = tmp_path_factory.mktemp("engines")
    common = ["--engine", str(small_onnx), "-c", "food", "--sampler", "ddim", "--steps", "4", "--scale", str(SCALE), "-q"]
    for args in (["-n", "6", "--seed", "1", "--out", assets / "a.png", "--atlas"],       # two sheets, one class
                 ["-n", "6", "--seed", "2", "--out", assets / "b.png", "--atlas"],
                 ["-n", "5", "--seed", "3", "--cols", "2", "--padding", "1", "--out", assets / "c.png",
                  "--atlas-format", "array"]):
        result = CliRunner().invoke(app, [*common, *map(str, args)])
        assert result.exit_code == 0, result.output
    run = subprocess.run([node, BROWSER_DIR / "check_atlases.mjs", assets, "a", "b", "c"], capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    return assets, json.loads(run.stdout.strip().splitlines()[-1])


def expected_frames(assets: Path, sheet: str) -> list[dict]:
    atlas = json.loads((assets / f"{sheet}.json").read_text())
    frames = atlas["frames"]
    return [{"name": f["filename"], **f["frame"]} for f in frames] if isinstance(frames, list) else \
        [{"name": name, **f["frame"]} for name, f in frames.items()]


def check_engine(assets: Path, seen: dict, sheets: list[str]) -> None:
    assert sorted(seen) == sorted(sheets)
    for sheet in sheets:
        image = np.asarray(Image.open(assets / f"{sheet}.png").convert("RGBA"))
        want = expected_frames(assets, sheet)
        got = seen[sheet]
        assert [g["name"] for g in got] == [w["name"] for w in want]          # every frame, in order
        for g, w in zip(got, want):
            assert (g["x"], g["y"], g["w"], g["h"]) == (w["x"], w["y"], w["w"], w["h"])
            assert (g["width"], g["height"]) == (16 * SCALE, 16 * SCALE)
            pixels = np.frombuffer(base64.b64decode(g["pixels"]), np.uint8).reshape(g["h"], g["w"], 4)
            np.testing.assert_array_equal(pixels, image[w["y"]:w["y"] + w["h"], w["x"]:w["x"] + w["w"]])


def test_phaser_reads_hash_and_array_atlases(engines):
    assets, result = engines
    assert result["versions"]["phaser"] == "3.90.0" and not result["errors"], result["errors"]
    check_engine(assets, result["phaser"], ["a", "b", "c"])


def test_pixi_reads_hash_atlases_and_keeps_two_sheets_apart(engines):
    assets, result = engines
    assert result["versions"]["pixi"] == "8.22.0" and not result["errors"], result["errors"]
    check_engine(assets, result["pixi"]["sheets"], ["a", "b"])
    cache = result["pixi"]["cache"]                       # the global cache: each name → the sheet it came from
    assert len(cache) == 12 and all(owner == name.split("/")[0] for name, owner in cache.items())
