"""The portable noise generator (runtime/rng.py): Philox4x32-10 against Random123's known answers, the
uniform/normal specification, stream layout, and "philox" through GenerationParams, the API and ddpm-run."""
import json
import math

import numpy as np
import pytest
from typer.testing import CliRunner

from ddpm_edge.runtime.assets.records import read_record
from ddpm_edge.runtime.cli import app
from ddpm_edge.runtime.errors import DdpmEdgeError
from ddpm_edge.runtime.params import GenerationParams
from ddpm_edge.runtime.rng import PhiloxNoise, box_muller, counters, philox4x32, philox_normal, uniforms
from ddpm_edge.runtime.sampling import DEFAULT_RNG, SeededNoise, make_noise

# Random123 1.14 examples/kat_vectors, "philox4x32 10": counter[4], key[2] → output[4]
KAT = [
    ((0x00000000, 0x00000000, 0x00000000, 0x00000000), (0x00000000, 0x00000000),
     (0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8)),
    ((0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff), (0xffffffff, 0xffffffff),
     (0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd)),
    ((0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344), (0xa4093822, 0x299f31d0),
     (0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1)),
]


@pytest.mark.parametrize("counter, key, expected", KAT)
def test_philox_known_answers(counter, key, expected):
    out = philox4x32(np.array([counter], dtype=np.uint32), key)
    assert [int(v) for v in out[0]] == list(expected)


def test_philox_vectorised_rows_are_independent():
    rows = np.array([kat[0] for kat in KAT[::-1]] * 2, dtype=np.uint32)
    out = philox4x32(rows, KAT[2][1])
    assert [int(v) for v in out[0]] == list(KAT[2][2])           # row 0 is the third KAT's counter and key
    assert np.array_equal(out[:3], out[3:])


def test_counter_layout_and_uniform_spec():
    c = counters(3, (5 << 32) | 7)
    assert c.tolist() == [[0, 0, 7, 5], [1, 0, 7, 5], [2, 0, 7, 5]]
    u = uniforms(np.array([0, 0xFF, 0x100, 0xFFFFFFFF], dtype=np.uint32))
    assert u.dtype == np.float64
    assert u.tolist() == [0.5 / 2**24, 0.5 / 2**24, 1.5 / 2**24, (2**24 - 0.5) / 2**24]   # exact, in (0, 1)
    z = box_muller(np.array([[0.25, 0.125, 0.5, 0.75]]))
    rho0, rho1 = math.sqrt(-2 * math.log(0.25)), math.sqrt(-2 * math.log(0.5))
    expected = [rho0 * math.cos(2 * math.pi * 0.125), rho0 * math.sin(2 * math.pi * 0.125), rho1 * math.cos(2 * math.pi * 0.75),
                rho1 * math.sin(2 * math.pi * 0.75)]
    assert z[0].tolist() == np.array(expected, dtype=np.float32).tolist()


def test_normals_follow_the_blocks_in_order_and_do_not_depend_on_batch_size():
    seed = (3 << 32) | 11
    words = philox4x32(counters(2, 4), (11, 3))
    by_hand = box_muller(uniforms(words)).reshape(-1)
    assert np.array_equal(philox_normal(seed, 4, (7,)), by_hand[:7])
    small, big = philox_normal(9, 1, (2, 3, 4, 4)), philox_normal(9, 1, (5, 3, 4, 4))
    assert np.array_equal(big[:2], small)
    assert not np.array_equal(philox_normal(9, 2, (2, 3, 4, 4)), small)     # streams differ
    assert not np.array_equal(philox_normal(10, 1, (2, 3, 4, 4)), small)    # seeds differ


def test_normals_are_standard_normal():
    z = philox_normal(1, 0, (200_000,)).astype(np.float64)
    assert z.dtype == np.float64 and abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(np.mean(z ** 4) - 3) < 0.1 and np.all(np.isfinite(z))


def test_philox_noise_streams_by_step():
    noise = PhiloxNoise(42)
    shape = (2, 3, 4, 4)
    assert np.array_equal(noise.initial(shape), philox_normal(42, 0, shape))
    assert np.array_equal(noise.step(0, shape), philox_normal(42, 1, shape))
    assert np.array_equal(noise.step(9, shape), philox_normal(42, 10, shape))
    assert noise.initial(shape).dtype == np.float32


def test_make_noise_names():
    assert DEFAULT_RNG in ("pcg64", "philox")           # the lead picks the default; both stay available
    assert isinstance(make_noise("pcg64", 3), SeededNoise)
    assert isinstance(make_noise("philox", 3), PhiloxNoise)
    with pytest.raises(DdpmEdgeError, match="unknown noise generator"):
        make_noise("mt19937", 3)
    with pytest.raises(DdpmEdgeError, match="philox seeds"):
        PhiloxNoise(-1)


def test_params_rng_field_and_old_records():
    assert GenerationParams().rng == DEFAULT_RNG
    assert GenerationParams(rng="PHILOX").rng == "philox"
    with pytest.raises(DdpmEdgeError, match="unknown noise generator"):
        GenerationParams(rng="xorshift")
    old = {k: v for k, v in GenerationParams(seed=3).as_dict().items() if k != "rng"}
    assert GenerationParams.from_record(old).rng == "pcg64"        # records before the field: pcg64


def ddpm_run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output
    return result


def test_ddpm_run_philox_records_and_reproduces(tmp_path):
    sheet, again, pcg = tmp_path / "philox.png", tmp_path / "again.png", tmp_path / "pcg.png"
    common = ["-n", "2", "--sampler", "ddim", "--steps", "4", "--seed", "5", "-q"]
    assert ddpm_run(*common, "--rng", "philox", "--out", sheet).exit_code == 0
    assert read_record(sheet)["rng"] == "philox"
    assert ddpm_run("--from", sheet, "--out", again, "-q").exit_code == 0
    assert again.read_bytes() == sheet.read_bytes()
    assert ddpm_run(*common, "--rng", "pcg64", "--out", pcg).exit_code == 0
    assert read_record(pcg)["rng"] == "pcg64"                         # named in the record
    assert pcg.read_bytes() != sheet.read_bytes()
    bad = ddpm_run(*common, "--rng", "nope", "--out", tmp_path / "bad.png")
    assert bad.exit_code == 2 and not (tmp_path / "bad.png").exists()
