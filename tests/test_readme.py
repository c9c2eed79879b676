"""The README runs: every ```bash and ```python block is run, in order, in a fresh copy of the committed
tree (`git archive HEAD`), with this venv's scripts first on PATH — except blocks right after a
`<!-- no-test: reason -->` line (GPU-only commands, the test suite itself, multi-minute benchmarks).
Files a reader brings themselves are provided: `model_trained.pth` (a checkpoint in the course's format).
Slow: it installs the package into a fresh venv (the README's first command) and samples for real."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, make_course_checkpoint

README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)\s*$")
NO_TEST = re.compile(r"^<!--\s*no-test:\s*(.+?)\s*-->$")
RUNNABLE = ("bash", "python")


def readme_blocks(text: str) -> list[dict]:
    """[{line, lang, code, skip}] for every fenced block; `skip` is the no-test reason or None."""
    blocks, lines, k = [], text.splitlines(), 0
    while k < len(lines):
        match = FENCE.match(lines[k])
        if not match:
            k += 1
            continue
        start, lang = k, match.group(1)
        end = next(j for j in range(k + 1, len(lines)) if lines[j].startswith("```"))
        before = next((lines[j].strip() for j in range(start - 1, -1, -1) if lines[j].strip()), "")
        marker = NO_TEST.match(before)
        blocks.append({"line": start + 1, "lang": lang, "code": "\n".join(lines[start + 1:end]) + "\n",
                       "skip": marker.group(1) if marker else None})
        k = end + 1
    return blocks


BLOCKS = [b for b in readme_blocks(README.read_text(encoding="utf-8")) if b["lang"] in RUNNABLE]


def test_blocks_are_found_and_markers_give_reasons():
    text = "x\n<!-- no-test: needs a GPU -->\n```bash\nnvidia-smi\n```\n\n```python\nprint(1)\n```\n```\nplain\n```\n"
    found = readme_blocks(text)
    assert [(b["lang"], b["skip"], b["code"]) for b in found] == [
        ("bash", "needs a GPU", "nvidia-smi\n"), ("python", None, "print(1)\n"), ("", None, "plain\n")]
    assert len(BLOCKS) >= 8 and sum(b["skip"] is None for b in BLOCKS) >= 6
    assert all(b["skip"] for b in BLOCKS if "--device cuda" in b["code"] or "cuda_bench" in b["code"])


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The committed tree, as a fresh clone has it, plus the files a reader brings."""
    where = tmp_path_factory.mktemp("readme") / "ddpm-edge"
    where.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    make_course_checkpoint(where / "model_trained.pth")
    return where


@pytest.mark.slow
@pytest.mark.parametrize("block", [b for b in BLOCKS if not b["skip"]], ids=lambda b: f"README-line-{b['line']}")
def test_readme_block_runs(clone, block):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    env.pop("VIRTUAL_ENV", None)
    if block["lang"] == "python":
        script = clone / f"readme_block_{block['line']}.py"
        script.write_text(block["code"], encoding="utf-8")
        command = [sys.executable, str(script)]
    else:
        command = ["bash", "-euo", "pipefail", "-c", block["code"]]
    result = subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, (f"README.md line {block['line']} failed (exit {result.returncode}):\n"
                                    f"{block['code']}\n--- stderr ---\n{result.stderr[-3000:]}")
