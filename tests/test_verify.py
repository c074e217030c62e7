"""Verification accepts float noise and rejects bugs, proved both ways on realistic weights.

The rule (:class:`semshare.export.verify.Tolerance`): margin-filtered argmax agreement, and max |error| relative
to each output's max |reference|. Float noise that must pass: ONNX Runtime against float32 PyTorch, float32
ONNX Runtime against float64 PyTorch, and logits scaled up to ~200 as a trained checkpoint has them. Bugs that
must fail: a correlation with one displacement dropped, the homography transposed, a warp shifted by one
pixel, a flow sign flipped, a fusion input zeroed (on the PyTorch side with hooks, and two of them in the
exported graph itself through ``export_onnx``). NaN/Inf checkpoints are refused on load.
"""

from __future__ import annotations

import contextlib
import copy
import warnings

import numpy as np
import onnx
import pytest
import torch

from conftest import SMALL, camera_pair, realistic, realistic_checkpoint
from semshare.bench.compare import FP32_TOLERANCE, REDUCED_TOLERANCE, tolerance_for
from semshare.bench.compare import compare as bench_compare
from semshare.errors import CheckpointError, VerificationError
from semshare.export import export_onnx
from semshare.export.graph import plugin_nodes, with_reference_ops
from semshare.export.lowering import DECOMPOSITIONS
from semshare.export.verify import EXPORT_TOLERANCE, Tolerance, compare, compare_output, run_onnxruntime
from semshare.ops import HomographyWarp

H, W = SMALL
RTOL = EXPORT_TOLERANCE.rtol
NAMES = ["seg120", "seg60"]


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _torch(model, inputs):
    with torch.inference_mode():
        return [t.numpy() for t in model(*inputs)]


# --- the rule, on arrays -------------------------------------------------------------------------------------


def _logits(scale: float, shape=(1, 6, 64, 64), seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


@pytest.mark.parametrize("scale", [0.1, 20.0, 1000.0])
def test_rule_scales_with_the_output(scale):
    ref = _logits(scale)
    noise = ref * np.float32(3e-5) * _logits(1.0, seed=1)  # float32 reordering: proportional to the values
    ok = compare_output("x", ref, ref + noise)
    assert ok.ok and ok.rel_err < 1e-4, ok.describe()
    bad = ref.copy()
    bad[0, 2, 5, 7] += 2 * RTOL * np.abs(ref).max()  # one logit off by twice the tolerance
    r = compare_output("x", ref, bad)
    assert not r.ok and not r.error_ok and r.agreement_ok
    assert r.rel_err == pytest.approx(2 * RTOL, rel=1e-3)
    assert f"max |reference| {np.abs(ref).max():.3g}" in r.describe() and "tolerance 5e-04" in r.describe()


def test_agreement_is_judged_where_the_margin_is_clear():
    ref = _logits(5.0, shape=(1, 6, 128, 128))
    agree_only = Tolerance(rtol=np.inf)
    top2 = np.sort(ref, axis=1)[:, -2:]
    margin = (top2[:, 1] - top2[:, 0])[0]
    near_tie = np.argwhere(margin < 1e-3 * (ref.max() - ref.min()))
    clear = np.argwhere(margin > 0.2 * (ref.max() - ref.min()))
    assert len(near_tie) >= 5 and len(clear) >= 20

    def flipped(pixels):
        out = ref.copy()
        for y, x in pixels:
            order = np.argsort(ref[0, :, y, x])
            out[0, order[-1], y, x], out[0, order[-2], y, x] = ref[0, order[-2], y, x], ref[0, order[-1], y, x]
        return out

    ties = compare_output("x", ref, flipped(near_tie), agree_only)
    assert ties.ok and ties.margin_agreement == 1.0 and ties.argmax_agreement < 1.0
    flips = compare_output("x", ref, flipped(clear[:20]), agree_only)
    assert not flips.ok and flips.margin_agreement < 0.9999
    assert "argmax agreement" in flips.describe() and "needs >= 99.99%" in flips.describe()


def test_nan_inf_zeros_and_shapes_fail():
    ref = _logits(1.0)
    assert not compare(NAMES[:1], [ref], [ref * np.nan], "t").ok
    assert not compare(NAMES[:1], [ref], [np.full_like(ref, np.inf)], "t").ok
    zero = compare(NAMES[:1], [ref], [np.zeros_like(ref)], "t")
    assert not zero.ok and "FAIL" in zero.table() and zero.outputs[0].rel_err == pytest.approx(1.0)
    shape = compare(NAMES[:1], [ref], [ref[:, :5]], "t")
    assert not shape.ok and "not the reference's" in shape.failures()
    both_zero = compare_output("x", np.zeros((1, 6, 4, 4)), np.zeros((1, 6, 4, 4)))
    assert both_zero.ok and both_zero.margin_pixels == 0


def test_bench_check_uses_the_same_rule():
    ref = _logits(50.0)
    assert tolerance_for("fp32", "fp32") == FP32_TOLERANCE and tolerance_for("fp32", "fp16") == REDUCED_TOLERANCE
    assert tolerance_for("fp32", "fp32", rtol=1e-4).rtol == 1e-4
    tf32 = ref * (1 + np.float32(2e-3) * _logits(1.0, seed=2))  # TF32-sized differences on a GPU backend
    c = bench_compare((ref, ref), (tf32, ref), "gpu", "cpu", tolerance_for("fp32", "fp32"))
    assert c.passed and c.to_dict()["outputs"][0]["rel_error"] == pytest.approx(c.outputs[0].rel_err)
    wrong = ref.copy()
    wrong[:, 2] += 100.0  # class 2 of the 60 camera pushed up: a wrong backend
    c = bench_compare((ref, ref), (ref, wrong), "gpu", "cpu", tolerance_for("fp32", "fp16"))
    assert not c.passed and c.margin_agreement < 0.999 and "MISMATCH" in str(c) and "seg60" in str(c)


# --- float noise passes: realistic weights, exported graphs --------------------------------------------------

#: One export per shared-semantics variant, one target each (test_export covers the other target of each).
EXPORTS = {"mobilenetv3_loosely": "tensorrt", "mobilenetv3_tightly": "onnx"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """variant -> (export result, realistic model, camera-pair inputs, PyTorch and ONNX Runtime outputs on them)."""
    d = tmp_path_factory.mktemp("exports")
    inputs = list(camera_pair(SMALL))
    feeds = {"img120": inputs[0].numpy(), "img60": inputs[1].numpy()}
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for variant, target in EXPORTS.items():
            r = export_onnx(variant, d / f"{variant}.onnx", checkpoint=realistic_checkpoint(variant, d), target=target,
                            height=H, width=W)
            proto = onnx.load(r.model_path)
            assert bool(plugin_nodes(proto)) == (target == "tensorrt")
            model = realistic(variant)
            out[variant] = r, model, inputs, _torch(model, inputs), run_onnxruntime(with_reference_ops(proto), feeds)
    return out


@pytest.mark.parametrize("variant", EXPORTS)
def test_realistic_weights_pass_export_verification(exported, variant):
    r, _, _, ref, ort = exported[variant]
    assert r.comparison.ok, r.comparison.table()
    assert r.manifest["verification"]["ok"] and r.manifest["verification"]["tolerance"]["rtol"] == RTOL
    on_pair = compare(NAMES, ref, ort, "ort")  # the camera pair as well as the synthetic one
    assert on_pair.ok, on_pair.table()
    for o in on_pair.outputs:
        assert o.ref_absmax > 2 and o.rel_err < RTOL / 5 and o.margin_agreement == 1.0


@pytest.mark.slow
def test_float64_reference_passes(exported):
    """The float32 export against the same model in float64: only float32 rounding differs. Loosely: the
    variant with the largest float32 noise."""
    _, model, inputs, _, ort = exported["mobilenetv3_loosely"]
    ref64 = _torch(copy.deepcopy(model).double(), [t.double() for t in inputs])
    c = compare(NAMES, ref64, ort, "ort float32", reference_name="PyTorch float64")
    assert c.ok, c.table()
    assert max(o.rel_err for o in c.outputs) < RTOL / 5


def _large_logits(model, factor: float):
    """A copy whose logits are ``factor`` x larger, as a trained checkpoint's are (~200): the head's last conv,
    the 60 fusion's last conv and the 120 fusion's last BatchNorm scaled."""
    big = copy.deepcopy(model)
    with torch.no_grad():
        layers = [big.head.project] + ([big.FFM_60.conv1, big.FFM_120.residual131.bn] if hasattr(big, "FFM_60") else [])
        for m in layers:
            m.weight *= factor
            m.bias *= factor
    return big


@pytest.mark.slow
def test_large_logits_pass(tmp_path):
    """Logits of ~200 (a x10 final layer): float32 reordering moves them by > 1e-3, the old absolute bound."""
    model = _large_logits(realistic("mobilenetv3_tightly"), 10.0)
    ckpt = tmp_path / "tightly_x10.pth"
    torch.save(model.state_dict(), ckpt)
    r = export_onnx("mobilenetv3_tightly", tmp_path / "m.onnx", checkpoint=ckpt, target="tensorrt", height=H, width=W)
    assert r.comparison.ok, r.comparison.table()
    seg120 = r.comparison.outputs[0]
    assert seg120.ref_absmax > 150 and seg120.rel_err < RTOL / 5


# --- bugs fail: mutations of the reference --------------------------------------------------------------------


def _warps(model):
    return [m for m in model.modules() if isinstance(m, HomographyWarp)]


def _on_homography(change):
    def pre_hook(module, args):
        src, hom, *rest = args
        hom = module.src_from_dst if hom is None else hom
        return (src, change(hom, (rest[0] if rest and rest[0] is not None else module.out_size)), *rest)
    return pre_hook


def _shifted_one_pixel(hom, out_size):
    """Sample one destination pixel to the right: dst x + 2 / (Wd - 1) in normalised coordinates."""
    t = torch.eye(3, dtype=hom.dtype)
    t[0, 2] = 2.0 / (int(out_size[1]) - 1)
    return hom @ t


def _drop_displacement(k):
    def hook(module, args, out):
        out = out.clone()
        out[:, k] = 0
        return out
    return hook


def _zero_input(i):
    def pre_hook(module, args):
        return tuple(torch.zeros_like(a) if j == i else a for j, a in enumerate(args))
    return pre_hook


def _pre(modules, hook):
    return [m.register_forward_pre_hook(hook) for m in modules]


def _post(modules, hook):
    return [m.register_forward_hook(hook) for m in modules]


#: name -> install(model) -> hook handles. A bug in an op is a bug at every call: the hooks go on every module.
MUTATIONS = {
    "correlation without displacement (-4, -4)": lambda m: _post([m.flow_Network.corr], _drop_displacement(0)),
    "homography transposed": lambda m: _pre(_warps(m), _on_homography(lambda h, _: h.transpose(-1, -2))),
    "homography warp shifted by one pixel": lambda m: _pre(_warps(m), _on_homography(_shifted_one_pixel)),
    "flow sign flipped": lambda m: _post([m.flow_Network], lambda _m, _a, flow: -flow),
    # the cross-view input of each fusion: the warped 120 logits (input 0 of loosely's FFM_60, 1 of tightly's)
    "FFM_60 cross-view input zeroed": lambda m: _pre([m.FFM_60], _zero_input(0 if m.variant.endswith("loosely") else 1)),
    "FFM_120 cross-view input zeroed": lambda m: _pre([m.FFM_120], _zero_input(1)),
}


@contextlib.contextmanager
def mutated(model, name):
    handles = MUTATIONS[name](model)
    try:
        yield model
    finally:
        for h in handles:
            h.remove()


#: Every mutation on both variants. The tightly case of the dropped displacement is caught only because the realistic
#: weights give the PWC-Net unit-variance layers (semshare.models.realistic.flow_conv_targets): with its default
#: initialisation the cost volume barely reaches the logits (a 3e-5 change, float noise's size).
CASES = [(v, name) for v in EXPORTS for name in MUTATIONS]


@pytest.mark.parametrize("variant,mutation", CASES)
def test_mutations_fail_verification(exported, variant, mutation):
    _, model, inputs, _, ort = exported[variant]
    with mutated(model, mutation):
        wrong = _torch(model, inputs)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())  # the cached model is clean
    c = compare(NAMES, wrong, ort, "ort", reference_name=f"PyTorch with {mutation}")
    assert not c.ok, c.table()
    worst = max(c.outputs, key=lambda o: o.rel_err)
    assert worst.rel_err > 5 * RTOL, c.table()  # well outside the tolerance, not at its edge
    assert worst.describe() in c.failures() and f"{worst.max_abs:.3g}" in c.failures()


# --- bugs fail: mutations of the exported graph, through export_onnx -----------------------------------------

_ORIGINAL = dict(DECOMPOSITIONS)


def _correlation_dropping(k):
    def emit(e, x1, x2, **attrs):
        out = _ORIGINAL["SpatialCorrelation"](e, x1, x2, **attrs)
        keep = np.ones((1, attrs["patch_size"] ** 2, 1, 1), np.float32)
        keep[0, k] = 0
        return e.op("Mul", out, e.const(keep))
    return emit


def _warp_transposed(e, src, src_from_dst, **attrs):
    return _ORIGINAL["HomographyWarp"](e, src, e.op("Transpose", src_from_dst, perm=[0, 2, 1]), **attrs)


@pytest.mark.slow
@pytest.mark.parametrize("variant,target,op,broken", [
    ("mobilenetv3_loosely", "onnx", "SpatialCorrelation", _correlation_dropping(40)),  # in the traced graph
    ("mobilenetv3_tightly", "tensorrt", "HomographyWarp", _warp_transposed),  # in the plugin's reference ops
])
def test_a_broken_graph_is_refused_with_the_numbers(tmp_path, monkeypatch, variant, target, op, broken):
    ckpt = realistic_checkpoint(variant, tmp_path)
    monkeypatch.setitem(DECOMPOSITIONS, op, broken)
    out = tmp_path / "out" / "broken.onnx"
    with pytest.raises(VerificationError) as info:
        export_onnx(variant, out, checkpoint=ckpt, target=target, height=H, width=W)
    msg = str(info.value)
    assert "\n" not in msg and "semshare bug" not in msg
    assert msg.startswith(f"exported {variant} ({target}) differs from PyTorch by more than float32 rounding allows")
    assert "on the synthetic pair" in msg and "max |err|" in msg and "tolerance 5e-04" in msg and "nothing written" in msg
    assert not (tmp_path / "out").exists()


# --- NaN/Inf checkpoints are refused on load ------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_cli_export_refuses_a_nan_or_inf_checkpoint(tmp_path, value):
    from typer.testing import CliRunner

    from semshare.cli import app

    sd = {k: v.clone() for k, v in realistic("mobilenetv3").state_dict().items()}
    sd["head.project.weight"][0, 3] = value
    ckpt = tmp_path / "diverged.pth"
    torch.save(sd, ckpt)
    out = tmp_path / "out" / "m.onnx"
    r = CliRunner().invoke(app, ["export", "mobilenetv3", "-c", str(ckpt), "-o", str(out), "--height", str(H),
                                 "--width", str(W)])
    assert r.exit_code == CheckpointError.exit_code, r.output
    lines = [x for x in r.output.splitlines() if x.strip()]
    kind = "1 NaN and 0 Inf" if value != value else "0 NaN and 1 Inf"
    assert len(lines) == 1 and lines[0].startswith(f"error: {ckpt}: tensor head.project.weight holds {kind} of 768 values")
    assert "semshare bug" not in lines[0]
    assert not (tmp_path / "out").exists()
