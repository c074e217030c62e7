import json

import numpy as np
import pytest

from semshare.errors import SemshareError
from semshare.rig import Rig, normalize_homography

# The matrices of ORIGINAL_ARCHITECTURE.md section 6 (the authors' code, float64).
TIGHTLY_120_60 = [[0.538197403, -0.0017548844, 0.0053267087], [0.0040424563, 0.537510388, -0.0243962283],
                  [-0.0053430444, -0.0033668233, 1.0005379831]]
TIGHTLY_60_120 = [[1.8579124565, 0.0060047446, -0.0097448227], [-0.0135245596, 1.860669635, 0.0454409161],
                  [0.0098760607, 0.0062932438, 0.9995631764]]
LOOSELY_120_60 = [[0.538197403, -0.0017650535, 0.0053165396], [0.0040499494, 0.5375298978, -0.0269232102],
                  [-0.0053430444, -0.003386333, 1.0005184733]]
PIXEL = [[1.86779, 0.0195465, -854.657], [-0.00229551, 1.86696, -494.259], [1.02876e-5, 1.04193e-5, 0.983394]]


def test_default_rig_reproduces_the_authors_matrices():
    rig = Rig.default()
    np.testing.assert_allclose(rig.pixel_60_from_120(), PIXEL, rtol=1e-5)
    h = rig.homographies()
    np.testing.assert_allclose(h["120_from_60"], TIGHTLY_120_60, atol=1e-9)
    np.testing.assert_allclose(h["60_from_120"], TIGHTLY_60_120, atol=1e-9)
    # loosely: the 486x768 tensor with K scaled by 0.4 is the frame 1920 x 1215
    np.testing.assert_allclose(rig.homographies((768 / 0.4, 486 / 0.4))["120_from_60"], LOOSELY_120_60, atol=1e-9)


def test_scale_cancels_in_the_normalised_homography():
    """A feature map at scale s (K rows scaled, frame scaled) has the frame's normalised homography."""
    rig = Rig.default()
    s_h, s_w = 0.125827, 0.125
    scale = np.diag([s_w, s_h, 1.0])
    scaled = scale @ rig.pixel_60_from_120() @ np.linalg.inv(scale)
    np.testing.assert_allclose(normalize_homography(scaled, 1920 * s_w, 1208 * s_h),
                               rig.homographies()["60_from_120"], atol=1e-12)


def test_json_and_yaml_round_trip(tmp_path):
    rig = Rig(euler_xyz=(0.0, 0.02, 0.0), frame_width=1280, frame_height=720)
    p = tmp_path / "rig.json"
    p.write_text(json.dumps(rig.to_dict()))
    assert Rig.from_file(p) == rig
    y = tmp_path / "rig.yaml"
    y.write_text(f"k60: {[list(r) for r in rig.k60]}\nk120: {[list(r) for r in rig.k120]}\n"
                 "euler_xyz: [0.0, 0.02, 0.0]\nframe_width: 1280\nframe_height: 720\n")
    assert Rig.from_file(y) == rig


FULL = Rig.default().to_dict()


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON/YAML"),
        (dict(FULL, k60=[[1, 0], [0, 1]]), "k60 must be a 3x3 camera matrix"),
        (dict(FULL, k60=[[1796.7, 0, 982.1], [0, 1793.9], [0, 0, 1]]), "rows differ in length"),
        (dict(FULL, k120=[["967", 0, 967], [0, 964, 629], [0, 0, 1]]), "numbers only"),
        (dict(FULL, k120=[[967, 0, 967], [0, 964, 629], [0, 0, 0]]), "last row"),
        (dict(FULL, k60=[[5.0, 0, 982], [0, 5.0, 696], [0, 0, 1]]), "focal length fx = 5 px is implausible"),
        (dict(FULL, k60=[[1796, 0, 9820], [0, 1793, 696], [0, 0, 1]]), "principal point"),
        (dict(FULL, euler_xyz=[0, float("nan"), 0]), "non-finite"),
        (dict(FULL, euler_xyz=[0, 1]), "euler_xyz must be three angles"),
        (dict(FULL, euler_xyz=[0, 10, 0]), "degrees given"),
        (dict(FULL, frame_width=0), "frame_width must be an integer"),
        (dict(FULL, frame_width=True), "frame_width must be an integer"),
        ({"euler_xyz": [0, 0, 0]}, "missing k60, k120, frame_width, frame_height"),
        (dict(FULL, focal=3), "unknown keys"),
        ("[1, 2]", "expected a mapping"),
    ],
)
def test_bad_rig_files(tmp_path, content, message):
    p = tmp_path / "rig.json"
    p.write_text(content if isinstance(content, str) else json.dumps(content))
    with pytest.raises(SemshareError, match=message):
        Rig.from_file(p)


def test_missing_rig_file(tmp_path):
    with pytest.raises(SemshareError, match="rig file .*nope.json does not exist"):
        Rig.from_file(tmp_path / "nope.json")
    with pytest.raises(SemshareError, match="is a folder"):
        Rig.from_file(tmp_path)
