"""Generated hostile inputs (hypothesis): PNG records, ONNX metadata and graphs built on the fly, CLI
numbers, training arrays. Whatever is generated: one line on stderr, a documented exit code, no
traceback, no leftover or partial file, no non-finite image; and bounded memory for small files.

Examples are bounded (a few dozen per property, no shrinking deadline) so the file runs in about a
minute on a 2-core machine."""
import json
import math
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from typer.testing import CliRunner

from conftest import script
from ddpm_edge.runtime.assets.records import RECORD_FORMAT, read_record
from ddpm_edge.runtime.cli import app
from ddpm_edge.runtime.errors import DdpmEdgeError
from test_robust import itxt, png, tiny_unet

EXIT_CODES = {0, 2, 4}           # success, bad input, non-finite result (README: exit codes)
FUZZ = settings(max_examples=25, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70),
                      st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
json_value = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=12)


class Ran:
    """What `ddpm-run ARGS` did, run in-process through its real entry point (click's usage errors
    included): exit code and stderr."""

    def __init__(self, args):
        import contextlib
        import io
        from ddpm_edge.runtime.cli import main
        err, argv = io.StringIO(), sys.argv
        sys.argv = ["ddpm-run", *map(str, args)]
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                main()
            self.exit_code = 0
        except SystemExit as e:
            self.exit_code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            sys.argv = argv
        self.stderr = self.output = err.getvalue()


def check_outcome(result, folder: Path, expected: set[str]):
    """The run either wrote finite outputs (exit 0) or refused with one line and left `folder` as it was."""
    assert "Traceback" not in result.output
    assert result.exit_code in EXIT_CODES, result.stderr
    names = {p.name for p in folder.iterdir()}
    assert not any(name.startswith(".") or name.endswith(".part") for name in names), names
    if result.exit_code == 0:
        out = folder / "out.png"
        assert out.is_file() and names >= expected
    else:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("ddpm-run: error:"), result.stderr
        assert names == expected, names


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_unet(tmp_path_factory.mktemp("model") / "m.onnx")


@pytest.fixture(scope="module")
def record(model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("rec")
    result = CliRunner().invoke(app, ["--engine", str(model), "-n", "2", "--sampler", "ddim", "--steps", "2",
                                      "--seed", "1", "--out", str(folder / "s.png"), "-q"])
    assert result.exit_code == 0, result.output
    return read_record(folder / "s.png")


FIELDS = ["n", "sampler", "steps", "seed", "context", "guidance", "background", "tolerance", "cols", "scale",
          "padding", "eta", "spacing", "rng", "model_sha256", "format"]
numbers = st.one_of(st.integers(-5, 40), st.integers(-(1 << 66), 1 << 66), st.floats(allow_nan=True))


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(FIELDS), st.one_of(json_value, numbers), min_size=1, max_size=4),
       drop=st.lists(st.sampled_from(FIELDS), max_size=2))
def test_generated_records(tmp_path_factory, model, record, changes, drop):
    folder = tmp_path_factory.mktemp("fuzz")
    data = {k: v for k, v in {**record, **changes}.items() if k not in drop}
    if isinstance(data.get("n"), int) and not isinstance(data.get("n"), bool) and data["n"] > 64:
        data["scale"] = 1                                # keep accepted examples quick
    try:
        text = json.dumps(data)
    except ValueError:
        return
    png(folder / "in.png", itxt(text))
    result = CliRunner().invoke(app, ["--from", str(folder / "in.png"), "--engine", str(model),
                                      "--out", str(folder / "out.png"), "-q"])
    check_outcome(result, folder, {"in.png"} | ({"out.png"} if result.exit_code == 0 else set()))
    if result.exit_code == 0:
        assert read_record(folder / "out.png")["format"].startswith("ddpm-edge-params/")


META_KEYS = ["T", "beta1", "beta2", "channels", "height", "width", "n_cfeat", "context_names", "precision", "format"]
meta_value = st.one_of(st.integers(-3, 20).map(str), st.sampled_from(["1e9", "nan", "inf", "-0", "500", "0.02",
                                                                        "1e-30", "[]", "[\"a\"]", "{}", "", "16"]),
                       st.text(max_size=8), json_value.map(json.dumps))


@FUZZ
@given(meta=st.dictionaries(st.sampled_from(META_KEYS), meta_value, max_size=4),
       t_rank=st.sampled_from([("N", 1), ("N",), ("N", 2), (1, 1)]),
       body=st.sampled_from(["identity", "nan", "huge"]), batch=st.sampled_from(["N", 1, 3, 10 ** 7]))
def test_generated_models(tmp_path_factory, meta, t_rank, body, batch):
    folder = tmp_path_factory.mktemp("fuzzm")
    engine = tiny_unet(folder / "m.onnx", body=body, t_shape=t_rank if t_rank != (1, 1) else (batch, 1),
                       meta=meta, batch=batch)
    result = CliRunner().invoke(app, ["--engine", str(engine), "-n", "2", "--sampler", "ddim", "--steps", "2",
                                      "--seed", "3", "--out", str(folder / "out.png"), "-q"])
    check_outcome(result, folder, {"m.onnx"} | ({"out.png"} if result.exit_code == 0 else set()))
    if body in ("nan", "huge"):
        assert result.exit_code != 0


def cli_number():
    return st.one_of(st.integers(-3, 12), st.sampled_from([0, 1 << 31, 1 << 64, 10 ** 30, -(1 << 63)]),
                     st.floats(allow_nan=True, allow_infinity=True).map(repr), st.sampled_from(["1e39", "x", ""]))


@FUZZ
@given(options=st.dictionaries(st.sampled_from(["-n", "--steps", "--seed", "--guidance", "--scale", "--padding",
                                                "--cols", "--tolerance", "--gif-every", "--gif-ms", "--max-batch",
                                                "--eta"]), cli_number(), min_size=1, max_size=4),
       gif=st.booleans())
def test_generated_cli_numbers(tmp_path_factory, model, options, gif):
    folder = tmp_path_factory.mktemp("fuzzc")
    args = ["--engine", str(model), "--sampler", "ddim", "--out", str(folder / "out.png"), "-q"]
    if gif:
        args += ["--gif", str(folder / "a.gif")]
    for option, value in options.items():
        args += [option, str(value)]
    result = Ran(args)
    check_outcome(result, folder, ({"out.png"} | ({"a.gif"} if gif else set())) if result.exit_code == 0 else set())


@FUZZ
@given(shape=st.lists(st.integers(0, 20), min_size=1, max_size=5),
       dtype=st.sampled_from(["uint8", "int64", "float32", "float64", "complex64", "bool", "int8", "float16"]),
       fill=st.sampled_from(["zeros", "unit", "nan", "neg", "big", "pixels"]),
       labels=st.sampled_from(["onehot", "nan", "two", "ragged", "float"]))
def test_generated_dataset_arrays(shape, dtype, fill, labels):
    from ddpm_edge.ddpm_ref.dataset import check_arrays
    rng = np.random.default_rng(len(shape))
    size = math.prod(shape)
    values = {"zeros": np.zeros(size), "unit": rng.random(size), "nan": np.full(size, np.nan),
              "neg": -np.ones(size), "big": np.full(size, 1e6), "pixels": rng.integers(0, 256, size)}[fill]
    with np.errstate(all="ignore"):
        images = values.astype(dtype).reshape(shape)
    n = shape[0]
    onehot = np.eye(3)[rng.integers(0, 3, n)] if n else np.zeros((0, 3))
    label_array = {"onehot": onehot, "nan": onehot * np.nan, "two": onehot * 2, "ragged": onehot[:, :0],
                   "float": onehot * 0.5}[labels]
    try:
        out_images, out_labels = check_arrays(images, label_array, "fuzz")
    except DdpmEdgeError as e:
        assert "\n" not in str(e)
        return
    assert out_images.dtype == np.uint8 and out_labels.dtype == np.float32
    assert np.array_equal(out_images, images.astype(np.uint8)) and np.isfinite(out_labels).all()
    assert np.array_equal(out_images.astype(np.float64), np.asarray(images, dtype=np.float64))


# -- peak memory for hostile files of at most 1 MB ------------------------------------------------

MEASURE = """
import resource, subprocess, sys
run = subprocess.run(sys.argv[1:], capture_output=True, text=True)
sys.stderr.write(run.stderr)
print(run.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def peak_rss_mib(cmd, cwd) -> tuple[int, int, str]:
    result = subprocess.run([sys.executable, "-c", MEASURE, *map(str, cmd)], capture_output=True, text=True,
                            cwd=cwd, timeout=600)
    code, kib = map(int, result.stdout.split())
    return code, kib // 1024, result.stderr


def hostile_files(folder: Path, record: dict) -> dict[str, Path]:
    import zlib
    from test_robust import chunk
    from ddpm_edge.runtime import limits
    bomb = zlib.compress(b" " * (256 << 20), 9)                      # 256 MB of text in ~250 KB
    files = {
        "pixel bomb": png(folder / "pixels.png", itxt(json.dumps(record)), width=60000, height=60000),
        "text bomb": png(folder / "text.png", chunk(b"iTXt", b"ddpm-edge\0\1\0\0\0" + bomb)),
        "huge layout": png(folder / "layout.png", itxt(json.dumps({**record, "n": limits.MAX_N, "scale": 64,
                                                                   "padding": 1024}))),
        "deep json": png(folder / "deep.png", itxt("[" * 400_000 + "]" * 400_000)),
        "most sprites": png(folder / "most.png", itxt(json.dumps({**record, "n": limits.MAX_N, "scale": 1,
                                                                  "sampler": "ddim", "steps": 1}))),
    }
    assert all(p.stat().st_size <= 1 << 20 for p in files.values())
    return files


def test_peak_memory_of_hostile_small_files(tmp_path, model, record):
    for label, path in hostile_files(tmp_path, record).items():
        code, mib, stderr = peak_rss_mib([script("ddpm-run"), "--from", path, "--engine", model,
                                          "--out", tmp_path / "out.png", "-q"], tmp_path)
        assert code in EXIT_CODES and "Traceback" not in stderr, (label, stderr)
        print(f"peak RSS {label}: {mib} MiB, exit {code}")
        assert mib <= 1024, f"{label}: peak RSS {mib} MiB"
        (tmp_path / "out.png").unlink(missing_ok=True)
