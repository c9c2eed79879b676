"""The shipped unet.onnx in runtimes nobody here wrote: OpenCV DNN (5.x from this venv, 4.14 in its own
venv with a --fixed-batch export), OpenVINO (f32), ONNX Runtime 1.16 (its own venv: the oldest reading IR 8)
and onnxruntime-node (npm, tests/node). Each must agree with this venv's ONNX Runtime within 1e-4 on the
same inputs. Foreign runtimes run in subprocesses, so a crash (OpenCV's importer segfaulted on the old
GELU form) fails the test instead of killing pytest. Isolated venvs and node_modules are cached under
tests/.cache and tests/node/node_modules (slow the first time: PyPI/npm downloads)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from ddpm_edge.export.onnx_export import example_inputs
from ddpm_edge.runtime.backends.ort import OnnxUnet

from conftest import ROOT

SHIPPED = ROOT / "weights" / "unet.onnx"
CACHE = ROOT / "tests" / ".cache"
NODE_DIR = ROOT / "tests" / "node"
TOLERANCE = 1e-4
N = 3
AGREEMENT: dict[str, float] = {}   # runtime -> max |eps − eps_ort| (printed at the end with -s)


def need(tool: str) -> str:
    """A tool's path; a missing tool fails in CI (no test may skip there) and skips elsewhere."""
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed (CI must run the portability matrix)")
        pytest.skip(f"{tool} is not installed")
    return path


def isolated_venv(name: str, requirements: list[str]) -> Path:
    """tests/.cache/venvs/NAME with exactly `requirements` from PyPI (cached: rebuilt when they change).
    Returns its python."""
    venv = CACHE / "venvs" / name
    python = venv / "bin" / "python"
    stamp = venv / "requirements.txt"
    wanted = "\n".join(requirements) + "\n"
    if not (python.is_file() and stamp.is_file() and stamp.read_text() == wanted):
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
        # pip from this venv installs into the target (no pip bootstrap download needed)
        result = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                                 "--disable-pip-version-check", *requirements],
                                capture_output=True, text=True, timeout=1200)
        if result.returncode:
            shutil.rmtree(venv, ignore_errors=True)
            pytest.fail(f"pip install {' '.join(requirements)} failed: {result.stderr[-2000:]}")
        stamp.write_text(wanted)
    return python


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """Inputs (x, t, c for N rows) saved as .npy and raw float32, and this venv's ONNX Runtime eps."""
    folder = tmp_path_factory.mktemp("portability")
    unet = OnnxUnet(SHIPPED, device="cpu")
    x, t, c = example_inputs(unet.spec, N, seed=11)
    shapes = {}
    for name, array in (("x", x), ("t", t), ("c", c)):
        np.save(folder / f"{name}.npy", array)
        (folder / f"{name}.bin").write_bytes(array.astype("<f4").tobytes())
        shapes[name] = list(array.shape)
    (folder / "inputs.json").write_text(json.dumps(shapes))
    return folder, unet(x, t, c)


def agree(name: str, eps: np.ndarray, reference: np.ndarray) -> None:
    assert eps.shape == reference.shape
    error = float(np.abs(eps - reference).max())
    AGREEMENT[name] = error
    print(f"\n{name}: max |eps - eps_ort| = {error:.2e}")
    assert error <= TOLERANCE, f"{name} differs from ONNX Runtime by {error:.2e}"


def run_python(python: Path | str, script: str, *args, timeout=600) -> subprocess.CompletedProcess:
    result = subprocess.run([str(python), "-c", textwrap.dedent(script), *map(str, args)], capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, f"exit {result.returncode} (negative: killed by a signal): {result.stderr[-2000:]}"
    return result


OPENCV_SCRIPT = """
    import sys, numpy as np, cv2
    model, folder = sys.argv[1], sys.argv[2]
    net = cv2.dnn.readNetFromONNX(model)
    for name in "xtc":
        net.setInput(np.load(f"{folder}/{name}.npy"), name)
    np.save(f"{folder}/eps_opencv.npy", net.forward("eps"))
    print(cv2.__version__)
"""


def test_opencv_dnn(case):
    folder, reference = case
    pytest.importorskip("cv2")
    version = run_python(sys.executable, OPENCV_SCRIPT, SHIPPED, folder).stdout.strip()
    agree(f"OpenCV DNN {version}", np.load(folder / "eps_opencv.npy"), reference)


@pytest.mark.slow
def test_opencv_4_with_fixed_batch(case, tmp_path):
    """OpenCV 4.x's importer needs a fixed batch: `ddpm-export --fixed-batch N`."""
    pytest.importorskip("torch")
    from ddpm_edge.export.onnx_export import export_onnx

    folder, reference = case
    fixed = export_onnx(ROOT / "weights" / "model.pth", tmp_path / "unet_b3.onnx", fixed_batch=N).path
    python = isolated_venv("opencv-4.14", ["opencv-python-headless==4.14.0.94", "numpy<2.3"])
    version = run_python(python, OPENCV_SCRIPT, fixed, folder).stdout.strip()
    assert version.startswith("4.14")
    agree(f"OpenCV DNN {version} (fixed batch {N})", np.load(folder / "eps_opencv.npy"), reference)


def test_openvino_f32(case):
    folder, reference = case
    ov = pytest.importorskip("openvino")
    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(SHIPPED)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled({name: np.load(folder / f"{name}.npy") for name in "xtc"})
    agree(f"OpenVINO {ov.__version__.split('-')[0]} f32", result[compiled.output("eps")], reference)


@pytest.mark.slow
def test_onnxruntime_1_16(case):
    folder, reference = case
    python = isolated_venv("onnxruntime-1.16", ["onnxruntime==1.16.3", "numpy<2"])
    script = """
        import sys, numpy as np, onnxruntime as ort
        model, folder = sys.argv[1], sys.argv[2]
        session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        feeds = {name: np.load(f"{folder}/{name}.npy") for name in "xtc"}
        np.save(f"{folder}/eps_ort116.npy", session.run(["eps"], feeds)[0])
        print(ort.__version__)
    """
    version = run_python(python, script, SHIPPED, folder).stdout.strip()
    assert version == "1.16.3"
    agree(f"ONNX Runtime {version}", np.load(folder / "eps_ort116.npy"), reference)


@pytest.mark.slow
def test_onnxruntime_node(case):
    folder, reference = case
    node = need("node")
    if not (NODE_DIR / "node_modules" / "onnxruntime-node").is_dir():   # .ci/run installs it; do it here too
        npm = need("npm")
        subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True,
                       env={**os.environ, "ONNXRUNTIME_NODE_INSTALL": "skip"}, capture_output=True, timeout=900)
    result = subprocess.run([node, NODE_DIR / "run_unet.mjs", SHIPPED, folder], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["eps"] == list(reference.shape)
    eps = np.frombuffer((folder / "eps.bin").read_bytes(), dtype="<f4").reshape(reference.shape)
    agree(f"onnxruntime-node {out['version']}", eps, reference)
