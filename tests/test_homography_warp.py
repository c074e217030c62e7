import pytest
import torch

from semshare.ops import HomographyWarp, homography_warp
from semshare.rig import Rig

kornia = pytest.importorskip("kornia")


def random_homography(b, scale=0.1):
    return torch.eye(3).expand(b, 3, 3) + scale * torch.randn(b, 3, 3)


@pytest.mark.parametrize("b, c, hs, ws, hd, wd", [(1, 3, 20, 30, 20, 30), (2, 6, 17, 23, 9, 31), (3, 1, 8, 8, 16, 12)])
def test_equals_kornia_align_corners_true(b, c, hs, ws, hd, wd):
    src, hom = torch.randn(b, c, hs, ws), random_homography(b)
    expected = kornia.geometry.transform.HomographyWarper(hd, wd, align_corners=True)(src, hom)
    torch.testing.assert_close(homography_warp(src, hom, (hd, wd)), expected, rtol=1e-5, atol=1e-5)


def test_equals_kornia_with_the_rig_homographies():
    """In float64, where float32 rounding of the two implementations' different operation orders vanishes."""
    hom = Rig.default().homographies()
    src = torch.randn(1, 6, 76, 120, dtype=torch.float64)
    for key in ("120_from_60", "60_from_120"):
        h = torch.tensor(hom[key], dtype=torch.float64)[None]
        expected = kornia.geometry.transform.HomographyWarper(76, 120, align_corners=True)(src, h)
        torch.testing.assert_close(homography_warp(src, h, (76, 120)), expected, rtol=1e-10, atol=1e-10)


def test_half_pixel_mode_equals_kornia_default():
    src, hom = torch.randn(2, 3, 12, 16), random_homography(2)
    expected = kornia.geometry.transform.HomographyWarper(10, 14, align_corners=False)(src, hom)
    torch.testing.assert_close(homography_warp(src, hom, (10, 14), align_corners=False), expected, rtol=1e-5, atol=1e-5)


def test_identity_is_a_copy_and_broadcasts():
    src = torch.randn(4, 2, 9, 11)
    out = homography_warp(src, torch.eye(3)[None], (9, 11))
    torch.testing.assert_close(out, src, rtol=1e-5, atol=1e-5)


def test_gradcheck():
    src = torch.randn(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    hom = (torch.eye(3, dtype=torch.float64) + 0.05 * torch.randn(3, 3, dtype=torch.float64))[None].requires_grad_()
    assert torch.autograd.gradcheck(lambda s, h: homography_warp(s, h, (4, 7)), (src, hom))


def test_float16_keeps_dtype():
    src, hom = torch.randn(1, 3, 10, 10), random_homography(1)
    out = homography_warp(src.half(), hom, (10, 10))
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), homography_warp(src.half().float(), hom, (10, 10)), rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize(
    "src, hom, size, message",
    [
        (torch.randn(3, 4, 4), torch.eye(3)[None], (4, 4), "src must be"),
        (torch.randn(1, 3, 4, 4), torch.eye(3), (4, 4), r"\(B, 3, 3\)"),
        (torch.randn(1, 3, 4, 4), torch.eye(4)[None], (4, 4), r"\(B, 3, 3\)"),
        (torch.randn(2, 3, 4, 4), torch.eye(3).expand(3, 3, 3), (4, 4), "must be 1 or the image batch"),
        (torch.randn(1, 3, 4, 4), torch.eye(3)[None], (1, 4), "at least"),
    ],
)
def test_rejects_bad_arguments(src, hom, size, message):
    with pytest.raises(ValueError, match=message):
        homography_warp(src, hom, size)


def test_module_buffer_moves_and_is_not_persistent():
    m = HomographyWarp(torch.eye(3), (5, 6))
    assert m.state_dict() == {}
    assert m.src_from_dst.shape == (1, 3, 3)
    m = m.to(torch.float64)  # buffers follow .to()
    src = torch.randn(1, 2, 5, 6)
    torch.testing.assert_close(m(src), src, rtol=1e-5, atol=1e-5)
