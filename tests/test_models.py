import re

import pytest
import torch

from conftest import SMALL, camera_pair, project_data, realistic
from semshare.errors import CheckpointError, SemshareError
from semshare.models import create_model, list_models, load_checkpoint

VARIANTS = ["mobilenetv3", "mobilenetv3_loosely", "mobilenetv3_tightly"]
PARAMS = {"mobilenetv3": 5_323_078, "mobilenetv3_loosely": 10_004_176, "mobilenetv3_tightly": 7_047_400}


def authors_keys(variant):
    lines = project_data(f"state_dict_keys_{variant}.txt").read_text().splitlines()
    rows = [ln.split("\t") for ln in lines if ln and not ln.startswith("#")]
    return {k: (tuple(int(d) for d in re.findall(r"\d+", shape)), dtype) for k, shape, dtype in rows}


def authors_state_dict(variant, seed=0):
    """A state dict with exactly the authors' keys, shapes and dtypes and random values.

    Backbone, head and fusion: N(0, 0.1) weights, BN gamma and variance U(0.5, 1.5), N(0, 0.1) BN shifts. The PWC-Net (no BN) keeps
    PyTorch's default initialisation: N(0, 0.1) there compounds, level after level, into correlations of
    1e8 and flows of 1e15 pixels (loosely reads 0..255 images), which no trained network produces and which
    makes every sampling grid fall outside the image.
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    default = create_model(variant).state_dict()
    sd = {}
    keys = authors_keys(variant)
    for k, (shape, dtype) in keys.items():
        if dtype == "int64":
            sd[k] = torch.tensor(7)
        elif k.startswith("flow_Network."):
            sd[k] = default[k].clone()
        elif k.endswith("running_var") or k.removesuffix(".weight") + ".running_var" in keys:  # BN var, gamma
            sd[k] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[k] = torch.randn(shape, generator=g) * 0.1
    return sd


def test_registry():
    assert list_models() == VARIANTS
    with pytest.raises(SemshareError, match="unknown variant 'resnet'.*mobilenetv3_tightly"):
        create_model("resnet")


@pytest.mark.parametrize("variant", VARIANTS)
def test_keys_shapes_and_order_are_the_authors(variant):
    model = create_model(variant)
    ref = authors_keys(variant)
    sd = model.state_dict()
    assert list(sd) == list(ref)
    assert {k: tuple(v.shape) for k, v in sd.items()} == {k: s for k, (s, _) in ref.items()}
    assert sum(p.numel() for p in model.parameters()) == PARAMS[variant]
    assert not any("h120_from_60" in k or "src_from_dst" in k for k in sd)  # homographies are not persistent


@pytest.mark.parametrize("variant", VARIANTS)
def test_loads_an_authors_state_dict_strictly(variant):
    model = load_checkpoint(create_model(variant), authors_state_dict(variant))
    with torch.no_grad():
        seg120, seg60 = model(*camera_pair(SMALL))
    assert seg120.shape == seg60.shape == (1, 6, *SMALL)
    assert torch.isfinite(seg120).all() and torch.isfinite(seg60).all()
    if variant != "mobilenetv3":
        assert seg120.min() >= 0  # FFM_120 ends in a ReLU


@pytest.mark.parametrize("variant", VARIANTS)
def test_batch_items_are_independent(variant):
    from semshare.export.verify import compare_output

    model = realistic(variant)
    img120, img60 = camera_pair(SMALL)
    x120, x60 = torch.cat([img120, img60.flip(-1)]), torch.cat([img60, img120.flip(-1)])
    with torch.no_grad():
        both = model(x120, x60)
        for i in range(2):
            one = model(x120[i : i + 1], x60[i : i + 1])
            for name, b, o in zip(("seg120", "seg60"), both, one, strict=True):
                # float rounding only: convolution kernels may block a batch of 2 differently from a batch of 1
                r = compare_output(name, b[i : i + 1].numpy(), o.numpy())
                assert r.ok and r.ref_absmax > 1, r.describe()
    assert not torch.allclose(both[0][0], both[0][1])


def test_checkpoint_wrappers(tmp_path):
    sd = authors_state_dict("mobilenetv3_tightly")
    for wrapped in ({"state_dict": sd}, {"model": sd, "epoch": 3}, {f"module.{k}": v for k, v in sd.items()}):
        p = tmp_path / "ckpt.pth"
        torch.save(wrapped, p)
        model = load_checkpoint(create_model("mobilenetv3_tightly"), p)
        torch.testing.assert_close(model.state_dict()["head.project.bias"], sd["head.project.bias"])


def test_checkpoint_of_another_variant_is_refused():
    with pytest.raises(CheckpointError, match=r"does not fit mobilenetv3_tightly: 85 missing .*flow_Network") as err:
        load_checkpoint(create_model("mobilenetv3_tightly"), authors_state_dict("mobilenetv3"))
    assert len(err.value.missing) == 85 and err.value.unexpected == [] and "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match=r"141 unexpected \(e.g. flow_Network"):
        load_checkpoint(create_model("mobilenetv3"), authors_state_dict("mobilenetv3_loosely"))


def test_shape_mismatch_is_listed():
    sd = authors_state_dict("mobilenetv3")
    sd["head.project.weight"] = torch.zeros(19, 128, 1, 1)
    with pytest.raises(CheckpointError, match=r"1 shape mismatches .*head.project.weight: checkpoint \(19, 128, 1, 1\)"):
        load_checkpoint(create_model("mobilenetv3"), sd)


def test_corrupt_and_missing_checkpoints(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a zip, not a pickle")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(create_model("mobilenetv3"), bad)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(create_model("mobilenetv3"), tmp_path / "none.pth")
    torch.save({"epoch": 1}, tmp_path / "nosd.pth")
    with pytest.raises(CheckpointError, match="holds no state dict"):
        load_checkpoint(create_model("mobilenetv3"), tmp_path / "nosd.pth")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_nan_or_inf_in_a_checkpoint_is_refused_naming_the_tensor(tmp_path, bad):
    sd = authors_state_dict("mobilenetv3_tightly")
    sd["FFM_60.bn.running_var"][[3, 7]] = bad
    kind = "2 NaN and 0 Inf" if bad != bad else "0 NaN and 2 Inf"
    model = create_model("mobilenetv3_tightly")
    before = model.state_dict()["FFM_60.bn.running_var"].clone()
    with pytest.raises(CheckpointError, match=rf"^state dict: tensor FFM_60.bn.running_var holds {kind} of 46 values") as err:
        load_checkpoint(model, sd)
    assert "\n" not in str(err.value) and "semshare bug" not in str(err.value)
    torch.testing.assert_close(model.state_dict()["FFM_60.bn.running_var"], before)  # nothing was loaded
    path = tmp_path / "diverged.pth"
    torch.save({"state_dict": sd}, path)
    with pytest.raises(CheckpointError, match=rf"^{path}: tensor FFM_60.bn.running_var holds {kind}"):
        load_checkpoint(create_model("mobilenetv3_tightly"), path)


@pytest.mark.parametrize("variant", VARIANTS)
def test_inputs_that_are_too_small_or_mismatched(variant):
    model = create_model(variant)
    with pytest.raises(SemshareError, match="too small.*>= 784"):
        model(torch.zeros(1, 3, 512, 1024), torch.zeros(1, 3, 512, 1024))
    with pytest.raises(SemshareError, match="same shape"):
        model(torch.zeros(1, 3, 800, 800), torch.zeros(1, 3, 800, 832))
    with pytest.raises(SemshareError, match=r"\(B, 3, H, W\)"):
        model(torch.zeros(1, 1, 800, 800), torch.zeros(1, 1, 800, 800))


def test_sizes_follow_the_authors_at_the_default_input():
    tight = create_model("mobilenetv3_tightly")
    assert tight.warp_sizes(1216, 1920) == {
        "warp_1_16": (76, 120), "warp_1_8": (151, 240), "warp_1_4": (303, 480),
        "warp_2_5": (486, 768), "warp_2_5_60_120": (486, 768),
    }
    assert tight.flow_Network.pyramid_sizes(486, 768) == [(32, 48), (64, 96), (128, 192)]
    loose = create_model("mobilenetv3_loosely")
    assert loose.scale_size(1216, 1920) == (486, 768)
    assert loose.homography_frame(1216, 1920) == (1920.0, 1215.0)


def test_homography_inputs_override_the_rig():
    from semshare.export.verify import compare_output

    sd = {k: v.clone() for k, v in realistic("mobilenetv3_tightly").state_dict().items()}
    for k in sd:  # zero flow: the homographies alone decide where the 120 logits land
        if ".convs.5." in k:
            sd[k] = torch.zeros_like(sd[k])
    model = load_checkpoint(create_model("mobilenetv3_tightly", input_size=SMALL), sd).eval()
    x120, x60 = camera_pair(SMALL)
    with torch.no_grad():
        base = model(x120, x60)
        same = model(x120, x60, model.h120_from_60, model.h60_from_120)
        shift = torch.tensor([[[1.0, 0.0, 1.5], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])  # samples mostly outside
        other = model(x120, x60, shift, shift)
    torch.testing.assert_close(base, same, rtol=0, atol=0)
    moved = compare_output("seg60", base[1].numpy(), other[1].numpy())
    assert not moved.ok and moved.rel_err > 0.01, moved.describe()  # far beyond float noise


def test_buffers_follow_to():
    model = create_model("mobilenetv3_loosely").to(torch.float64)
    assert model.h120_from_60.dtype == torch.float64 and model.warp_120_60.src_from_dst.dtype == torch.float64
