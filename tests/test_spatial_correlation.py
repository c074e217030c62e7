import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import project_data
from semshare.ops import SpatialCorrelation, spatial_correlation


def naive(x1, x2, p, d=1, normalize=True):
    b, c, h, w = x1.shape
    out = torch.zeros(b, p * p, h, w, dtype=torch.float64)
    for i in range(p):
        for j in range(p):
            dy, dx = (i - p // 2) * d, (j - p // 2) * d
            for y in range(h):
                for x in range(w):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < h and 0 <= xx < w:
                        out[:, i * p + j, y, x] = (x1[:, :, y, x].double() * x2[:, :, yy, xx].double()).sum(1)
    return out / c if normalize else out


def test_equals_the_real_package_outputs():
    ref = torch.load(project_data("spatial_correlation_sampler_reference.pt"), weights_only=False)
    assert len(ref["cases"]) == 3
    for case in ref["cases"]:
        p, b, h, w = case["patch_size"], case["B"], case["H"], case["W"]
        expected = case["out"].reshape(b, p * p, h, w)
        got = spatial_correlation(case["in1"], case["in2"], patch_size=p, normalize=False)
        assert got.shape == expected.shape
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item())


@settings(max_examples=15, deadline=None)
@given(
    b=st.integers(1, 2), c=st.integers(1, 5), h=st.integers(1, 7), w=st.integers(1, 7),
    p=st.sampled_from([1, 3, 5]), d=st.integers(1, 2), normalize=st.booleans(),
)
def test_matches_the_formula(b, c, h, w, p, d, normalize):
    x1, x2 = torch.randn(b, c, h, w), torch.randn(b, c, h, w)
    got = spatial_correlation(x1, x2, patch_size=p, dilation_patch=d, normalize=normalize)
    torch.testing.assert_close(got.double(), naive(x1, x2, p, d, normalize), rtol=1e-5, atol=1e-5)


def test_float16_accumulates_in_float32():
    x1, x2 = torch.randn(1, 112, 6, 8), torch.randn(1, 112, 6, 8)
    ref = spatial_correlation(x1.half().float(), x2.half().float())
    got = spatial_correlation(x1.half(), x2.half())
    assert got.dtype == torch.float16
    torch.testing.assert_close(got.float(), ref, rtol=1e-3, atol=1e-3)


def test_gradcheck():
    x1 = torch.randn(1, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn(1, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: spatial_correlation(a, b, patch_size=3), (x1, x2))


def test_batch_is_independent():
    x1, x2 = torch.randn(3, 4, 5, 6), torch.randn(3, 4, 5, 6)
    full = spatial_correlation(x1, x2)
    for i in range(3):
        torch.testing.assert_close(full[i : i + 1], spatial_correlation(x1[i : i + 1], x2[i : i + 1]))


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"patch_size": 8}, "patch_size must be a positive odd int"),
        ({"kernel_size": 3}, "only kernel_size=1"),
        ({"stride": 2}, "only stride=1"),
        ({"dilation_patch": 0}, "dilation_patch must be an int >= 1"),
    ],
)
def test_rejects_unsupported_arguments(kw, message):
    x = torch.randn(1, 2, 3, 3)
    with pytest.raises(ValueError, match=message):
        spatial_correlation(x, x, **kw)
    with pytest.raises(ValueError, match=message):
        SpatialCorrelation(**kw)


def test_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        spatial_correlation(torch.randn(1, 2, 3, 3), torch.randn(1, 2, 3, 4))


def test_module_is_one_call():
    m = SpatialCorrelation(patch_size=5, dilation_patch=2)
    x1, x2 = torch.randn(2, 3, 6, 6), torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(m(x1, x2), spatial_correlation(x1, x2, patch_size=5, dilation_patch=2))
    assert m.attributes() == {"patch_size": 5, "kernel_size": 1, "stride": 1, "dilation_patch": 2, "normalize": 1}
