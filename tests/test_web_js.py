"""The JS package (web/): its generated files are up to date with the Python runtime, and its unit tests
(node's test runner, web/test/*.test.js) pass against the golden values the NumPy runtime writes."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WEB = ROOT / "web"
sys.path.insert(0, str(ROOT / "benchmarks"))
from web_page import find_node  # noqa: E402


def node() -> str:
    found = find_node()
    if found is None:
        pytest.fail("node is not installed (.ci/run installs nodejs): the JS tests cannot run")
    return found


def test_generated_contract_and_golden_are_up_to_date():
    result = subprocess.run([sys.executable, str(WEB / "scripts" / "generate.py"), "--check"], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_node_unit_tests_pass():
    files = sorted(str(p.relative_to(WEB)) for p in (WEB / "test").glob("*.test.js"))
    result = subprocess.run([node(), "--test", *files], cwd=WEB, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = dict(line[2:].split(" ", 1) for line in result.stdout.splitlines()
                   if line.startswith("# ") and line[2:].split(" ", 1)[0] in ("tests", "pass", "fail", "skipped"))
    assert int(summary["tests"]) >= 10 and summary["fail"] == "0" and summary["skipped"] == "0", summary


def test_npm_package_version_is_the_runtime_version():
    package = json.loads((WEB / "package.json").read_text())
    contract = json.loads((WEB / "src" / "contract.json").read_text())
    assert package["version"] == contract["version"]
    assert package["exports"]["."]["default"] == "./src/index.js" and (WEB / "types" / "index.d.ts").is_file()
