"""The sprite datasets: the shipped emoji set, the three input formats, and one-line failures."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ddpm_edge.ddpm_ref import dataset as ds
from ddpm_edge.runtime.contract import COURSE_CONTEXT_NAMES
from ddpm_edge.runtime.errors import DdpmEdgeError

SHIPPED = Path(ds.__file__).parent / "data"


@pytest.fixture(scope="module")
def shipped():
    return ds.load_dataset(SHIPPED)


def test_shipped_emoji_set_is_in_the_course_layout(shipped):
    assert shipped.format == "ours"
    assert shipped.images.dtype == np.uint8 and shipped.images.shape[1:] == (16, 16, 3)
    assert shipped.labels.shape == (len(shipped.images), 5)
    assert shipped.class_names == ("face", "person", "animal", "food", "object")
    assert min(shipped.counts().values()) >= 100
    meta = json.loads((SHIPPED / "dataset.json").read_text())
    assert meta["sha256"] == shipped.sha256
    assert meta["counts"] == shipped.counts()
    assert (SHIPPED / "LICENSE.txt").read_text().count("Apache") >= 1
    assert np.load(SHIPPED / "labels.npy").sum(axis=1).tolist() == [1] * len(shipped.images)


@pytest.mark.skipif(not (ds.EMOJI_FONT.is_file() and ds.EMOJI_TEST.is_file()), reason="emoji font or emoji-test.txt absent")
def test_builder_reproduces_the_shipped_set(tmp_path, shipped):
    built = ds.build_emoji_dataset(tmp_path)
    assert built.sha256 == shipped.sha256
    assert (tmp_path / "sprites.npy").read_bytes() == (SHIPPED / "sprites.npy").read_bytes()


def test_selection_drops_skin_tones_hair_flags_and_keycaps():
    chosen = ds.select_emoji(ds.parse_emoji_test()) if ds.EMOJI_TEST.is_file() else pytest.skip("no emoji-test.txt")
    for e, _ in chosen:
        assert not any(c in ds.SKIN_TONES or c in ds.HAIR_STYLES for c in e.codepoints)
        assert e.group != "Flags" and e.subgroup != "keycap"
    assert {k for _, k in chosen} == set(range(5))


def small_arrays(n=12, k=5):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)
    labels = np.eye(k)[np.arange(n) % k]
    return images, labels


def test_course_format_from_folder_and_file(tmp_path):
    images, labels = small_arrays()
    np.save(tmp_path / ds.COURSE_SPRITES, images)
    np.save(tmp_path / ds.COURSE_LABELS, labels)  # the course's float64 one-hot
    for path in (tmp_path, tmp_path / ds.COURSE_SPRITES):
        data = ds.load_dataset(path)
        assert data.format == "course" and data.class_names == COURSE_CONTEXT_NAMES
        np.testing.assert_array_equal(data.images, images)
        np.testing.assert_array_equal(data.labels, labels.astype(np.float32))


def test_png_folder_and_all_formats_hash_alike(tmp_path):
    from PIL import Image

    images, labels = small_arrays(k=2)
    for i, (image, label) in enumerate(zip(images, labels.argmax(1))):
        folder = tmp_path / "png" / ("a_cats", "b_dogs")[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    data = ds.load_dataset(tmp_path / "png")
    assert data.format == "png" and data.class_names == ("a_cats", "b_dogs")
    order = np.argsort(labels.argmax(1), kind="stable")  # the loader reads class by class, files sorted
    np.testing.assert_array_equal(data.images, images[order])
    np.testing.assert_array_equal(data.labels, labels[order])
    ours = tmp_path / "ours"
    ours.mkdir()
    np.save(ours / "sprites.npy", data.images)
    np.save(ours / "labels.npy", data.labels.astype(np.uint8))
    (ours / "dataset.json").write_text(json.dumps({"class_names": list(data.class_names)}))
    assert ds.load_dataset(ours).sha256 == data.sha256


def test_split_is_seeded_and_disjoint():
    train, held = ds.split_indices(100, 0.2, seed=3)
    assert len(held) == 20 and not set(train) & set(held) and len(train) + len(held) == 100
    np.testing.assert_array_equal(held, ds.split_indices(100, 0.2, seed=3)[1])


def bad(tmp_path, name, images, labels):
    folder = tmp_path / name
    folder.mkdir()
    np.save(folder / ds.COURSE_SPRITES, images)
    np.save(folder / ds.COURSE_LABELS, labels)
    return folder


@pytest.mark.parametrize("case, expected", [
    ("missing", "not found"),
    ("not_one_hot", "one-hot"),
    ("wrong_count", "labels must be"),
    ("not_square", "square"),
    ("object_array", "not a readable .npy"),
    ("png_sizes", "one size"),
    ("empty_class", "no .png"),
    ("bad_png", "not a readable PNG"),
    ("no_labels", "labels not found"),
])
def test_bad_inputs_are_one_line_errors(tmp_path, case, expected):
    from PIL import Image

    images, labels = small_arrays()
    path = tmp_path / "nothing"
    if case == "not_one_hot":
        path = bad(tmp_path, case, images, labels * 2)
    elif case == "wrong_count":
        path = bad(tmp_path, case, images, labels[:-1])
    elif case == "not_square":
        path = bad(tmp_path, case, images[:, :, :8], labels)
    elif case == "object_array":
        path = bad(tmp_path, case, np.array([{"a": 1}], dtype=object), labels)
    elif case == "no_labels":
        path = tmp_path / ds.COURSE_SPRITES
        np.save(path, images)
    elif case in ("png_sizes", "empty_class", "bad_png"):
        path = tmp_path / case
        (path / "a").mkdir(parents=True)
        (path / "b").mkdir()
        Image.new("RGB", (16, 16)).save(path / "a" / "0.png")
        if case == "png_sizes":
            Image.new("RGB", (8, 8)).save(path / "b" / "0.png")
        elif case == "bad_png":
            (path / "b" / "0.png").write_bytes(b"not a png")
    with pytest.raises(DdpmEdgeError) as info:
        ds.load_dataset(path)
    message = str(info.value)
    assert expected in message and "\n" not in message
