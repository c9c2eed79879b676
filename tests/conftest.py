"""Shared fixtures. Course material from ../shared/course is used when present and skipped otherwise;
every other fixture builds what it needs (small random ContextUnets in the course's format)."""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
# ../shared/course beside the checkout (or beside a folder holding it, e.g. a git worktree)
COURSE = next((p / "shared" / "course" for p in ROOT.parents if (p / "shared" / "course").is_dir()),
              ROOT.parent / "shared" / "course")


def script(name: str) -> str:
    """The console script `name` of the interpreter running the tests (its venv's bin), not whatever
    PATH finds: `python -m pytest` does not put the venv on PATH."""
    path = Path(sys.executable).parent / name
    if not path.is_file():
        pytest.fail(f"{name} is not installed beside {sys.executable} (pip install -e . first)")
    return str(path)


# In CI (env CI set) a skip is a test that did not run: only the hardware ones may skip.
CI_MAY_SKIP = re.compile(r"\b(GPU|CUDA|TensorRT|NVIDIA)\b", re.IGNORECASE)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not os.environ.get("CI") or not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if not CI_MAY_SKIP.search(reason):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where only GPU/CUDA/TensorRT tests may skip: {reason}"


@pytest.fixture(scope="session")
def course_dir() -> Path:
    if not (COURSE / "course_format_example.pth").is_file():
        pytest.skip("../shared/course is absent: course checkpoint tests skipped")
    return COURSE


def make_course_checkpoint(path: Path, in_channels=3, n_feat=16, n_cfeat=5, height=16, seed=0) -> Path:
    """A random ContextUnet saved exactly as the course does: torch.save(model.state_dict(), path),
    with non-trivial BatchNorm statistics so eval mode matters."""
    torch = pytest.importorskip("torch")
    from ddpm_edge.ddpm_ref.model import ContextUnet

    torch.manual_seed(seed)
    model = ContextUnet(in_channels, n_feat, n_cfeat, height)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
            module.num_batches_tracked.fill_(100)
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory) -> Path:
    return make_course_checkpoint(tmp_path_factory.mktemp("ckpt") / "small.pth")


@pytest.fixture(scope="session")
def small_onnx(tmp_path_factory, small_checkpoint) -> Path:
    """The small checkpoint exported (and validated) by the real exporter."""
    from ddpm_edge.export.onnx_export import export_onnx

    out = tmp_path_factory.mktemp("onnx") / "small.onnx"
    export_onnx(small_checkpoint, out)
    return out


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
