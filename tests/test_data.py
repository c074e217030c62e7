import numpy as np
import pytest
import torch
from PIL import Image

from conftest import shared_data
from semshare.data import (
    PALETTE,
    colorize,
    find_pairs,
    load_label,
    load_pair,
    overlay,
    preprocess,
    synthetic_pair,
)
from semshare.errors import SemshareError


def test_real_pairs_are_found_by_the_authors_naming():
    pairs, problems = find_pairs(shared_data("rig_samples", "pairs"))
    assert [p.key for p in pairs] == ["00001", "02450", "21000"]
    assert problems == []
    img120, img60 = load_pair(pairs[0].path120)
    assert img120.shape == img60.shape == (1, 3, 1216, 1920)
    assert img120.dtype == torch.float32


def test_preprocess_is_bilinear_resize_and_imagenet_normalisation():
    im = Image.fromarray(np.full((4, 6, 3), [255, 0, 128], np.uint8))
    x = preprocess(im, (4, 6))
    np.testing.assert_allclose(x[0, :, 0, 0].numpy(), [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225], rtol=1e-6)
    assert preprocess(im, (8, 12)).shape == (1, 3, 8, 12)


def test_missing_partners_and_unreadable_files(tmp_path):
    Image.new("RGB", (32, 16)).save(tmp_path / "fov120_00001.png")
    Image.new("RGB", (32, 16)).save(tmp_path / "fov60_00001.png")
    Image.new("RGB", (32, 16)).save(tmp_path / "fov120_00002.png")
    Image.new("RGB", (32, 16)).save(tmp_path / "fov60_00003.png")
    pairs, problems = find_pairs(tmp_path)
    assert [p.key for p in pairs] == ["00001"]
    reasons = {p.path.name: p.reason for p in problems}
    assert "no partner fov60_00002" in reasons["fov120_00002.png"]
    assert "no partner fov120_00003" in reasons["fov60_00003.png"]
    (tmp_path / "fov120_00004.jpg").write_bytes(b"garbage")
    (tmp_path / "fov60_00004.jpg").write_bytes(b"garbage")
    with pytest.raises(SemshareError, match="cannot read image .*fov120_00004.jpg"):
        load_pair(tmp_path / "fov120_00004.jpg")
    with pytest.raises(SemshareError, match="does not exist"):
        find_pairs(tmp_path / "nope")


def test_size_mismatch_between_cameras(tmp_path):
    Image.new("RGB", (32, 16)).save(tmp_path / "fov120_7.png")
    Image.new("RGB", (30, 16)).save(tmp_path / "fov60_7.png")
    with pytest.raises(SemshareError, match="is 32x16 but fov60_7.png is 30x16"):
        load_pair(tmp_path / "fov120_7.png")


def test_palette_colouring_and_overlay():
    mask = np.array([[0, 1, 2], [3, 4, 5]])
    rgb = np.asarray(colorize(mask))
    assert (rgb.reshape(-1, 3) == PALETTE).all()
    assert tuple(PALETTE[1]) == (128, 64, 128) and tuple(PALETTE[5]) == (119, 11, 32)
    assert overlay(Image.new("RGB", (30, 20)), mask).size == (3, 2)


def test_labels_hold_class_indices():
    lab = load_label(shared_data("rig_samples", "labels", "fov120_02450.png"), (1216, 1920))
    assert lab.shape == (1216, 1920)
    assert set(np.unique(lab)) <= set(range(6))


def test_synthetic_pair_is_consistent_with_the_rig():
    im120, im60 = synthetic_pair()
    assert im120.size == im60.size == (1920, 1208)
    a60 = np.asarray(im60).astype(float)
    assert a60.std() > 20  # a real scene, not a blank image
    # the 60 view is a ~1.86x zoom onto the centre of the 120 view: their centres agree
    c120 = np.asarray(im120)[604 - 20 : 604 + 20, 960 - 20 : 960 + 20].astype(float).mean()
    c60 = a60[604 - 40 : 604 + 40, 960 - 40 : 960 + 40].mean()
    assert abs(c120 - c60) < 25
