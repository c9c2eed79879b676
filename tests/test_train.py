"""ddpm-train on CPU with tiny models: the forward process, learning, checkpoints, resume, the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ddpm_edge.ddpm_ref import dataset as ds  # noqa: E402
from ddpm_edge.ddpm_ref.checkpoint import load_checkpoint  # noqa: E402
from ddpm_edge.ddpm_ref.cli import app  # noqa: E402
from ddpm_edge.ddpm_ref.train import (TrainSettings, make_batch, new_state, perturb_input, to_model_range,  # noqa: E402
                                      train, train_step)
from ddpm_edge.runtime.errors import DdpmEdgeError  # noqa: E402
from ddpm_edge.runtime.schedule import Schedule  # noqa: E402

TINY = dict(n_feat=8, batch_size=8, epochs=2)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """24 shipped sprites (about 5 per class) in our format."""
    full = ds.load_dataset(Path(ds.__file__).parent / "data")
    pick = np.concatenate([np.where(full.class_index() == k)[0][:5] for k in range(5)])[:24]
    folder = tmp_path_factory.mktemp("tiny")
    np.save(folder / "sprites.npy", full.images[pick])
    np.save(folder / "labels.npy", full.labels[pick].astype(np.uint8))
    (folder / "dataset.json").write_text(json.dumps({"class_names": list(full.class_names)}))
    return folder


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_forward_process_uses_the_runtime_schedule():
    ab = torch.from_numpy(Schedule().alphas_cumprod.copy())
    x0, eps, i = torch.ones(2, 3, 4, 4), torch.full((2, 3, 4, 4), 2.0), torch.tensor([1, 500])
    correct = perturb_input(x0, eps, i, ab)
    course = perturb_input(x0, eps, i, ab, course_compat=True)
    for n in range(2):
        a = ab[i[n]]
        assert torch.allclose(correct[n], a.sqrt() + (1 - a).sqrt() * 2)
        assert torch.allclose(course[n], a.sqrt() + (1 - a) * 2)
    # unit variance is kept only by the correct process: x0 = 0, eps ~ N(0,1) at i = T
    noise = torch.randn(4000, 1, 1, 1, generator=torch.Generator().manual_seed(0))
    t = torch.full((4000,), 500)
    assert abs(perturb_input(torch.zeros_like(noise), noise, t, ab).std().item() - 1) < 0.05


def test_batch_draws_timesteps_context_drop_and_flips():
    settings = TrainSettings(n_feat=8, context_drop=0.1)
    ab = torch.from_numpy(settings.schedule.alphas_cumprod.copy())
    x0 = torch.linspace(-1, 1, 16).repeat(4000, 3, 16, 1)            # [N,3,16,16], rows vary along W
    c = torch.eye(5)[torch.arange(4000) % 5]
    x_t, t, c_used, eps = make_batch(x0, c, settings, ab, torch.Generator().manual_seed(0))
    i = t[:, 0] * settings.T
    assert t.shape == (4000, 1) and torch.allclose(i, i.round())
    assert i.min() == 1 and i.max() == settings.T
    dropped = (c_used.sum(1) == 0).float().mean().item()
    assert 0.08 < dropped < 0.12
    # recover x0 exactly: either as is or mirrored (horizontal flip only, nothing resampled)
    a = ab[i.round().long()].view(-1, 1, 1, 1)
    x0_back = (x_t - (1 - a).sqrt() * eps) / a.sqrt()
    mirrored = torch.isclose(x0_back, x0.flip(3), atol=1e-3).flatten(1).all(1)
    same = torch.isclose(x0_back, x0, atol=1e-3).flatten(1).all(1)
    assert bool((mirrored | same).all()) and 0.45 < mirrored.float().mean().item() < 0.55


def test_loss_decreases_on_a_small_batch(tiny_data):
    data = ds.load_dataset(tiny_data)
    settings = TrainSettings(n_feat=8, lrate=3e-3, flip=False, context_drop=0.0)
    state = new_state(settings, 5, 16, 3, torch.device("cpu"))
    ab = torch.from_numpy(settings.schedule.alphas_cumprod.copy())
    x0, c = to_model_range(data.images[:16]), torch.from_numpy(data.labels[:16])

    def fixed_loss():  # the same draws each time
        state.model.eval()
        x_t, t, cc, eps = make_batch(x0, c, settings, ab, torch.Generator().manual_seed(5))
        with torch.no_grad():
            loss = torch.nn.functional.mse_loss(state.model(x_t, t, cc), eps).item()
        state.model.train()
        return loss

    before = fixed_loss()
    losses = [train_step(state, x0, c, settings, ab) for _ in range(40)]
    after = fixed_loss()
    assert after < 0.7 * before
    assert np.mean(losses[-10:]) < np.mean(losses[:10])


def test_checkpoint_round_trips(tiny_data, tmp_path):
    settings = TrainSettings(**TINY, seed=3)
    state = train(tiny_data, tmp_path / "c.pth", settings, weights_out=tmp_path / "w.pth")
    full, slim = load_checkpoint(tmp_path / "c.pth"), load_checkpoint(tmp_path / "w.pth")
    for ckpt in (full, slim):
        assert ckpt.shortcut == "learned" and ckpt.class_names == ("face", "person", "animal", "food", "object")
        assert ckpt.config.n_feat == 8 and ckpt.config.n_cfeat == 5 and ckpt.schedule == Schedule()
        assert ckpt.extra["train"] == settings.as_dict()
        assert ckpt.extra["dataset_sha256"] == ds.load_dataset(tiny_data).sha256
        assert ckpt.extra["epoch"] == 2 and ckpt.extra["step"] == 6 and len(ckpt.extra["losses"]) == 2
        reference = state.model.state_dict()
        for key, value in ckpt.model.state_dict().items():
            assert torch.equal(value, reference[key]), key
    assert "optimizer" in full.extra and "rng" in full.extra
    assert "optimizer" not in slim.extra and "rng" not in slim.extra
    assert (tmp_path / "w.pth").stat().st_size < (tmp_path / "c.pth").stat().st_size


def test_resume_continues_where_it_stopped(tiny_data, tmp_path):
    straight = train(tiny_data, tmp_path / "a.pth", TrainSettings(**{**TINY, "epochs": 3}))
    train(tiny_data, tmp_path / "b.pth", TrainSettings(**{**TINY, "epochs": 3}), max_minutes=0.0)  # stops after epoch 1
    assert load_checkpoint(tmp_path / "b.pth").extra["epoch"] == 1
    resumed = train(tiny_data, tmp_path / "b.pth", TrainSettings(**TINY), resume=tmp_path / "b.pth")
    assert resumed.epoch == 3 and resumed.step == straight.step
    assert resumed.losses == pytest.approx(straight.losses, rel=1e-5)
    for key, value in resumed.model.state_dict().items():
        assert torch.allclose(value, straight.model.state_dict()[key], atol=1e-6), key


def test_resume_refuses_weights_only_and_other_data(tiny_data, tmp_path):
    train(tiny_data, tmp_path / "c.pth", TrainSettings(**{**TINY, "epochs": 1}), weights_out=tmp_path / "w.pth")
    with pytest.raises(DdpmEdgeError, match="weights only"):
        train(tiny_data, tmp_path / "d.pth", TrainSettings(**TINY), resume=tmp_path / "w.pth")
    other = tmp_path / "other"
    other.mkdir()
    data = ds.load_dataset(tiny_data)
    np.save(other / "sprites.npy", data.images[:20])
    np.save(other / "labels.npy", data.labels[:20])
    (other / "dataset.json").write_text(json.dumps({"class_names": list(data.class_names)}))
    with pytest.raises(DdpmEdgeError, match="another dataset"):
        train(other, tmp_path / "d.pth", TrainSettings(**TINY), resume=tmp_path / "c.pth")


def test_course_checkpoints_still_load(small_checkpoint):
    ckpt = load_checkpoint(small_checkpoint, shortcut="seed:0")
    assert ckpt.shortcut == "seed:0" and ckpt.config.n_feat == 16


def test_course_and_png_formats_train(tmp_path, tiny_data):
    from PIL import Image

    data = ds.load_dataset(tiny_data)
    np.save(tmp_path / ds.COURSE_SPRITES, data.images)
    np.save(tmp_path / ds.COURSE_LABELS, data.labels.astype(np.float64))
    state = train(tmp_path / ds.COURSE_SPRITES, tmp_path / "c.pth", TrainSettings(**{**TINY, "epochs": 1}))
    assert state.step == 3
    assert load_checkpoint(tmp_path / "c.pth").class_names[0] == "hero"
    for k, (image, label) in enumerate(zip(data.images[:8], data.class_index()[:8])):
        (tmp_path / "png" / data.class_names[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(tmp_path / "png" / data.class_names[label] / f"{k}.png")
    train(tmp_path / "png", tmp_path / "p.pth", TrainSettings(**{**TINY, "epochs": 1}))
    assert load_checkpoint(tmp_path / "p.pth").config.n_cfeat == len({*data.class_index()[:8]})


def run_cli(args):
    from typer.testing import CliRunner

    return CliRunner().invoke(app, [str(a) for a in args])


def test_cli_trains_and_writes(tiny_data, tmp_path):
    result = run_cli(["--data", tiny_data, "--out", tmp_path / "c.pth", "--weights-out", tmp_path / "w.pth",
                      "--epochs", 1, "--n-feat", 8, "--batch-size", 8, "--quiet"])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(tmp_path / "w.pth").extra["step"] == 3


@pytest.mark.parametrize("args, reason", [
    (["--data", "{tmp}/nope"], "dataset not found"),
    (["--n-feat", "12"], "n_feat must be"),
    (["--epochs", "0"], "epochs must be"),
    (["--lrate", "-1"], "learning rate"),
    (["--out", "{tmp}/no/such/dir/c.pth"], "does not exist"),
    (["--resume", "{tmp}/missing.pth"], "checkpoint not found"),
    (["--data", "{tmp}/bad"], "one-hot"),
])
def test_cli_bad_input_is_one_line_no_traceback_no_file(tiny_data, tmp_path, args, reason):
    (tmp_path / "bad").mkdir()
    np.save(tmp_path / "bad" / ds.COURSE_SPRITES, np.zeros((4, 16, 16, 3), np.uint8))
    np.save(tmp_path / "bad" / ds.COURSE_LABELS, np.ones((4, 5)))
    args = ["--data", tiny_data, "--out", tmp_path / "c.pth", "--n-feat", 8, "--epochs", 1] + \
           [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = run_cli(args)
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ddpm-train: error:") and reason in lines[0], result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "c.pth").exists() and not list(tmp_path.glob(".*.part"))


WEIGHTS = Path(__file__).resolve().parents[1] / "weights"


@pytest.mark.skipif(not (WEIGHTS / "model.pth").is_file(), reason="no shipped weights in this checkout")
def test_shipped_weights_are_weights_only_and_describe_themselves():
    ckpt = load_checkpoint(WEIGHTS / "model.pth")
    assert "optimizer" not in ckpt.extra and "rng" not in ckpt.extra
    assert ckpt.shortcut == "learned" and ckpt.config.n_feat == 64 and ckpt.config.n_cfeat == 5
    assert ckpt.class_names == ("face", "person", "animal", "food", "object")
    assert ckpt.extra["dataset_sha256"] == ds.load_dataset(Path(ds.__file__).parent / "data").sha256
    if (WEIGHTS / "unet.onnx").is_file():
        from ddpm_edge.runtime.backends.ort import OnnxUnet

        unet = OnnxUnet(WEIGHTS / "unet.onnx", device="cpu")
        assert unet.spec.context_names == ckpt.class_names and unet.spec.source_sha256 == ckpt.sha256
        assert (WEIGHTS / "unet.onnx").stat().st_size + (WEIGHTS / "model.pth").stat().st_size <= 16 * 2**20
