"""fp16 / int8 preparation on the three variants at the smallest input (784x800), int8 calibrated on the real
sample pairs, and the accuracy reports against FP32 PyTorch (random weights with non-trivial BN: no trained
checkpoint exists here). One module-scoped export + preparation per variant keeps the CPU time low."""

from collections import Counter

import numpy as np
import onnx
import pytest
import torch
from test_models import authors_state_dict

from conftest import REAL_PAIRS, SMALL, camera_pairs_folder
from semshare.engine.build import find_calibration_pairs
from semshare.export.graph import plugin_nodes
from semshare.precision import (
    accuracy_report,
    feeds_for,
    float_island_convs,
    margin_mask,
    to_float16,
    to_int8,
)
from semshare.precision.prepare import torch_reference

VARIANTS = ["mobilenetv3", "mobilenetv3_loosely", "mobilenetv3_tightly"]
FP16_MIN_MARGIN_AGREEMENT = 0.995
INT8_MIN_MARGIN_AGREEMENT = 0.95


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    return find_calibration_pairs(camera_pairs_folder(tmp_path_factory), 8)


@pytest.fixture(scope="module", params=VARIANTS)
def prepared(request, pairs, tmp_path_factory):
    from semshare.export import export_onnx

    variant = request.param
    tmp = tmp_path_factory.mktemp(variant)
    ckpt = tmp / "random.pth"
    torch.save(authors_state_dict(variant), ckpt)
    out = tmp / f"{variant}.onnx"
    export_onnx(variant, out, checkpoint=ckpt, target="tensorrt", height=SMALL[0], width=SMALL[1])
    model = onnx.load(str(out))
    fp16 = to_float16(model)
    feeds = feeds_for(model, pairs, SMALL)
    int8 = to_int8(model, feeds)  # non-quantized layers in fp16 (the default)
    int8_fp32 = to_int8(model, feeds, high_precision="fp32")
    validation = [p for p in pairs if p.key == "02450"]  # a labelled pair; all three calibrate
    report = accuracy_report({"fp16": fp16, "int8": int8, "int8/fp32": int8_fp32}, validation,
                             torch_reference(variant, ckpt, SMALL), SMALL, variant, num_classes=6)
    print("\n" + report.table())
    return variant, model, fp16, int8, int8_fp32, report


def _plugin_counts(model):
    return Counter((n.domain, n.op_type) for n in plugin_nodes(model))


def test_prepared_graphs_keep_exactly_the_plugin_nodes(prepared):
    variant, model, *graphs, _ = prepared
    want = _plugin_counts(model)
    assert (variant == "mobilenetv3") == (not want)
    before = {n.name: dict((a.name, onnx.helper.get_attribute_value(a)) for a in n.attribute) for n in plugin_nodes(model)}
    for g in graphs:
        assert _plugin_counts(g) == want
        assert {n.name: dict((a.name, onnx.helper.get_attribute_value(a)) for a in n.attribute)
                for n in plugin_nodes(g)} == before
        assert not g.functions


@pytest.mark.parametrize("which", ["fp16", "int8"])
def test_float16_graphs_io_float32_compute_float16_sampling_float32(prepared, which):
    _, model, fp16, int8, _, _ = prepared
    graph = {"fp16": fp16, "int8": int8}[which]
    f32, f16 = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert all(i.type.tensor_type.elem_type == f32 for i in graph.graph.input)
    assert all(o.type.tensor_type.elem_type == f32 for o in graph.graph.output)
    inits = {t.name: t.data_type for t in graph.graph.initializer}
    prod = {o: n for n in graph.graph.node for o in n.output}
    for n in graph.graph.node:  # every Conv weight is a float16 initializer or dequantizes straight to float16
        if n.op_type == "Conv":
            w = n.input[1]
            assert inits.get(w) == f16 or (prod[w].op_type == "DequantizeLinear" and inits[prod[w].input[1]] == f16), n.name
    inferred = onnx.shape_inference.infer_shapes(graph)
    types = {v.name: v.type.tensor_type.elem_type for v in (*inferred.graph.value_info, *inferred.graph.input)}
    types.update(inits)
    for n in graph.graph.node:
        if n.op_type == "GridSample":  # image and grid in float32
            assert types.get(n.input[0]) == f32 and types.get(n.input[1]) == f32, n.name
        if n.op_type == "HomographyWarp":  # homography stays float32 (contract)
            assert types.get(n.input[1]) == f32, n.name
    if which == "int8":  # float16 Q/DQ scales need opset 19
        assert next(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) == 19
        assert {inits[n.input[1]] for n in graph.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")} == {f16}


def test_no_conv_of_the_tensorrt_export_is_a_float_island(prepared):
    """No Conv reads a plugin or sampling output directly; a Conv whose input is only measured by the grid math
    (``Shape``) is not grid math either (regression: the residual Adds of the backbone were kept float)."""
    _, model, *_ = prepared
    assert float_island_convs(model) == []


@pytest.mark.parametrize("which", ["int8", "int8/fp32"])
def test_int8_qdq_is_symmetric_per_channel_and_never_touches_plugins_or_sampling(prepared, which):
    from onnx import numpy_helper

    _, model, _, int8, int8_fp32, _ = prepared
    int8 = {"int8": int8, "int8/fp32": int8_fp32}[which]
    inits = {t.name: numpy_helper.to_array(t) for t in int8.graph.initializer}
    prod = {o: n for n in int8.graph.node for o in n.output}
    q = [n for n in int8.graph.node if n.op_type == "QuantizeLinear"]
    dq = [n for n in int8.graph.node if n.op_type == "DequantizeLinear"]
    assert q and dq
    for n in q + dq:
        zp = inits[n.input[2]]
        assert zp.dtype == np.int8 and not zp.any()  # signed, zero-point 0
    weight_dq = [n for n in dq if n.input[0] in inits]
    assert weight_dq and all(inits[n.input[1]].ndim == 1 and inits[n.input[1]].size > 1 for n in weight_dq)
    act_q = [n for n in q if n.input[0] not in inits]
    assert all(inits[n.input[1]].ndim == 0 for n in act_q)  # per-tensor activations
    float_ops = {"GridSample", "SpatialCorrelation", "HomographyWarp"}
    for n in q:
        src = prod.get(n.input[0])
        assert src is None or src.op_type not in float_ops, f"Q right after {src.op_type}"
    for n in int8.graph.node:
        if n.op_type in float_ops:
            assert all(prod[i].op_type != "DequantizeLinear" for i in n.input if i in prod), n.name
    convs = [n for n in int8.graph.node if n.op_type == "Conv"]
    quantized = {n.name for n in convs if n.input[0] in prod and prod[n.input[0]].op_type == "DequantizeLinear"}
    assert quantized == {n.name for n in convs}  # every Conv (none is a float island, see above)
    for n in convs:  # each weight per-channel from its int8 initializer, also where a weight is shared by both cameras
        w = prod[n.input[1]]
        assert w.op_type == "DequantizeLinear" and inits[w.input[0]].dtype == np.int8, n.name
        assert inits[w.input[1]].shape == (inits[w.input[0]].shape[0],), n.name
    consumed = {i for n in int8.graph.node for i in n.input} | {o.name for o in int8.graph.output}
    assert all(o in consumed for n in int8.graph.node for o in n.output)  # no dead Q/DQ left behind


def test_accuracy_fp16(prepared):
    variant, *_, report = prepared
    for cam in report.get("fp16").cameras:
        assert cam.margin_pixels > 0, (variant, cam)  # the filter keeps real pixels to judge
        assert cam.agreement_margin >= FP16_MIN_MARGIN_AGREEMENT, (variant, cam)
        if REAL_PAIRS.is_dir():  # the authors' pairs come with labels; synthetic stand-ins have none
            assert cam.miou is not None and abs(cam.miou - cam.miou_reference) < 0.01


@pytest.mark.parametrize("which", ["int8", "int8/fp32"])
def test_accuracy_int8(prepared, which):
    variant, *_, report = prepared
    for cam in report.get(which).cameras:
        assert cam.agreement_margin >= INT8_MIN_MARGIN_AGREEMENT, (variant, cam)
        assert np.isfinite(cam.max_abs_err)


def test_margin_mask():
    ref = np.zeros((1, 3, 1, 2), np.float32)
    ref[0, :, 0, 0] = [10, 0, 0]  # clear winner
    ref[0, :, 0, 1] = [5, 4.9, 0]  # near tie: 0.1 < 5% of 10
    assert margin_mask(ref).tolist() == [[[True, False]]]
