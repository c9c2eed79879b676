"""The quality yardstick: metrics against independent computations (scipy's sqrtm, closed forms, brute
force), the shipped classifier against its recorded held-out accuracy, the verdict, and the benchmark
script run as a user runs it (tiny n)."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ddpm_edge.runtime.errors import DdpmEdgeError
from ddpm_edge.runtime.files import sha256_file
from ddpm_edge.runtime.quality import QualityReport, Yardstick, metrics
from ddpm_edge.runtime.quality.features import SpriteFeatures

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "yardstick.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def ys():
    return Yardstick.load(kid_subsets=5)        # KID's subset average is exercised in the metric tests


def random_spd(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


# -- Fréchet distance --------------------------------------------------------------------------------

def test_frechet_distance_matches_scipy_sqrtm(rng):
    scipy_linalg = pytest.importorskip("scipy.linalg")
    for d in (2, 8, 64):
        mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
        s1, s2 = random_spd(rng, d), random_spd(rng, d)
        covmean = scipy_linalg.sqrtm(s1 @ s2).real
        expected = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1 + s2 - 2 * covmean)
        assert metrics.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8, abs=1e-9)


def test_frechet_distance_closed_form_for_diagonal_gaussians(rng):
    d = 16
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    v1, v2 = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(v1 + v2 - 2 * np.sqrt(v1 * v2))   # = Σ (σ₁ − σ₂)² + ‖Δμ‖²
    assert metrics.frechet_distance(mu1, np.diag(v1), mu2, np.diag(v2)) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_of_identical_and_shifted_sets(rng):
    x = rng.standard_normal((400, 32))
    assert abs(metrics.fd(x, x)) < 1e-8
    shift = rng.standard_normal(32)
    assert metrics.fd(x, x + shift) == pytest.approx(shift @ shift, rel=1e-8)   # same Σ: only ‖Δμ‖² is left
    with pytest.raises(DdpmEdgeError, match="mismatched"):
        metrics.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(DdpmEdgeError, match="non-finite"):
        metrics.fd(np.full((5, 2), np.nan), x[:, :2])


# -- KID ---------------------------------------------------------------------------------------------

def mmd2_unbiased_loops(x, y):
    """MMD²_u with k(a, b) = (a·b/d + 1)³ written out term by term (Bińkowski et al. 2018)."""
    m, d = len(x), x.shape[1]
    k = lambda a, b: (a @ b / d + 1) ** 3
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_kid_is_the_unbiased_mmd_with_the_cubic_kernel(rng):
    x, y = rng.standard_normal((30, 6)), rng.standard_normal((30, 6)) + 0.5
    # one subset of all rows: a permutation of each set, which MMD does not see
    assert metrics.kid(x, y, subsets=1, subset_size=30) == pytest.approx(mmd2_unbiased_loops(x, y), rel=1e-10)


def test_kid_near_zero_for_one_distribution_and_positive_for_two(rng):
    a, b = rng.standard_normal((600, 16)), rng.standard_normal((600, 16))
    same = metrics.kid(a, b, subsets=20, subset_size=300)
    apart = metrics.kid(a, b + 0.5, subsets=20, subset_size=300)
    assert abs(same) < 0.02 and apart > 0.2 and apart > 10 * abs(same)


# -- precision and recall ----------------------------------------------------------------------------

def precision_recall_loops(real, fake, k=3):
    radius = lambda s, i: sorted(np.linalg.norm(s - s[i], axis=1))[k]            # index 0 is the point itself
    r_real = [radius(real, i) for i in range(len(real))]
    r_fake = [radius(fake, i) for i in range(len(fake))]
    precision = np.mean([any(np.linalg.norm(f - real[i]) <= r_real[i] for i in range(len(real))) for f in fake])
    recall = np.mean([any(np.linalg.norm(r - fake[j]) <= r_fake[j] for j in range(len(fake))) for r in real])
    return precision, recall


def circle(rng, n, start=0.0, stop=2 * np.pi):
    angle = rng.uniform(start, stop, n)
    return np.stack([np.cos(angle), np.sin(angle)], axis=1) + 0.01 * rng.standard_normal((n, 2))


def test_precision_recall_on_toy_manifolds(rng):
    real = circle(rng, 400)
    p, r = metrics.precision_recall(real, circle(rng, 400))
    assert p > 0.95 and r > 0.95                                         # the same manifold
    p, r = metrics.precision_recall(real, circle(rng, 400, 0, np.pi))    # half of it, densely
    assert p > 0.95 and 0.4 < r < 0.65
    p, r = metrics.precision_recall(real, circle(rng, 400) + 5.0)        # somewhere else
    assert p == 0 and r == 0
    p, r = metrics.precision_recall(real, np.zeros((400, 2)) + 0.01 * rng.standard_normal((400, 2)))  # collapsed
    assert p == 0 and r == 0


def test_precision_recall_match_brute_force(rng):
    real, fake = rng.standard_normal((60, 3)), rng.standard_normal((50, 3)) * 1.3 + 0.3
    assert metrics.precision_recall(real, fake) == pytest.approx(precision_recall_loops(real, fake))


def test_class_accuracy():
    logits = np.array([[3, 1, 0], [0, 2, 1], [5, 0, 0], [0, 0, 1]], dtype=np.float32)
    assert metrics.class_accuracy(logits, np.array([0, 1, 1, 2])) == 0.75
    with pytest.raises(DdpmEdgeError, match="requested classes"):
        metrics.class_accuracy(logits, np.array([0, 1]))


# -- the classifier and the yardstick ----------------------------------------------------------------

def test_shipped_classifier_reproduces_its_recorded_held_out_accuracy():
    from ddpm_edge.ddpm_ref.dataset import load_dataset, split_indices

    features = SpriteFeatures()
    meta = features.metadata
    data = load_dataset(ROOT / "ddpm_ref" / "data")
    assert meta["dataset_sha256"] == data.sha256 and tuple(meta["class_names"]) == data.class_names
    _, held = split_indices(len(data.images), meta["held_out_fraction"], seed=meta["split_seed"])
    assert len(held) == meta["held_out"]
    logits, feats = features(data.images[held])
    assert logits.shape == (len(held), len(data.class_names)) and feats.shape == (len(held), meta["feature_dim"])
    accuracy = float((logits.argmax(1) == data.class_index()[held]).mean())
    assert accuracy == meta["held_out_accuracy"] and accuracy > 0.6                  # chance is 0.2


def test_report_of_the_real_set_against_itself(ys):
    report = ys.report(ys.real_images, ys.real_index, config="real", seed=0)
    assert abs(report.fd) < 1e-6 and report.precision == 1 and report.recall == 1
    assert report.accuracy > 0.9 and report.n == len(ys.real_images)
    assert set(report.per_class) == set(ys.class_names)
    with pytest.raises(DdpmEdgeError, match="uint8"):
        ys.report(ys.real_images.astype(np.float32), ys.real_index)
    with pytest.raises(DdpmEdgeError, match="requested"):
        ys.report(ys.real_images, ys.real_index[:5])


def test_real_noise_is_small_next_to_a_wrong_distribution(ys, rng):
    noise = ys.real_noise(splits=2)
    assert 0 < noise["fd"]["mean"] < 3 and noise["precision"]["mean"] > 0.7
    blurred = ((ys.real_images.astype(np.float32) + np.roll(ys.real_images, 1, axis=1)) / 2).astype(np.uint8)
    noisy = np.clip(ys.real_images + rng.normal(0, 40, ys.real_images.shape), 0, 255).astype(np.uint8)
    for wrong in (blurred, noisy):
        assert ys.report(wrong, ys.real_index).fd > 3 * noise["fd"]["max"]


def test_runtime_quality_does_not_import_torch():
    code = ("import sys; from ddpm_edge.runtime.quality import Yardstick; Yardstick.load(); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert result.returncode == 0, result.stderr


def report(fd, accuracy, seed=0):
    return QualityReport(fd=fd, kid=0.0, precision=0.8, recall=0.8, accuracy=accuracy, n=500, seed=seed)


def test_verdict_uses_the_reference_mean_and_seed_spread():
    reference = [report(3.0, 0.80), report(3.5, 0.76), report(3.2, 0.78)]      # FD 3.233 + 0.5; acc 0.78 − 0.04
    assert Yardstick.verdict([report(3.7, 0.75)], reference).equal
    assert Yardstick.verdict([report(2.0, 0.95), report(2.2, 0.93)], reference).equal
    worse_fd = Yardstick.verdict([report(3.8, 0.80)], reference)
    assert not worse_fd.equal and worse_fd.reason.startswith("not equal: FD 3.80 > 3.73")
    worse_acc = Yardstick.verdict([report(3.0, 0.73)], reference)
    assert not worse_acc.equal and "accuracy 0.730 < 0.740" in worse_acc.reason
    with pytest.raises(DdpmEdgeError, match="at least 2 seeds"):
        Yardstick.verdict([report(3.0, 0.8)], reference[:1])


def write_reference(path, ys, model_sha, key="ddpm:500", classifier_sha=None):
    reports = [report(3.0, 0.5, 0).to_dict(), report(3.4, 0.55, 1).to_dict()]
    path.write_text(json.dumps({"format": "ddpm-edge-quality-reference/1",
                                "classifier_sha256": classifier_sha or ys.classifier.sha256,
                                "models": {model_sha: {"references": {key: reports}}}}))


def test_reference_is_read_per_model_and_classifier(ys, tmp_path):
    path = tmp_path / "reference.json"
    write_reference(path, ys, "ab" * 32, key="ddpm:500:guidance=2")
    other = Yardstick(ys.classifier, ys.real_images, np.eye(len(ys.class_names))[ys.real_index], path, kid_subsets=5)
    assert [r.fd for r in other.reference("ab" * 32, guidance=2)] == [3.0, 3.4]
    with pytest.raises(DdpmEdgeError, match="no ddpm:500 reference for model cdcdcd"):
        other.reference("cd" * 32)
    write_reference(path, ys, "ab" * 32, classifier_sha="0" * 64)
    with pytest.raises(DdpmEdgeError, match="another classifier"):
        other.reference("ab" * 32)


def test_shipped_reference_exists_for_the_shipped_model(ys):
    reference = ys.reference()
    assert len(reference) >= 3 and all(r.n >= 500 and r.config == "ddpm:500" for r in reference)
    assert len({r.seed for r in reference}) == len(reference)



# -- the benchmark script ----------------------------------------------------------------------------

def load_script():
    spec = importlib.util.spec_from_file_location("yardstick_bench", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # dataclasses look their module up while the script loads
    spec.loader.exec_module(module)
    return module


def test_config_parsing():
    bench = load_script()
    config = bench.parse_config(" DPMPP-2M-SDE:10:precision=BF16:guidance=2.0:eta=0 ")
    assert (config.solver, config.steps, config.guidance) == ("dpmpp-2m-sde", 10, 2.0)
    assert config.name == "dpmpp-2m-sde:10:guidance=2:precision=bf16"          # canonical order, defaults dropped
    assert config.unet_rows == 20
    assert bench.parse_config("ddpm:500:guidance=0").name == "ddpm:500"
    for bad, why in [("ddim", "SOLVER:STEPS"), ("ddim:x", "integer"), ("ddim:0", "at least 1"),
                     ("ddim:5:speed=3", "not one of"), ("ddim:5:guidance=-1", ">= 0"), ("ddim:5:eta=a", "number"),
                     ("ddim:5:guidance=1:guidance=2", "twice")]:
        with pytest.raises(DdpmEdgeError, match=why):
            bench.parse_config(bad)
    assert list(bench.class_balanced(7, 3)) == [0, 0, 0, 1, 1, 2, 2]


def test_benchmark_smoke_run_writes_json_and_table_with_verdicts(ys, tmp_path):
    reference = tmp_path / "reference.json"
    write_reference(reference, ys, sha256_file(ROOT / "weights" / "unet.onnx"))
    out = tmp_path / "ys"
    result = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "ddim:3", "ddim:3:guidance=2",
                             "--reference", reference, "--out", out],
                            capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "[2/2 ddim:3:guidance=2, seed 1 (2/2), n 10] generating" in result.stdout
    data = json.loads(out.with_suffix(".json").read_text())
    assert [row["config"] for row in data["rows"]] == ["ddim:3", "ddim:3:guidance=2"]
    for row in data["rows"]:
        assert [r["seed"] for r in row["reports"]] == [0, 1] and all(r["n"] == 10 for r in row["reports"])
        assert row["against"] == "ddpm:500" and row["verdict"]["reason"]      # the w=2 reference is absent
    assert data["rows"][1]["summary"]["accuracy"]["mean"] > data["rows"][0]["summary"]["accuracy"]["mean"] - 0.5
    table = out.with_suffix(".md").read_text()
    assert "| real vs real" in table and "| ddim:3:guidance=2 | 6 |" in table and "Command: `python" in table
    assert not list((ROOT / "benchmarks" / "cache").glob("*/ddim_3_*"))                  # --smoke caches nothing


def test_benchmark_bad_config_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "ddim:fast", "--out", tmp_path / "ys"],
                            capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=120)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == ["error: config 'ddim:fast': steps must be an integer, got 'fast'"]
    assert list(tmp_path.iterdir()) == []


def test_benchmark_caches_per_seed_and_aggregates_cached_rows(tmp_path):
    common = ["--n", "10", "--kid-subsets", "2", "--noise-splits", "1", "--cache", tmp_path / "cache", "--quiet"]
    run = lambda *args: subprocess.run([sys.executable, str(SCRIPT), *map(str, args), *map(str, common)],
                                       capture_output=True, text=True, env=ENV, cwd=tmp_path, timeout=300)
    first = run("ddim:2", "--seeds", "0,1", "--out", tmp_path / "first")
    assert first.returncode == 0, first.stderr
    assert sorted(p.name for p in (tmp_path / "cache").glob("*/*.npz")) == ["ddim_2_seed0_n10.npz", "ddim_2_seed1_n10.npz"]
    again = run("ddim:2", "ddim:3", "--seeds", "0,1,2", "--cached-only", "--out", tmp_path / "again")
    assert again.returncode == 0, again.stderr
    first, again = (json.loads((tmp_path / f"{name}.json").read_text()) for name in ("first", "again"))
    assert [r["seed"] for r in again["rows"][0]["reports"]] == [0, 1]        # seed 2 was never generated
    assert again["rows"][0]["reports"] == first["rows"][0]["reports"]         # the same sprites, the same figures
    assert again["not_measured"] == ["ddim:3 (0 of 3 seeds cached)"] and len(again["rows"]) == 1
    assert "Not measured (too few seeds generated in time): ddim:3" in (tmp_path / "again.md").read_text()
