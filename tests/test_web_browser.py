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
from ddpm_edge.runtime.api import render
from ddpm_edge.runtime.assets.outputs import Targets
from ddpm_edge.runtime.cli import app
from ddpm_edge.runtime.files import sha256_file

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import web_page  # noqa: E402

PARAMS = {"n": 16, "seed": 7, "context": "food", "sampler": "ddim", "steps": 25, "guidance": 2}
SDE = {"n": 16, "seed": 3, "context": "face", "sampler": "dpmpp-2m-sde", "steps": 10, "guidance": 2, "spacing": "logsnr",
       "background": "transparent"}


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

    python = tmp_path / "python.png"          # ddpm-run's own function; the browser keys with v1 (recorded)
    render(Targets(sheet=python, atlas=True), **params, rng="philox", keying=record["keying"])
    a, b = pixels(browser), pixels(python)
    assert a.shape == b.shape == (256, 256, 4 if params.get("background") == "transparent" else 3)
    assert np.abs(a - b).max() <= 2
    assert a.std() > 20                                           # sprites, not a blank sheet
    assert good["timings"]["previewFrames"] == good["timings"]["unetCalls"] == params["steps"]   # drawn live

    again = tmp_path / "again.png"
    ddpm_run("--from", browser, "--out", again, "-q")            # the shipped model, found by its sha256
    assert again.read_bytes() == python.read_bytes()             # same record, same pixels as ddpm-run's

    atlas = json.loads((tmp_path / "python.json").read_text())        # frames named python/face_000 …
    stem = good["atlas"]["meta"]["image"].removesuffix(".png")
    assert {name.replace(f"{stem}/", "python/", 1): frame for name, frame in good["atlas"]["frames"].items()} \
        == atlas["frames"]
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
        ddpm_run(*common, "--sampler", "ddim", "--steps", 4, "--rng", "pcg64", "--out", pcg, "-q")
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


def test_web_bench_runs_and_writes_its_table(tmp_path):
    """benchmarks/web_bench.py as a user runs it, shrunk (its numbers are not checked: speed lives in benchmarks/)."""
    import subprocess
    out = tmp_path / "web"
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "web_bench.py"), "--rounds", "1", "--n", "1",
                             "--steps", "2", "--guidance", "0", "--sampler", "ddim", "--out", out],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    table = out.with_suffix(".md").read_text()
    rows = [line.split("|")[1].strip() for line in table.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows == ["chromium wasm 1 thread", "chromium wasm 2 threads", "python ORT 1 thread", "python ORT 2 threads"]
    data = json.loads(out.with_suffix(".json").read_text())
    assert all(len(calls) == 2 for calls in data["calls_ms"].values())     # one call per step, warm-up excluded


def test_page_runs_a_model_the_user_picks(tmp_path):
    """A user's own .onnx (here the tiny record-fixture model) picked in the page's file input: the sheet
    follows ddpm-run --engine on that model within 2/255 and records the model's name and sha256."""
    model = ROOT / "tests" / "data" / "records_v1" / "tiny.onnx"
    params = {"n": 4, "seed": 5, "context": "spell", "sampler": "unipc", "steps": 6, "guidance": 1}
    web_page.vendor()
    with web_page.serve() as url:
        [picked] = web_page.drive([f"{url}?{query(params)}&ep=wasm@@{model}"])
    assert picked["error"] is None, picked["error"]
    browser = tmp_path / "browser.png"
    browser.write_bytes(web_page.png_bytes(picked["sheetPng"]))
    record = read_record(browser)
    assert record["model"] == "tiny.onnx" and record["model_sha256"] == sha256_file(model)
    python = tmp_path / "python.png"
    args = [a for k, v in params.items() for a in ((f"--{k}" if k != "n" else "-n"), v)]
    ddpm_run("--engine", model, *args, "--rng", "philox", "--out", python, "-q")
    a, b = pixels(browser), pixels(python)
    assert a.shape == b.shape and np.abs(a - b).max() <= 2


def test_phaser_loads_the_browser_sheet_and_atlas(pages):
    """The acceptance check: Phaser 3 (this.load.atlas) takes the page's sheet and atlas and cuts every frame
    where the sheet has it (pixels read back through Phaser's texture manager)."""
    good = pages[1]                                   # the transparent SDE sheet: RGBA, alpha must survive
    folder = web_page.WEB / "models"
    folder.mkdir(exist_ok=True)
    image = good["atlas"]["meta"]["image"]
    sheet, atlas = folder / image, folder / image.replace(".png", ".json")
    try:
        sheet.write_bytes(web_page.png_bytes(good["sheetPng"]))
        atlas.write_text(json.dumps(good["atlas"]))
        with web_page.serve() as url:
            [result] = web_page.drive([f"{url}test/browser/phaser.html?sheet=/models/{sheet.name}&atlas=/models/{atlas.name}"])
        assert result["error"] is None, result["error"]
        frames = result["phaser"]["frames"]
        assert set(frames) == set(good["atlas"]["frames"]) and len(frames) == 16
        rgba = np.asarray(Image.open(sheet))
        assert result["phaser"]["source"] == [rgba.shape[1], rgba.shape[0]]
        for name, f in frames.items():
            want = good["atlas"]["frames"][name]["frame"]
            assert (f["x"], f["y"], f["w"], f["h"]) == (want["x"], want["y"], want["w"], want["h"])
            corners = [(0, 0), (f["w"] // 2, f["h"] // 2), (f["w"] - 1, f["h"] - 1)]
            assert f["pixels"] == [rgba[f["y"] + y, f["x"] + x].tolist() for x, y in corners], name
        assert any(p[3] == 0 for f in frames.values() for p in f["pixels"])      # keyed background seen as alpha 0
    finally:
        sheet.unlink(missing_ok=True)
        atlas.unlink(missing_ok=True)


def test_page_works_from_a_plain_static_host():
    """No cross-origin isolation headers (python -m http.server, GitHub Pages): one wasm thread, same page."""
    web_page.vendor()
    with web_page.serve(isolated=False) as url:
        [plain] = web_page.drive([f"{url}?n=2&seed=1&context=food&sampler=unipc&steps=3&guidance=2&autorun=1"])
    assert plain["error"] is None and plain["sheetPng"] and plain["crossOriginIsolated"] is False
    assert plain["timings"]["threads"] == 1 and plain["timings"]["executionProvider"] == "wasm"
