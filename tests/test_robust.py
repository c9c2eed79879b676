"""Hostile and careless inputs (issue 10): records, metadata, sizes, overwrites, non-finite results,
signals. Each gets one line on stderr, a documented exit code, and leaves the disk as it was."""
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ddpm_edge.runtime import limits
from ddpm_edge.runtime.assets.pngchunks import read_text_chunk
from ddpm_edge.runtime.assets.records import CHUNK_KEY, read_record
from ddpm_edge.runtime.cli import app
from ddpm_edge.runtime.errors import DdpmEdgeError

FAST = ["--sampler", "ddim", "--steps", "3"]


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def itxt(text: str | bytes, key: str = CHUNK_KEY, compressed: bool = False) -> bytes:
    body = text.encode() if isinstance(text, str) else text
    if compressed:
        body = zlib.compress(body)
    return chunk(b"iTXt", key.encode() + b"\0" + bytes([int(compressed), 0]) + b"\0\0" + body)


def png(path: Path, *chunks: bytes, width=16, height=16) -> Path:
    """A PNG from raw chunks: IHDR (RGB 8-bit), the given chunks, a tiny IDAT (not a valid image for
    large sizes: readers must not need the pixels), IEND."""
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    idat = chunk(b"IDAT", zlib.compress(b"\0" * (1 + 3 * min(width, 64))))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + ihdr + b"".join(chunks) + idat + chunk(b"IEND", b""))
    return path


def ddpm_run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def assert_refused(result, match="", code=2):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == code, result.stderr
    assert len(lines) == 1 and lines[0].startswith("ddpm-run: error:") and match in lines[0], result.stderr


@pytest.fixture(scope="module")
def good_record(small_onnx, tmp_path_factory):
    folder = tmp_path_factory.mktemp("record")
    result = ddpm_run("--engine", small_onnx, "-n", "2", *FAST, "--seed", "1", "--out", folder / "s.png", "-q")
    assert result.exit_code == 0, result.output
    return read_record(folder / "s.png")


# -- records are read without pixels ----------------------------------------------------------------

def test_record_of_a_huge_sheet_is_read_without_decoding(tmp_path, good_record):
    """A 40000×40000 sheet (far beyond Pillow's decompression-bomb limit) still gives its record."""
    path = png(tmp_path / "big.png", itxt(json.dumps(good_record)), width=40000, height=40000)
    assert read_record(path) == good_record
    path = png(tmp_path / "z.png", itxt(json.dumps(good_record), compressed=True), width=40000, height=40000)
    assert read_record(path) == good_record


@pytest.mark.parametrize("body, match", [
    (itxt("x" * 10, key="other") + itxt("[]", compressed=False), "unsupported ddpm-edge parameter format"),
    (chunk(b"iTXt", CHUNK_KEY.encode() + b"\0\1\0\0\0" + b"not zlib"), "damaged"),
    (chunk(b"iTXt", CHUNK_KEY.encode() + b"\0\1\0\0\0" + zlib.compress(b"{" * (limits.MAX_TEXT_CHUNK + 10))),
     "inflates beyond"),
    (itxt("[" * 100000 + "]" * 100000), "nest deeper"),
    (itxt(b"\xff\xfe{}"), "not valid text"),
    (itxt("{not json"), "not valid JSON"),
])
def test_malformed_record_chunks(tmp_path, body, match):
    with pytest.raises(DdpmEdgeError, match=match):
        read_record(png(tmp_path / "bad.png", body))


def test_damaged_png_structure(tmp_path, good_record):
    good = png(tmp_path / "good.png", itxt(json.dumps(good_record))).read_bytes()
    start = good.index(b"iTXt")
    flipped = bytearray(good)
    flipped[start + 20] ^= 1
    (tmp_path / "crc.png").write_bytes(bytes(flipped))
    with pytest.raises(DdpmEdgeError, match="CRC"):
        read_record(tmp_path / "crc.png")
    (tmp_path / "cut.png").write_bytes(good[:start + 30])
    with pytest.raises(DdpmEdgeError, match="truncated"):
        read_record(tmp_path / "cut.png")
    huge = good[:start - 4] + struct.pack(">I", limits.MAX_TEXT_CHUNK + 1) + good[start:]
    (tmp_path / "huge.png").write_bytes(huge)
    with pytest.raises(DdpmEdgeError, match="above the limit"):
        read_record(tmp_path / "huge.png")
    assert read_text_chunk(png(tmp_path / "none.png"), CHUNK_KEY) is None


BAD_FIELDS = [
    {"context": [1, "a", 0, 0, 0]}, {"context": [[1, 0], [0]]}, {"context": [[[1]]]}, {"context": {"a": 1}},
    {"context": 7}, {"background": 3}, {"background": ["white"]}, {"seed": 1 << 64}, {"seed": -1},
    {"n": 10 ** 9}, {"n": "16"}, {"n": 2.5}, {"guidance": 1e39}, {"guidance": "x"}, {"steps": 10 ** 12},
    {"sampler": None}, {"tolerance": 1000}, {"scale": 64, "padding": 1024, "n": 4096}, {"cols": -1},
    {"model_sha256": 5}, {"context": [1e39, 0, 0, 0, 0]}, {"n": 16000, "scale": 64},
]


@pytest.mark.parametrize("change", BAD_FIELDS, ids=[json.dumps(c)[:40] for c in BAD_FIELDS])
def test_malformed_record_fields_are_bad_input(tmp_path, small_onnx, good_record, change):
    source = png(tmp_path / "in.png", itxt(json.dumps({**good_record, **change})))
    before = sorted(tmp_path.iterdir())
    result = ddpm_run("--from", source, "--engine", small_onnx, "--out", tmp_path / "out.png", "-q")
    assert_refused(result)
    assert sorted(tmp_path.iterdir()) == before


# -- sizes from metadata and models ----------------------------------------------------------------

@pytest.mark.parametrize("meta, match", [
    ({"T": "1000000000"}, "T must be from 1 to"), ({"T": "1e9"}, "malformed"), ({"n_cfeat": "100000000"}, "n_cfeat"),
    ({"height": "100000"}, "height"), ({"channels": "2"}, "channels"), ({"beta2": "nan"}, "beta"),
    ({"context_names": "[[[[\"a\"]]]]"}, "nested"), ({"context_names": "{\"a\": 1}"}, "list of strings"),
    ({"junk": "x" * (limits.MAX_METADATA_BYTES + 1)}, "metadata size"),
])
def test_hostile_metadata(meta, match):
    from ddpm_edge.runtime.contract import ModelSpec
    with pytest.raises(DdpmEdgeError, match=match):
        ModelSpec.from_metadata(meta)


def test_schedule_and_seed_limits():
    from ddpm_edge.runtime.params import GenerationParams
    from ddpm_edge.runtime.schedule import Schedule
    with pytest.raises(DdpmEdgeError, match="schedule T"):
        Schedule(limits.MAX_T + 1)
    assert GenerationParams(seed=limits.MAX_SEED).seed == limits.MAX_SEED
    with pytest.raises(DdpmEdgeError, match="seed"):
        GenerationParams(seed=limits.MAX_SEED + 1)


def test_api_type_errors_are_ddpm_edge_errors(small_onnx):
    from ddpm_edge.runtime.api import SpriteGenerator
    gen = SpriteGenerator.load(small_onnx)
    for context in (["a", "b", "c", "d", "e"], [[1, 0, 0, 0, 0], [1, 0]], np.zeros((2, 2, 5)), object(), {"x": 1}):
        with pytest.raises(DdpmEdgeError):
            gen.generate(2, context=context, sampler="ddim", steps=2, seed=1)
    for background in (3, ["white"], b"white"):
        with pytest.raises(DdpmEdgeError):
            gen.generate(2, background=background, sampler="ddim", steps=2, seed=1)


# -- models built on the fly: non-finite results, broken contracts ---------------------------------

def tiny_unet(path: Path, body: str = "identity", t_shape=("N", 1), eps_shape=("N", 3, 16, 16),
              eps_type=None, meta: dict | None = None, batch="N") -> Path:
    """A one-node UNet honouring (or, as asked, breaking) the I/O contract."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper
    float_t = TensorProto.FLOAT
    inputs = [helper.make_tensor_value_info("x", float_t, [batch, 3, 16, 16]),
              helper.make_tensor_value_info("t", float_t, list(t_shape)),
              helper.make_tensor_value_info("c", float_t, [batch, 5])]
    nodes, inits = [], []
    if body == "identity":
        nodes.append(helper.make_node("Identity", ["x"], ["eps"]))
    elif body == "nan":
        inits.append(helper.make_tensor("k", float_t, [1], [float("nan")]))
        nodes.append(helper.make_node("Mul", ["x", "k"], ["eps"]))
    elif body == "huge":     # finite weights whose output overflows float32 after a few steps
        inits.append(helper.make_tensor("k", float_t, [1], [3e38]))
        nodes.append(helper.make_node("Mul", ["x", "k"], ["eps"]))
    elif body == "narrow":   # eps [N,3,16,1] at run time, declared dynamic
        nodes.append(helper.make_node("ReduceMean", ["x"], ["eps"], axes=[3], keepdims=1))
    elif body == "double":
        nodes.append(helper.make_node("Cast", ["x"], ["eps"], to=TensorProto.DOUBLE))
    out = helper.make_tensor_value_info("eps", eps_type or (TensorProto.DOUBLE if body == "double" else float_t),
                                        list(eps_shape))
    graph = helper.make_graph(nodes, "tiny", inputs, [out], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (meta or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("body, args", [("nan", []), ("huge", []), ("huge", ["--guidance", "3"])])
def test_non_finite_samples_exit_4_and_write_nothing(tmp_path, body, args):
    model = tiny_unet(tmp_path / "m.onnx", body)
    result = ddpm_run("--engine", model, "-n", "2", *FAST, "--seed", "1", "--out", tmp_path / "s.png",
                      "--gif", tmp_path / "a.gif", "--each", tmp_path / "each", *args)
    assert_refused(result, "non-finite", code=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_guidance_infinite_in_float32_is_bad_input(tmp_path):
    model = tiny_unet(tmp_path / "m.onnx")
    assert_refused(ddpm_run("--engine", model, "--guidance", "1e39", "--out", tmp_path / "s.png"), "guidance")
    assert_refused(ddpm_run("--engine", model, "--seed", str(1 << 64), "--out", tmp_path / "s.png"), "seed")


@pytest.mark.parametrize("kwargs, match", [
    (dict(t_shape=("N",)), "t is declared"),
    (dict(body="double"), "tensor(double)"), (dict(body="narrow", eps_shape=("N", "C", "H", "W")), "eps is declared"),
    (dict(batch=1_000_000), "fixed batch"), (dict(meta={"T": "1000000000"}), "T must be"),
    (dict(meta={"beta1": "1e-12", "beta2": "1e-12"}), "underflows"),
    (dict(meta={"T": "10000", "beta1": "0.5", "beta2": "0.9"}), "underflows"),
    (dict(meta={"height": "8"}), "declared"),
])
def test_models_contradicting_the_contract_are_bad_input(tmp_path, kwargs, match):
    model = tiny_unet(tmp_path / "m.onnx", **kwargs)
    result = ddpm_run("--engine", model, "-n", "2", *FAST, "--seed", "1", "--out", tmp_path / "s.png")
    assert_refused(result, match)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]


def test_backend_output_breaking_the_contract():
    from ddpm_edge.runtime.contract import ModelSpec, run_chunked
    spec = ModelSpec()
    x, t, c = np.zeros((3, 3, 16, 16), np.float32), np.zeros((3, 1), np.float32), np.zeros((3, 5), np.float32)
    for bad in (lambda x, t, c: x[..., :8], lambda x, t, c: x.astype(np.float64), lambda x, t, c: None):
        with pytest.raises(DdpmEdgeError, match="I/O contract"):
            run_chunked(spec, bad, x, t, c)
    with pytest.raises(DdpmEdgeError, match="fixed/minimum batch"):
        run_chunked(spec, lambda x, t, c: x, x, t, c, min_batch=limits.MAX_FIXED_BATCH + 1)


# -- all or none; inputs never overwritten ----------------------------------------------------------

def test_sprite_file_equal_to_the_sheet_is_refused(tmp_path):
    model = tiny_unet(tmp_path / "m.onnx")
    each = tmp_path / "each"
    result = ddpm_run("--engine", model, "-n", "2", *FAST, "--seed", "1", "--out", each / "sprite_000.png",
                      "--each", each)
    assert result.exit_code == 2   # the sheet's folder does not exist yet, or it is a sprite's path
    each.mkdir()
    result = ddpm_run("--engine", model, "-n", "2", *FAST, "--seed", "1", "--out", each / "sprite_000.png",
                      "--each", each)
    assert_refused(result, "same file")
    assert list(each.iterdir()) == []
    result = ddpm_run("--engine", model, "-n", "2", *FAST, "--out", tmp_path / "a.png", "--gif", tmp_path / "a.png")
    assert_refused(result, "different files")


def test_inputs_are_never_overwritten(tmp_path):
    model = tiny_unet(tmp_path / "m.onnx")
    assert ddpm_run("--engine", model, "-n", "2", *FAST, "--seed", "1", "--out", tmp_path / "s.png", "-q").exit_code == 0
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert_refused(ddpm_run("--from", tmp_path / "s.png", "--engine", model, "--out", tmp_path / "s.png"), "--from")
    assert_refused(ddpm_run("--from", tmp_path / "s.png", "--engine", model, "--out", tmp_path / "x.png",
                            "--gif", tmp_path / "s.png"), "--from")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


@pytest.mark.parametrize("args", [["--weights", "m.pth", "--out", "m.pth"],
                                  ["--onnx", "u.onnx", "--gpu-loop", "u.onnx"],
                                  ["--onnx", "u.onnx", "--fp16", "--out", "h.onnx", "--gpu-loop", "h.onnx"]])
def test_export_never_overwrites_its_input(tmp_path, monkeypatch, args):
    pytest.importorskip("torch")
    from ddpm_edge.export.cli import app as export_app
    monkeypatch.chdir(tmp_path)
    for name in ("m.pth", "u.onnx"):
        (tmp_path / name).write_bytes(b"original")
    result = CliRunner().invoke(export_app, args)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2 and len(lines) == 1 and "ddpm-export: error:" in lines[0], result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pth", "u.onnx"]
    assert (tmp_path / "m.pth").read_bytes() == (tmp_path / "u.onnx").read_bytes() == b"original"


def test_a_failed_rename_midway_restores_everything(tmp_path, monkeypatch):
    """The third rename fails: the two outputs already in place are undone, a replaced file restored."""
    import ddpm_edge.runtime.files as files
    model = tiny_unet(tmp_path / "m.onnx")
    (tmp_path / "s.png").write_bytes(b"old sheet")
    real, calls = files.os.replace, []

    def flaky(src, dst):
        calls.append(dst)
        if str(dst).endswith(".png") and sum(str(c).endswith(".png") for c in calls) == 3:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(files.os, "replace", flaky)
    result = ddpm_run("--engine", model, "-n", "3", *FAST, "--seed", "1", "--out", tmp_path / "s.png",
                      "--atlas", "--each", tmp_path / "each")
    assert_refused(result, "No space left")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "s.png"]
    assert (tmp_path / "s.png").read_bytes() == b"old sheet"


def test_longest_legal_output_name(tmp_path):
    model = tiny_unet(tmp_path / "m.onnx")
    name = "a" * 240 + ".png"                    # 244 bytes; the atlas beside it has 245
    result = ddpm_run("--engine", model, "-n", "2", *FAST, "--out", tmp_path / name, "--atlas", "-q")
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["m.onnx", name, "a" * 240 + ".json"])


def test_console_script_stderr_is_one_line(tmp_path):
    """Through the real console script: NumPy's RuntimeWarnings (overflow in the steps) and ONNX Runtime's
    log lines (an unused initializer) do not join the one-line reason."""
    import subprocess
    from conftest import script
    onnx = pytest.importorskip("onnx")
    model = tiny_unet(tmp_path / "m.onnx", "huge")
    proto = onnx.load(model)
    proto.graph.initializer.append(onnx.helper.make_tensor("unused", onnx.TensorProto.FLOAT, [1], [1.0]))
    onnx.save(proto, model)
    result = subprocess.run([script("ddpm-run"), "--engine", str(model), "-n", "2", *FAST, "--out", "s.png"],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 4
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("ddpm-run: error:"), result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
