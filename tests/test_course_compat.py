"""Course checkpoints load with strict keys; the frozen shortcut reproduces the course's random forward."""
import pickle
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from ddpm_edge.ddpm_ref.checkpoint import infer_config, load_checkpoint
from ddpm_edge.ddpm_ref.model import ContextUnet
from ddpm_edge.runtime.errors import DdpmEdgeError

from conftest import make_course_checkpoint


def course_keys(course_dir):
    lines = (course_dir / "state_dict_keys.txt").read_text().splitlines()
    return {line.split("\t")[0]: tuple(int(v) for v in re.findall(r"\d+", line.split("\t")[1]))
            for line in lines if line and not line.startswith("#")}


def test_module_tree_matches_course_keys(course_dir):
    expected = course_keys(course_dir)
    ours = {k: tuple(v.shape) for k, v in ContextUnet(3, 64, 5, 16).state_dict().items()}
    assert ours == expected
    assert len(ours) == 156 and sum(p.numel() for p in ContextUnet().parameters()) == 1_480_771


def test_course_checkpoint_loads_strictly_and_matches_reference(course_dir):
    ckpt = load_checkpoint(course_dir / "course_format_example.pth", shortcut="seed:0")
    assert ckpt.config.as_dict() == {"in_channels": 3, "n_feat": 64, "n_cfeat": 5, "height": 16}
    assert not ckpt.model.training  # BatchNorm in eval mode
    ref = np.load(course_dir / "course_format_example_ref.npz")
    with torch.no_grad():
        eps = ckpt.model(*(torch.from_numpy(ref[k]) for k in "xtc")).numpy()
    np.testing.assert_allclose(eps, ref["eps_after_manual_seed_0"], atol=1e-5)


@pytest.mark.parametrize("seed", [0, 7, 12345])
def test_seed_policy_equals_course_forward_after_manual_seed(tmp_path, seed):
    path = make_course_checkpoint(tmp_path / "m.pth", seed=3)
    frozen = load_checkpoint(path, shortcut=f"seed:{seed}").model
    course = ContextUnet(3, 16, 5, 16)
    course.load_state_dict(torch.load(path, weights_only=True))  # shortcut policy "course": random per call
    course.eval()
    x, t, c = torch.randn(3, 3, 16, 16), torch.rand(3, 1), torch.rand(3, 5)
    with torch.no_grad():
        torch.manual_seed(seed)
        expected = course(x, t, c)
        actual = frozen(x, t, c)
        torch.manual_seed(seed + 1)
        other = course(x, t, c)
    torch.testing.assert_close(actual, expected, rtol=0, atol=0)
    assert not torch.allclose(actual, other)  # the course forward really is random


def test_zero_policy_drops_shortcut(tmp_path):
    path = make_course_checkpoint(tmp_path / "m.pth")
    zero = load_checkpoint(path, shortcut="zero").model
    seeded = load_checkpoint(path, shortcut="seed:0").model
    assert zero.init_conv.shortcut is None
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        x2 = zero.init_conv.conv2(zero.init_conv.conv1(x))
        torch.testing.assert_close(zero.init_conv(x), x2 / 1.414)
        assert not torch.allclose(zero(x, torch.rand(2, 1)), seeded(x, torch.rand(2, 1)))


def test_course_t_broadcast_and_none_context(tmp_path):
    model = load_checkpoint(make_course_checkpoint(tmp_path / "m.pth")).model
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        broadcast = model(x, torch.tensor([0.3])[:, None, None, None])          # course: [1,1,1,1]
        per_row = model(x, torch.full((4, 1), 0.3), torch.zeros(4, 5))
    torch.testing.assert_close(broadcast, per_row)


@pytest.mark.parametrize("config", [(1, 32, 10, 28), (3, 16, 3, 8), (3, 64, 5, 16)])
def test_architecture_inferred(tmp_path, config):
    path = make_course_checkpoint(tmp_path / "m.pth", *config)
    ckpt = load_checkpoint(path)
    assert tuple(ckpt.config.as_dict().values()) == config
    assert infer_config(torch.load(path, weights_only=True)) == ckpt.config
    assert len(ckpt.class_names) == config[2]


def test_rejects_non_checkpoints(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("hello")
    with pytest.raises(DdpmEdgeError, match="not a readable PyTorch checkpoint"):
        load_checkpoint(text)
    with pytest.raises(DdpmEdgeError, match="not found"):
        load_checkpoint(tmp_path / "missing.pth")


def test_rejects_truncated(tmp_path):
    good = make_course_checkpoint(tmp_path / "m.pth")
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(DdpmEdgeError, match="truncated"):
        load_checkpoint(bad)


class Payload:
    def __reduce__(self):
        import os
        return (os.system, (f"touch {MARKER}",))


MARKER = None


def test_never_unpickles_code(tmp_path):
    global MARKER
    MARKER = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"init_conv.conv1.0.weight": Payload()}, evil)
    with pytest.raises(DdpmEdgeError, match="pickled objects"):
        load_checkpoint(evil)
    assert not MARKER.exists()
    # a raw pickle (not a torch zip) is refused as well
    raw = tmp_path / "raw.pth"
    raw.write_bytes(pickle.dumps(Payload()))
    with pytest.raises(DdpmEdgeError):
        load_checkpoint(raw)
    assert not MARKER.exists()


def test_rejects_other_architectures(tmp_path):
    other = tmp_path / "other.pth"
    torch.save(torch.nn.Linear(3, 4).state_dict(), other)
    with pytest.raises(DdpmEdgeError, match="not a ContextUnet"):
        load_checkpoint(other)
    sd = torch.load(make_course_checkpoint(tmp_path / "m.pth"), weights_only=True)
    del sd["out.3.bias"]
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, other)
    with pytest.raises(DdpmEdgeError, match="does not fit"):
        load_checkpoint(other)
    with pytest.raises(DdpmEdgeError, match="shortcut policy"):
        load_checkpoint(tmp_path / "m.pth", shortcut="sometimes")
