"""CI runs what it claims: console scripts come from the test interpreter's own bin, a skip that is not
about missing GPU hardware fails a CI run, `.ci/run` runs the README's test command, and the
runtime-only install gets exit 3 with the install hint from ddpm-export and ddpm-train."""
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import ROOT, script

SKIPPING = textwrap.dedent("""
    import pytest

    def test_runs():
        assert True

    def test_needs_gpu():
        pytest.skip("no CUDA GPU here")

    def test_needs_tensorrt():
        pytest.skip("TensorRT is not installed")
""")


def run_pytest(tmp_path, body, ci):
    shutil.copy(ROOT / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_probe.py").write_text(body)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)


def test_hardware_skips_pass_in_ci(tmp_path):
    result = run_pytest(tmp_path, SKIPPING, ci=True)
    assert result.returncode == 0, result.stdout
    assert "1 passed, 2 skipped" in result.stdout


@pytest.mark.parametrize("skip", ['pytest.skip("ddpm-run is not on PATH")',
                                  'pytest.importorskip("no_such_module_ddpm")'])
def test_other_skips_fail_in_ci_only(tmp_path, skip):
    body = SKIPPING + f"\ndef test_silently_skipped():\n    {skip}\n"
    assert run_pytest(tmp_path, body, ci=False).returncode == 0
    result = run_pytest(tmp_path, body, ci=True)
    assert result.returncode == 1, result.stdout
    assert "skipped in CI" in result.stdout and "1 failed" in result.stdout


def test_fixture_skip_fails_in_ci(tmp_path):
    body = textwrap.dedent("""
        import pytest

        @pytest.fixture
        def data():
            pytest.skip("course data absent")

        def test_uses(data):
            pass
    """)
    result = run_pytest(tmp_path, body, ci=True)
    assert result.returncode == 1 and "skipped in CI" in result.stdout, result.stdout


def test_script_is_beside_the_interpreter():
    path = Path(script("ddpm-run"))
    assert path.parent == Path(sys.executable).parent and os.access(path, os.X_OK)


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = re.search(r"```bash\n(python3 -m venv .*pytest.*)\n```", readme).group(1)
    lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.strip()]
    assert lines[-1] == command
    assert any(line.startswith("export CI=") for line in lines)


BLOCK_TORCH = textwrap.dedent("""
    import sys
    class BlockTorch:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "onnx", "onnxscript"):
                raise ImportError(name + " is blocked in this test")
    sys.meta_path.insert(0, BlockTorch())
    from ddpm_edge.{module}.cli import main
    sys.argv = {argv!r}
    main()
""")


@pytest.mark.parametrize("module, argv", [
    ("export", ["ddpm-export", "--weights", "m.pth", "--out", "u.onnx"]),
    ("export", ["ddpm-export", "--onnx", "u.onnx", "--fp16", "--out", "h.onnx"]),
    ("ddpm_ref", ["ddpm-train", "--epochs", "1", "--out", "c.pth"]),
])
def test_runtime_only_install_gets_the_install_hint(tmp_path, module, argv):
    result = subprocess.run([sys.executable, "-c", BLOCK_TORCH.format(module=module, argv=argv)],
                            capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'ddpm-edge[export]'" in lines[0], result.stderr
    assert list(tmp_path.iterdir()) == []
