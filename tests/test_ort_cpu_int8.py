"""The ONNX Runtime CPU INT8 flavour (semshare.precision.ort_cpu): the integer kernels ONNX Runtime runs, its
agreement with FP32 on realistic weights (calibrated on two real pairs, scored on the held-out third), and the
``bench -b onnxruntime:cpu:int8`` wiring and errors. No timing here: the speed is benchmarks/int8_cpu.py's."""

import collections
import copy
import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import SMALL, assert_one_line_error, shared_data
from semshare.cli import app

runner = CliRunner()
VARIANT = "mobilenetv3_tightly"
CALIB, HELD_OUT = ("00001", "02450"), "21000"
#: Margin-filtered agreement with FP32 on the held-out pair that INT8 must reach, per camera. These realistic
#: (untrained) weights are very sensitive to any perturbation: FP32 itself keeps only ~92 % (camera 120) and
#: ~98 % (camera 60) of the sure pixels under Gaussian input noise of one grey level (sigma 1/255), and the CPU
#: INT8 graph measured 89.9 % / 97.3 % at 784x800 (benchmarks/README.md). 85 % passes that quantization noise;
#: the mutation below (hard-swish's / 6 computed as * 6) falls to 35.8 % / 37.0 %.
MIN_MARGIN_AGREEMENT = 0.85


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A realistic-weights tightly export (target onnx) at 784x800, its checkpoint, and the pair folders."""
    import torch

    from semshare.data import find_pairs
    from semshare.export import export_onnx
    from semshare.models.realistic import realistic_model

    pairs_dir = shared_data("rig_samples", "pairs")
    d = tmp_path_factory.mktemp("int8cpu")
    pairs = {p.key: p for p in find_pairs(pairs_dir)[0]}
    calib_dir, val_dir = d / "calib", d / "val"
    for folder, keys in ((calib_dir, CALIB), (val_dir, (HELD_OUT,))):
        folder.mkdir()
        for k in keys:
            shutil.copy(pairs[k].path120, folder)
            shutil.copy(pairs[k].path60, folder)
    from semshare.data import load_pair

    model = realistic_model(VARIANT, load_pair(pairs[CALIB[1]].path120, SMALL), perturb=0.1, input_size=SMALL)
    ckpt = d / "realistic.pth"
    torch.save(model.state_dict(), ckpt)
    onnx_path = d / "tightly.onnx"
    export_onnx(VARIANT, onnx_path, checkpoint=ckpt, target="onnx", height=SMALL[0], width=SMALL[1], verify=False)
    return {"onnx": onnx_path, "calib": [pairs[k] for k in CALIB], "held_out": pairs[HELD_OUT],
            "calib_dir": calib_dir, "val_dir": val_dir}


def _prepare(setup):
    import onnx

    from semshare.precision import feeds_for
    from semshare.precision.ort_cpu import to_int8_ort_cpu

    fp32 = onnx.load(str(setup["onnx"]))
    return fp32, to_int8_ort_cpu(fp32, feeds_for(fp32, setup["calib"], SMALL))


@pytest.fixture(scope="module")
def prepared(setup):
    return _prepare(setup)


def _session(model, optimized=None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if optimized is not None:
        opts.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def _margin_agreement(setup, fp32, int8) -> list[float]:
    from semshare.precision import feeds_for, margin_mask

    feed = feeds_for(fp32, [setup["held_out"]], SMALL)[0]
    out = []
    for ref, got in zip(_session(fp32).run(None, feed)[:2], _session(int8).run(None, feed)[:2], strict=True):
        same = ref.argmax(1) == got.argmax(1)
        out.append(float(same[margin_mask(ref)].mean()))
    return out


@pytest.mark.slow
def test_onnxruntime_runs_integer_kernels(prepared, tmp_path):
    """Every Conv outside the float islands becomes a QLinearConv (U8S8); hard-swish, squeeze-excitation and the
    residual adds run as QLinearMul/QLinearAdd/...; only a few Q/DQ nodes stay unfused; no Q/DQ touches the
    sampling or the correlation."""
    from onnx import numpy_helper

    from semshare.precision import float_island_convs
    from semshare.precision.graph import consumers, fold_weight_aliases, grid_region, producers

    fp32, int8 = prepared
    convs = [n for n in fp32.graph.node if n.op_type == "Conv"]
    grid = grid_region(fold_weight_aliases(copy.deepcopy(fp32)))
    cons = consumers(fp32)
    flow_out = [n for n in convs if any(c.name in grid for c in cons[n.output[0]])]  # flow estimates: float
    assert len(flow_out) == 3  # one per PWC-Net level
    floats = len(float_island_convs(fp32)) + len(flow_out)
    inits = {t.name: numpy_helper.to_array(t) for t in int8.graph.initializer}
    prod = producers(int8)
    for n in int8.graph.node:  # uint8 activations (zero point), int8 per-channel weights
        if n.op_type == "QuantizeLinear":
            assert inits[n.input[2]].dtype == np.uint8
        if n.op_type == "Conv" and n.input[1] in {o for o in prod if prod[o].op_type == "DequantizeLinear"}:
            w = prod[n.input[1]]
            assert inits[w.input[0]].dtype == np.int8 and inits[w.input[1]].size == inits[w.input[0]].shape[0]
        # the grid math, the sampling grids and the correlation's sums read float tensors
        reads = n.input if n.name in grid or n.op_type == "ReduceSum" else n.input[1:2] if n.op_type == "GridSample" else []
        assert all(prod[i].op_type != "DequantizeLinear" for i in reads if i in prod), n.name

    _session(int8, tmp_path / "opt.onnx")
    import onnx

    ops = collections.Counter(n.op_type for n in onnx.load(str(tmp_path / "opt.onnx")).graph.node)
    assert ops["QLinearConv"] == len(convs) - floats, ops
    assert ops["Conv"] + ops["FusedConv"] == floats, ops
    for op in ("QLinearAdd", "QLinearMul", "QLinearGlobalAveragePool", "QLinearMatMul", "QLinearLeakyRelu"):
        assert ops[op] > 0, (op, ops)
    assert ops["DequantizeLinear"] + ops["QuantizeLinear"] <= 0.5 * ops["QLinearConv"], ops


@pytest.mark.slow
def test_int8_agrees_with_fp32_on_a_held_out_pair(setup, prepared):
    agree = _margin_agreement(setup, *prepared)
    assert min(agree) >= MIN_MARGIN_AGREEMENT, agree


@pytest.mark.slow
def test_a_wrong_constant_fails_the_agreement(setup, prepared):
    """Mutation: hard-swish's ``/ 6`` computed as ``* 6`` (a reciprocal bug) must fail the threshold."""
    from onnx import numpy_helper

    fp32, int8 = prepared
    bad = copy.deepcopy(int8)
    inits = {t.name: t for t in bad.graph.initializer}
    hit = 0
    for n in bad.graph.node:
        if n.op_type == "DequantizeLinear" and "__reciprocal" in n.input[0]:
            scale = inits[n.input[1]]
            scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * 36, scale.name))  # 1/6 -> 6
            hit += 1
    assert hit
    agree = _margin_agreement(setup, fp32, bad)
    assert min(agree) < MIN_MARGIN_AGREEMENT, agree


def test_prepared_or_empty_input_is_refused():
    from onnx import TensorProto, helper

    from semshare.errors import SemshareError
    from semshare.precision.ort_cpu import to_int8_ort_cpu

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.UINT8, [1])
    q = helper.make_node("QuantizeLinear", ["x", "s"], ["y"])
    qdq = helper.make_model(helper.make_graph([q], "g", [x], [y], [helper.make_tensor("s", TensorProto.FLOAT, [], [1.0])]))
    with pytest.raises(SemshareError, match="prepared from the FP32 export"):
        to_int8_ort_cpu(qdq, [{"x": np.zeros(1, np.float32)}])
    with pytest.raises(SemshareError, match="needs calibration pairs"):
        to_int8_ort_cpu(qdq, [])
    with pytest.raises(SemshareError, match="unknown calibration method 'Median'"):
        to_int8_ort_cpu(qdq, [{}], "Median")


# ------------------------------------------------------------------------------------------ bench


@pytest.mark.slow
def test_bench_reports_fp32_and_int8_side_by_side(setup, tmp_path):
    js = tmp_path / "r.json"
    res = runner.invoke(app, ["bench", "-b", "onnxruntime,onnxruntime:cpu:int8", "--onnx", str(setup["onnx"]),
                              "--calib-dir", str(setup["calib_dir"]), "--pairs", str(setup["val_dir"]),
                              "--warmup", "0", "--iterations", "1", "--threads", "2", "--json", str(js)])
    assert res.exit_code == 0, res.output
    assert "onnxruntime:cpu:int8" in res.output and "agree 120/60 %" in res.output
    r = json.loads(js.read_text())
    fp32, int8 = r["backends"]
    assert (fp32["precision"], int8["precision"]) == ("fp32", "int8")
    assert "agreement" not in fp32
    assert int8["agreement"]["reference"] == "onnxruntime:cpu:fp32"
    assert min(int8["agreement"][k]["margin"] for k in ("seg120", "seg60")) >= MIN_MARGIN_AGREEMENT
    assert int8["info"]["calibration_pairs"] == list(CALIB)
    assert int8["info"]["ort_kernels"]["QLinearConv"] > 0 and not int8["info"]["ort_kernels"].get("Conv", 0) > 10
    assert r["ratios"][1]["speedup_median"] > 0




def test_bench_int8_errors(tmp_path):
    """Refused before any export or calibration: no calibration data, a GPU device, --calib-dir without an int8
    backend, a --calib-dir without pairs."""
    base = ["bench", "-m", VARIANT, "--height", str(SMALL[0]), "--width", str(SMALL[1])]
    assert_one_line_error(runner.invoke(app, [*base, "-b", "onnxruntime,onnxruntime:cpu:int8"]), 2,
                          "onnxruntime:cpu:int8 backend needs calibration pairs", "--calib-dir")
    assert_one_line_error(runner.invoke(app, [*base, "-b", "onnxruntime:cuda:int8"]), 2, "runs on the CPU", "onnxruntime:cpu:int8")
    assert_one_line_error(runner.invoke(app, [*base, "-b", "onnxruntime", "--calib-dir", str(tmp_path)]), 2,
                          "--calib-dir is for an int8 backend")
    assert_one_line_error(runner.invoke(app, [*base, "-b", "onnxruntime:int8", "--calib-dir", str(tmp_path)]), 2,
                          "holds no fov120_N/fov60_N image pairs")
    assert_one_line_error(runner.invoke(app, [*base, "-b", "onnxruntime:int8", "--calib-dir", str(tmp_path / "no")]), 2,
                          "is not a folder")
