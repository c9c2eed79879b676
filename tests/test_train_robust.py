"""ddpm-train and checkpoint loading against careless and hostile inputs (issue 10): a finished resume,
damaged resumable checkpoints, pixels that are not 0–255 integers, checkpoints that inflate or ask for
an absurd architecture."""
import zipfile

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ddpm_edge.ddpm_ref import checkpoint as ck  # noqa: E402
from ddpm_edge.ddpm_ref import dataset as ds  # noqa: E402
from ddpm_edge.ddpm_ref.train import TrainSettings, train  # noqa: E402
from ddpm_edge.runtime.errors import DdpmEdgeError  # noqa: E402
from test_train import TINY, tiny_data  # noqa: E402,F401  (the module fixture)


@pytest.fixture(scope="module")
def done(tiny_data, tmp_path_factory):  # noqa: F811
    path = tmp_path_factory.mktemp("done") / "done.pth"
    torch.set_num_threads(1)
    train(tiny_data, path, TrainSettings(**{**TINY, "epochs": 1}))
    return path


def test_a_finished_resume_still_writes_out(tiny_data, done, tmp_path):  # noqa: F811
    state = train(tiny_data, tmp_path / "new.pth", TrainSettings(**{**TINY, "epochs": 1}), resume=done)
    assert state.epoch == 1 and ck.load_checkpoint(tmp_path / "new.pth").extra["epoch"] == 1


@pytest.mark.parametrize("damage", [
    {"epoch": -3}, {"epoch": 99}, {"step": "x"}, {"optimizer": "x"}, {"rng": torch.zeros(3, dtype=torch.uint8)},
    {"train": {"epochs": "x"}}, {"train": [1]}, {"losses": [float("nan")]},
])
def test_damaged_resumable_checkpoints(tiny_data, done, tmp_path, damage):  # noqa: F811
    data = torch.load(done, weights_only=True)
    torch.save({**data, **damage}, tmp_path / "bad.pth")
    with pytest.raises(DdpmEdgeError, match="damaged"):
        train(tiny_data, tmp_path / "out.pth", TrainSettings(**TINY), resume=tmp_path / "bad.pth")
    assert not (tmp_path / "out.pth").exists()


@pytest.mark.parametrize("images, match", [
    (np.random.default_rng(0).random((4, 16, 16, 3)), "multiply by 255"),
    (np.full((4, 16, 16, 3), np.nan), "NaN"),
    (np.zeros((4, 16, 16, 3), np.complex64), "uint8"),
    (np.full((4, 16, 16, 3), 300.0), "0–255"),
])
def test_pixels_must_be_whole_numbers_0_to_255(images, match):
    with pytest.raises(DdpmEdgeError, match=match):
        ds.check_arrays(images, np.eye(5)[[0, 1, 2, 3]], "data")
    whole = ds.check_arrays(np.full((4, 16, 16, 3), 7.0), np.eye(5)[[0, 1, 2, 3]], "data")[0]
    assert whole.dtype == np.uint8 and (whole == 7).all()


def test_npy_header_cannot_ask_for_more_than_the_file_holds(tmp_path):
    path = tmp_path / "sprites.npy"
    np.save(path, np.zeros((4, 16, 16, 3), np.uint8))
    forged = path.read_bytes().replace(b"'shape': (4, 16, 16, 3)", b"'shape': (9999999, 16, 16, 3)")
    path.write_bytes(forged)
    with pytest.raises(DdpmEdgeError, match="not a readable .npy"):
        ds.read_npy(path)


def test_checkpoint_inflation_is_bounded_before_loading(done, tmp_path):
    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", b"\0" * (64 << 20))          # 64 MB in about 64 KB
    with pytest.raises(DdpmEdgeError, match="unpacked size"):
        ck.load_checkpoint(bomb)
    ck.load_checkpoint(done)                                                 # a real checkpoint passes


def test_absurd_architecture_is_refused_before_allocation(tmp_path):
    state = {"init_conv.conv1.0.weight": torch.zeros(4096, 3, 3, 3),
             "contextembed1.model.0.weight": torch.zeros(8192, 5), "up0.0.weight": torch.zeros(1, 1, 4, 4)}
    torch.save(state, tmp_path / "wide.pth")
    with pytest.raises(DdpmEdgeError, match="n_feat must be an integer from 1 to"):
        ck.load_checkpoint(tmp_path / "wide.pth")
    with pytest.raises(DdpmEdgeError, match="n_feat must be at most"):
        TrainSettings(n_feat=1 << 20)
    with pytest.raises(DdpmEdgeError, match="seed"):
        TrainSettings(seed=1 << 64)
