"""The static page end to end in headless Chromium (Debian's chromium, driven by playwright-core): web/ served
on 127.0.0.1, 16 sprites with a fixed seed, the downloaded sheet compared with ddpm-run's for the same
parameters (≤ 2/255 per pixel), `ddpm-run --from` on the browser's PNG giving ddpm-run's sheet byte for
byte, the atlas equal to ddpm-run's, and a failing run reported as one line in window.ddpmEdge.error."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from ddpm_edge.runtime.assets.records import read_record
from ddpm_edge.runtime.cli import app

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import web_page  # noqa: E402

PARAMS = {"n": 16, "seed": 7, "context": "food", "sampler": "ddim", "steps": 25, "guidance": 2}
SDE = {"n": 16, "seed": 3, "context": "face", "sampler": "dpmpp-2m-sde", "steps": 10, "guidance": 2, "spacing": "logsnr"}


def query(params: dict) -> str:
    return "&".join(f"{k}={v}" for k, v in params.items())


@pytest.fixture(scope="module")
def pages():
    if web_page.find_node() is None:
        pytest.fail("node is not installed (.ci/run installs nodejs): the browser test cannot run")
    if not (web_page.WEB / "node_modules" / "playwright-core").is_dir():
        pytest.fail("web/node_modules is missing: run `npm ci --ignore-scripts` in web/ (.ci/run does)")
    web_page.vendor()
    with web_page.serve() as url:
        return web_page.drive([
            f"{url}?{query(PARAMS)}&ep=wasm&autorun=1",
            f"{url}?{query(SDE)}&ep=wasm&autorun=1",
            f"{url}?n=2&context=dragon&sampler=ddim&steps=2&ep=wasm&autorun=1",
            f"{url}?model=missing.onnx&ep=wasm&autorun=1"])


def ddpm_run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    return result


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(np.int16)


@pytest.mark.parametrize("case", [0, 1], ids=["ddim-25", "dpmpp-2m-sde-10-logsnr"])
def test_browser_sheet_matches_ddpm_run_and_from_reproduces_it(pages, tmp_path, case):
    good, params = pages[case], (PARAMS, SDE)[case]
    assert good["error"] is None and good["done"] is True, good
    browser = tmp_path / "browser.png"
    browser.write_bytes(web_page.png_bytes(good["sheetPng"]))
    record = read_record(browser)
    assert {k: record[k] for k in params} == params and record["rng"] == "philox" and record["model"] == "unet.onnx"
    assert record["backend"] == "onnxruntime-web" and record["format"] == "ddpm-edge-params/2"

    python = tmp_path / "python.png"
    args = [a for k, v in params.items() for a in ((f"--{k}" if k != "n" else "-n"), v)]
    ddpm_run(*args, "--rng", "philox", "--out", python, "--atlas", "-q")
    a, b = pixels(browser), pixels(python)
    assert a.shape == b.shape == (256, 256, 3)
    assert np.abs(a - b).max() <= 2
    assert a.std() > 20                                           # sprites, not a blank sheet

    again = tmp_path / "again.png"
    ddpm_run("--from", browser, "--out", again, "-q")            # the shipped model, found by its sha256
    assert again.read_bytes() == python.read_bytes()             # same record, same pixels as ddpm-run's

    atlas = json.loads((tmp_path / "python.json").read_text())
    assert good["atlas"]["frames"] == atlas["frames"]
    assert {**good["atlas"]["meta"], "image": "python.png"} == atlas["meta"]


def test_page_reports_failures_in_one_line(pages):
    _, _, bad_context, no_model = pages
    for result, words in ((bad_context, "unknown context"), (no_model, "missing.onnx")):
        assert result["done"] is True and result["sheetPng"] is None
        assert words in result["error"] and "\n" not in result["error"], result["error"]


def test_page_reproduces_a_ddpm_run_sheet_from_its_record(tmp_path):
    """The reverse: a sheet made by ddpm-run --rng philox, given to the page (?from=), comes back within 2/255;
    a pcg64 sheet is refused in one line."""
    folder = web_page.WEB / "models"          # served with the page, git-ignored
    folder.mkdir(exist_ok=True)
    philox, pcg = folder / "test-from-philox.png", folder / "test-from-pcg64.png"
    try:
        common = ["-n", 6, "--seed", 11, "--context", "animal", "--guidance", 1.5, "--scale", 2, "--padding", 1]
        ddpm_run(*common, "--sampler", "dpmpp-2m", "--steps", 8, "--rng", "philox", "--out", philox, "-q")
        ddpm_run(*common, "--sampler", "ddim", "--steps", 4, "--out", pcg, "-q")
        web_page.vendor()
        with web_page.serve() as url:
            redo, refused = web_page.drive([f"{url}?from=models/{philox.name}&ep=wasm&autorun=1",
                                            f"{url}?from=models/{pcg.name}&ep=wasm&autorun=1"])
        assert redo["error"] is None, redo["error"]
        browser = tmp_path / "browser.png"
        browser.write_bytes(web_page.png_bytes(redo["sheetPng"]))
        a, b = pixels(browser), pixels(philox)
        assert a.shape == b.shape and np.abs(a - b).max() <= 2
        assert {k: v for k, v in read_record(browser).items() if k != "backend"} == \
               {k: v for k, v in read_record(philox).items() if k != "backend"}
        assert refused["sheetPng"] is None and "pcg64 noise" in refused["error"]
    finally:
        philox.unlink(missing_ok=True)
        pcg.unlink(missing_ok=True)
