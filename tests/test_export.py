"""semshare export: the plugin-node contract, the standard-op target, dynamic batch, homography inputs,
the manifest, and every refused input leaving nothing behind. Numerics run on realistic weights
(conftest.realistic); the acceptance rule and the mutations it must reject are in test_verify.py.

Most tests run at the smallest size the models allow (conftest.SMALL); one full-size export per target is
marked slow.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import onnx
import pytest
import torch
from onnx import helper

from conftest import SMALL, realistic, realistic_checkpoint
from semshare.errors import CheckpointError, SemshareError
from semshare.export import export_onnx
from semshare.export import onnx as ex
from semshare.export.graph import plugin_nodes, with_reference_ops
from semshare.export.lowering import lower_ops
from semshare.export.verify import check_structure, compare, run_onnxruntime
from semshare.ops import HomographyWarp, SpatialCorrelation
from semshare.ops.contracts import CONTRACTS, DOMAIN, HOMOGRAPHY_WARP, SPATIAL_CORRELATION

H, W = SMALL
ATTR_TYPES = {"INT": onnx.AttributeProto.INT, "FLOAT": onnx.AttributeProto.FLOAT,
              "STRING": onnx.AttributeProto.STRING}


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _graph(variant: str, target: str, dynamic_batch: bool = False, homography_input: bool = False):
    """(model, ModelProto, input names, input tensors): an export of the realistic weights in memory, not verified."""
    model = realistic(variant)
    names, inputs = ex.example_inputs(model, H, W, 2 if dynamic_batch else 1, homography_input)
    proto, _ = ex.trace_to_onnx(model, target, inputs, names, ex.DEFAULT_OPSET, dynamic_batch)
    return model, ex.finish_graph(proto, variant, target, dynamic_batch, simplify=False), names, inputs


@pytest.fixture(scope="module")
def trt_graphs():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {v: _graph(v, "tensorrt", dynamic_batch=(v == "mobilenetv3_tightly"))
                for v in ("mobilenetv3", "mobilenetv3_loosely", "mobilenetv3_tightly")}


def _torch(model, inputs):
    with torch.inference_mode():
        return [t.numpy() for t in model(*inputs)]


# --- the plugin-node contract ---------------------------------------------------------------------------


@pytest.mark.parametrize("variant,n_corr,n_warp", [("mobilenetv3", 0, 0), ("mobilenetv3_loosely", 5, 3),
                                                    ("mobilenetv3_tightly", 3, 5)])
def test_plugin_node_counts(trt_graphs, variant, n_corr, n_warp):
    proto = trt_graphs[variant][1]
    ops = [n.op_type for n in plugin_nodes(proto)]
    assert ops.count("SpatialCorrelation") == n_corr and ops.count("HomographyWarp") == n_warp
    assert len(ops) == n_corr + n_warp
    assert not proto.functions, "no ONNX local functions: TensorRT would prefer them to the plugins"
    assert not [n for n in proto.graph.node if n.domain not in ("", DOMAIN)]


@pytest.mark.parametrize("variant", ["mobilenetv3_loosely", "mobilenetv3_tightly"])
def test_plugin_node_attributes_follow_the_contract(trt_graphs, variant):
    model, proto, _, _ = trt_graphs[variant]
    assert {(o.domain, o.version) for o in proto.opset_import} >= {("semshare", 1), ("", ex.DEFAULT_OPSET)}
    warp_sizes = sorted(m.out_size for m in model.modules() if isinstance(m, HomographyWarp))
    seen_sizes = []
    for node in plugin_nodes(proto):
        contract = CONTRACTS[node.op_type]
        assert node.domain == "semshare"
        assert len(node.input) == len(contract.inputs) and len(node.output) == 1
        attrs = {a.name: a for a in node.attribute}
        assert set(attrs) == {"plugin_namespace", "plugin_version", *(a.name for a in contract.attributes)}
        assert attrs["plugin_namespace"].type == onnx.AttributeProto.STRING
        assert attrs["plugin_namespace"].s == b"semshare"
        assert attrs["plugin_version"].type == onnx.AttributeProto.STRING  # NVIDIA/TensorRT#4312
        assert attrs["plugin_version"].s == b"1"
        for a in contract.attributes:
            assert attrs[a.name].type == ATTR_TYPES[a.type], (node.op_type, a.name)
        values = {k: helper.get_attribute_value(v) for k, v in attrs.items()}
        if node.op_type == "SpatialCorrelation":
            assert values == {"plugin_namespace": b"semshare", "plugin_version": b"1", "patch_size": 9,
                              "kernel_size": 1, "stride": 1, "dilation_patch": 1, "normalize": 1}
        else:
            assert values["align_corners"] == 1 and values["padding_mode"] == b"zeros"
            seen_sizes.append((values["out_height"], values["out_width"]))
    if variant == "mobilenetv3_tightly":  # each warp module once, at its own size
        assert sorted(seen_sizes) == sorted(model.warp_sizes(H, W).values())
    else:  # warp_120_60 twice, warp_60_120 once, all at the 0.4 scale
        assert len(warp_sizes) == 2 and sorted(seen_sizes) == [model.scale_size(H, W)] * 3


def test_plugin_outputs_have_shapes_and_the_graph_checks(trt_graphs):
    _, proto, _, _ = trt_graphs["mobilenetv3_tightly"]  # dynamic batch
    inferred = check_structure(proto)  # checker (full) + strict shape inference
    shapes = {vi.name: vi.type.tensor_type for vi in inferred.graph.value_info}
    for node in plugin_nodes(inferred):
        t = shapes[node.output[0]]
        assert t.elem_type == onnx.TensorProto.FLOAT
        dims = [d.dim_param or d.dim_value for d in t.shape.dim]
        assert dims[0] == "batch"
        if node.op_type == "SpatialCorrelation":
            assert dims[1] == 81
        else:
            a = {x.name: helper.get_attribute_value(x) for x in node.attribute}
            assert dims[2:] == [a["out_height"], a["out_width"]]
    for vi in (*inferred.graph.input, *inferred.graph.output):
        assert vi.type.tensor_type.shape.dim[0].dim_param == "batch"


# --- the decompositions, on a tiny module (fast, all opsets) ----------------------------------------------


class _Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.corr = SpatialCorrelation(patch_size=5, dilation_patch=2)
        hom = torch.tensor([[[1.1, 0.05, 0.02], [-0.03, 0.9, 0.01], [0.2, -0.3, 1.0]]])
        self.warp = HomographyWarp(hom, (7, 9))

    def forward(self, a, b):
        return self.corr(a, b), self.warp(a)


@pytest.mark.parametrize("opset", [16, 17, 18, 19])
def test_decompositions_match_the_reference_ops(opset):
    import io

    a, b = torch.randn(2, 4, 6, 8), torch.randn(2, 4, 6, 8)
    ref = _torch(_Tiny().eval(), (a, b))
    feeds = {"a": a.numpy(), "b": b.numpy()}
    for target in ("onnx", "tensorrt"):
        buf = io.BytesIO()
        torch.onnx.export(lower_ops(_Tiny().eval(), target), (a, b), buf, dynamo=False, opset_version=opset,
                          input_names=["a", "b"], autograd_inlining=False,
                          custom_opsets={"semshare": 1} if target == "tensorrt" else None)
        proto = onnx.load_from_string(buf.getvalue())
        assert bool(plugin_nodes(proto)) == (target == "tensorrt")
        if target == "tensorrt":
            from semshare.export.graph import annotate_plugin_shapes

            proto = with_reference_ops(annotate_plugin_shapes(proto))
        out = run_onnxruntime(proto, feeds)
        for r, o in zip(ref, out, strict=True):
            np.testing.assert_allclose(o, r, atol=1e-5, rtol=1e-5)


# --- target onnx, dynamic batch, homography inputs ----------------------------------------------------------


def test_onnx_target_has_standard_ops_only_and_matches_pytorch(tmp_path):
    out = tmp_path / "loosely.onnx"
    r = export_onnx("mobilenetv3_loosely", out, checkpoint=realistic_checkpoint("mobilenetv3_loosely", tmp_path),
                    target="onnx", height=H, width=W, dynamic_batch=True)
    proto = onnx.load(out)
    assert not [n for n in proto.graph.node if n.domain not in ("", "ai.onnx")]
    assert {o.domain for o in proto.opset_import} <= {"", "ai.onnx"}
    assert r.comparison.ok and r.manifest["custom_ops"] == []
    ops = {n.op_type for n in proto.graph.node}
    assert "GridSample" in ops and "ReduceSum" in ops
    for n in proto.graph.node:
        if n.op_type == "GridSample":
            a = {x.name: helper.get_attribute_value(x) for x in n.attribute}
            assert a["align_corners"] == 1 and a["mode"] == b"bilinear"
    # dynamic batch: a batch of 2 equals two runs of 1
    model = realistic("mobilenetv3_loosely")
    names, inputs = ex.example_inputs(model, H, W, 2, False)
    both = run_onnxruntime(proto, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})
    for i in range(2):
        one = run_onnxruntime(proto, {n: t[i:i + 1].numpy() for n, t in zip(names, inputs, strict=True)})
        # float rounding only (kernels block a batch of 2 differently): the verification rule
        batch_vs_one = compare(["seg120", "seg60"], [x[i:i + 1] for x in both], one, f"item {i} of 2 vs alone")
        assert batch_vs_one.ok, batch_vs_one.table()
    assert not np.allclose(both[0][0], both[0][1])  # the two items differ (mirrored pair)


def test_dynamic_batch_tensorrt_target_through_reference(trt_graphs):
    model, proto, names, inputs = trt_graphs["mobilenetv3_tightly"]
    ref_model = with_reference_ops(proto)
    both = run_onnxruntime(ref_model, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})
    one = run_onnxruntime(ref_model, {n: t[1:].numpy() for n, t in zip(names, inputs, strict=True)})
    batch_vs_one = compare(["seg120", "seg60"], [x[1:] for x in both], one, "item 1 of 2 vs alone")
    assert batch_vs_one.ok, batch_vs_one.table()
    r = compare(["seg120", "seg60"], _torch(model, inputs), both, "ort")
    assert r.ok, r.table()


@pytest.mark.parametrize("variant", ["mobilenetv3", "mobilenetv3_loosely", "mobilenetv3_tightly"])
def test_tensorrt_target_verifies_on_realistic_weights(trt_graphs, variant):
    from semshare.export.verify import verify_numerics

    model, proto, names, inputs = trt_graphs[variant]
    r = verify_numerics(proto, {n: t.numpy() for n, t in zip(names, inputs, strict=True)}, _torch(model, inputs))
    assert r.ok, r.table()
    assert all(o.ref_absmax > 0.3 for o in r.outputs), r.table()  # realistic logits, not a random network's ~0.1


def test_homography_input(tmp_path):
    from semshare.rig import Rig

    model = realistic("mobilenetv3_tightly")
    ckpt = realistic_checkpoint("mobilenetv3_tightly", tmp_path)  # the export and the check below use the same weights
    out = tmp_path / "tightly_h.onnx"
    r = export_onnx("mobilenetv3_tightly", out, checkpoint=ckpt, height=H, width=W, homography_input=True,
                    dynamic_batch=True)
    proto = onnx.load(out)
    inputs = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input}
    assert inputs["h120_from_60"] == ["batch", 3, 3] and inputs["h60_from_120"] == ["batch", 3, 3]
    assert not [t for t in proto.graph.initializer if tuple(t.dims) in ((1, 3, 3), (3, 3))]
    a, b = model.rig_homographies(H, W)
    homs = r.manifest["homography_inputs"]
    np.testing.assert_allclose(homs["h120_from_60"], a[0].numpy(), atol=1e-6)
    np.testing.assert_allclose(homs["h60_from_120"], b[0].numpy(), atol=1e-6)
    # another rig through the same graph equals PyTorch with that rig
    other = Rig(euler_xyz=(0.02, -0.03, 0.01))  # only its homographies are used: the weights do not matter
    a2, b2 = ex.build_model("mobilenetv3_tightly", None, H, W, rig=other)[0].rig_homographies(H, W)
    _, (img120, img60) = ex.example_inputs(model, H, W, 1, False)
    feeds = {"img120": img120.numpy(), "img60": img60.numpy(), "h120_from_60": a2.numpy(), "h60_from_120": b2.numpy()}
    got = run_onnxruntime(with_reference_ops(proto), feeds)
    want = _torch(model, (img120, img60, a2, b2))
    default = _torch(model, (img120, img60))
    assert compare(["seg120", "seg60"], want, got, "ort").ok
    assert not np.allclose(want[1], default[1], atol=1e-6)  # the homography input matters


# --- manifest ------------------------------------------------------------------------------------------------


def test_manifest(tmp_path):
    from semshare.data import CLASS_NAMES, PALETTE
    from semshare.models.checkpoint import file_sha256

    ckpt = realistic_checkpoint("mobilenetv3", tmp_path)
    out = tmp_path / "m.onnx"
    r = export_onnx("mobilenetv3", out, checkpoint=ckpt, target="onnx", height=H, width=W, batch=2, opset=16)
    m = json.loads(out.with_suffix(".json").read_text())
    assert m == r.manifest
    assert m["variant"] == "mobilenetv3" and m["target"] == "onnx" and m["opset"] == 16 and m["batch"] == 2
    assert m["inputs"] == [{"name": n, "shape": [2, 3, H, W], "dtype": "float32"} for n in ("img120", "img60")]
    assert m["outputs"] == [{"name": n, "shape": [2, 6, H, W], "dtype": "float32"} for n in ("seg120", "seg60")]
    assert m["normalization"]["mean"] == [0.485, 0.456, 0.406] and m["normalization"]["std"] == [0.229, 0.224, 0.225]
    assert m["classes"] == {"names": list(CLASS_NAMES), "palette": PALETTE.tolist()}
    assert m["checkpoint"] == {"path": str(ckpt), "sha256": file_sha256(ckpt)}
    assert m["model_sha256"] == __import__("hashlib").sha256(out.read_bytes()).hexdigest()
    assert m["custom_ops"] == [] and m["homography_inputs"] is None
    assert set(m["versions"]) >= {"semshare", "torch", "onnx"}
    assert m["verification"]["ok"] is True
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.onnx", ckpt.name]


def test_manifest_custom_ops_and_rig(trt_graphs, tmp_path):
    model, proto, _, _ = trt_graphs["mobilenetv3_loosely"]
    m = ex.build_manifest(model, proto, variant="mobilenetv3_loosely", target="tensorrt", opset=17, height=H,
                          width=W, batch=1, dynamic_batch=False, rig=None, homography_input=False,
                          checkpoint_source="random weights", comparison=None, model_file="x.onnx", model_sha256="0")
    assert m["custom_ops"] == [
        {"domain": "semshare", "op_type": "HomographyWarp", "plugin_namespace": "semshare", "plugin_version": "1",
         "count": 3, "inputs": list(HOMOGRAPHY_WARP.inputs)},
        {"domain": "semshare", "op_type": "SpatialCorrelation", "plugin_namespace": "semshare", "plugin_version": "1",
         "count": 5, "inputs": list(SPATIAL_CORRELATION.inputs)},
    ]
    assert m["rig"] == model.rig.to_dict() and m["checkpoint"] == "random weights"


# --- refused inputs: one line, nothing left behind ----------------------------------------------------------


def _refused(tmp_path, match, exc=SemshareError, **kw):
    args = {"variant": "mobilenetv3_tightly", "output": tmp_path / "out" / "m.onnx", "height": H, "width": W} | kw
    with pytest.raises(exc, match=match) as info:
        export_onnx(**args)
    msg = str(info.value)
    assert "\n" not in msg and len(msg) < 1000
    assert [p for p in tmp_path.rglob("*") if p.suffix in (".onnx", ".json", ".tmp") or p.name == "out"] == []
    return msg


def test_refuses_unknown_variant(tmp_path):
    _refused(tmp_path, "unknown variant 'mobilenetv4'.*choose one of", variant="mobilenetv4")


@pytest.mark.parametrize("opset", [15, 20, 21])
def test_refuses_opsets_outside_16_19(tmp_path, opset):
    msg = _refused(tmp_path, f"opset {opset} is not supported", opset=opset)
    assert "nearest" in msg and "--opset 16..19" in msg


def test_refuses_small_input(tmp_path):
    _refused(tmp_path, "783x1024 is too small.*>= 784", height=783, width=1024)


def test_refuses_checkpoint_of_another_variant(tmp_path):
    from semshare.models import create_model

    ckpt = tmp_path / "loosely.pth"  # only its keys matter: plain create_model weights
    torch.save(create_model("mobilenetv3_loosely").state_dict(), ckpt)
    _refused(tmp_path, "does not fit mobilenetv3_tightly.*another variant", CheckpointError, checkpoint=ckpt)


def test_refuses_corrupt_checkpoint(tmp_path):
    ckpt = tmp_path / "broken.pth"
    ckpt.write_bytes(b"PK\x03\x04 not a checkpoint")
    _refused(tmp_path, "cannot be read", CheckpointError, checkpoint=ckpt)


def test_refuses_unwritable_output(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(SemshareError, match="writable folder"):
        export_onnx("mobilenetv3", blocker / "sub" / "m.onnx", height=H, width=W)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_refuses_batch_with_dynamic_batch_and_homography_input_without_homography(tmp_path):
    _refused(tmp_path, "exclude each other", batch=2, dynamic_batch=True)
    _refused(tmp_path, "uses no homography", variant="mobilenetv3", homography_input=True)


def test_cli_errors_are_one_line(tmp_path):
    from typer.testing import CliRunner

    from semshare.cli import app

    r = CliRunner().invoke(app, ["export", "mobilenetv3_tightly", "--opset", "20", "-o", str(tmp_path / "m.onnx")])
    assert r.exit_code == 2
    lines = [x for x in r.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: opset 20 is not supported")
    assert list(tmp_path.iterdir()) == []


# --- full size, once per target ---------------------------------------------------------------------------

FULL = (1216, 1920)


@pytest.fixture(scope="module")
def full_size_checkpoint(tmp_path_factory):
    return realistic_checkpoint("mobilenetv3_tightly", tmp_path_factory.mktemp("full"), FULL)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["tensorrt", "onnx"])
def test_full_size_tightly_verifies_on_realistic_weights(full_size_checkpoint, tmp_path, target):
    ckpt = full_size_checkpoint
    out = tmp_path / f"tightly_{target}.onnx"
    r = export_onnx("mobilenetv3_tightly", out, checkpoint=ckpt, target=target)
    assert r.comparison.ok, r.comparison.table()
    for o in r.comparison.outputs:
        assert o.shape == (1, 6, *FULL)
        assert o.ref_absmax > 5 and o.rel_err < r.comparison.tolerance.rtol / 5 and o.margin_agreement == 1.0
