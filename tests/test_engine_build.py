"""semshare.engine.build / manifest / runner without TensorRT: the plan seam, the checks that run before the
TensorRT import, the compatibility check, and the CLI's one-line errors (no partial files)."""

import json
import sys

import pytest
from typer.testing import CliRunner

from semshare.cli import app
from semshare.engine.build import (
    BuildRequest,
    InputSpec,
    OnnxInfo,
    build_engine,
    find_calibration_pairs,
    parse_batch,
    plan_build,
    validate_request,
)
from semshare.engine.manifest import (
    EngineManifest,
    IncompatibleEngineError,
    check_engine_compatible,
    engine_manifest_path,
    read_engine_manifest,
    read_export_manifest,
)
from semshare.errors import MissingDependencyError, SemshareError

STATIC = OnnxInfo([InputSpec("img120", "float", (1, 3, 784, 800)), InputSpec("img60", "float", (1, 3, 784, 800))],
                  ["seg120", "seg60"], ["HomographyWarp", "SpatialCorrelation"])
DYNAMIC = OnnxInfo([InputSpec("img120", "float", (None, 3, 784, 800)), InputSpec("img60", "float", (None, 3, 784, 800))],
                   ["seg120", "seg60"])
HAS_TRT = "tensorrt" in sys.modules or __import__("importlib").util.find_spec("tensorrt") is not None


def req(tmp_path, **kw):
    base = {"onnx": tmp_path / "m.onnx", "output": tmp_path / "m.engine"}
    base.update(kw)
    return BuildRequest(**base)


def fake_export(tmp_path, manifest=None):
    """A tiny real ONNX file + a semshare export manifest (the build reads only inputs and plugin nodes)."""
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("img120", TensorProto.FLOAT, ["batch", 3, 784, 800])
    y = helper.make_tensor_value_info("img60", TensorProto.FLOAT, ["batch", 3, 784, 800])
    o = helper.make_tensor_value_info("seg120", TensorProto.FLOAT, ["batch", 3, 784, 800])
    g = helper.make_graph([helper.make_node("Add", ["img120", "img60"], ["seg120"])], "g", [x, y], [o])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g), str(path))
    (tmp_path / "m.json").write_text(json.dumps(manifest if manifest is not None else
                                                {"format": "semshare-export/1", "variant": "mobilenetv3",
                                                 "inputs": [], "outputs": []}))
    return path


# --- the plan seam -------------------------------------------------------------------------------------


def test_presets_translate_to_plain_settings(tmp_path):
    orin = plan_build(validate_request(req(tmp_path, preset="orin")), STATIC)
    assert orin.network_flags == ("STRONGLY_TYPED",)
    assert orin.memory_pools == (("WORKSPACE", 2 << 30),)
    assert orin.optimization_level == 3 and orin.hardware_compatibility == "NONE"
    assert orin.default_device_type == "GPU" and orin.builder_flags == () and orin.profiles == ()
    assert orin.timing_cache is not None and orin.timing_cache.name == "timing-orin.cache"
    desk = plan_build(validate_request(req(tmp_path, preset="desktop", hardware_compat="ampere_plus",
                                           optimization_level=5, workspace_gib=1.5, no_timing_cache=True)), STATIC)
    assert desk.hardware_compatibility == "AMPERE_PLUS" and desk.optimization_level == 5
    assert desk.memory_pools == (("WORKSPACE", int(1.5 * (1 << 30))),) and desk.timing_cache is None
    cache = tmp_path / "t.cache"
    assert plan_build(req(tmp_path, timing_cache=cache), STATIC).timing_cache == cache


def test_dla_needs_static_shapes_and_gpu_fallback(tmp_path):
    plan = plan_build(validate_request(req(tmp_path, preset="orin", dla_core=1)), STATIC)
    assert plan.default_device_type == "DLA" and plan.dla_core == 1 and plan.builder_flags == ("GPU_FALLBACK",)
    with pytest.raises(SemshareError, match="DLA needs static shapes"):
        plan_build(validate_request(req(tmp_path, preset="orin", dla_core=0, batch=(1, 2, 4))), DYNAMIC)
    fixed = plan_build(validate_request(req(tmp_path, preset="orin", dla_core=0, batch=(2, 2, 2))), DYNAMIC)
    assert fixed.profiles[0][0].min == fixed.profiles[0][0].max == (2, 3, 784, 800)
    for bad, msg in ((dict(preset="thor", dla_core=0), "no DLA"), (dict(preset="desktop", dla_core=0), "no DLA"),
                     (dict(preset="orin", dla_core=0, precision="fp32"), "FP16 and INT8 only"),
                     (dict(preset="orin", hardware_compat="ampere_plus"), "hardware-compatible engines for Jetson")):
        with pytest.raises(SemshareError, match=msg):
            validate_request(req(tmp_path, **bad))


def test_dynamic_batch_profiles(tmp_path):
    plan = plan_build(req(tmp_path, batch=(1, 2, 8)), DYNAMIC)
    (profile,) = plan.profiles
    assert [(s.name, s.min, s.opt, s.max) for s in profile] == [
        (n, (1, 3, 784, 800), (2, 3, 784, 800), (8, 3, 784, 800)) for n in ("img120", "img60")]
    assert plan_build(req(tmp_path), DYNAMIC).profiles[0][0].max == (4, 3, 784, 800)  # default 1:1:4
    with pytest.raises(SemshareError, match="fixed batch of 1; --batch needs an export made with --dynamic-batch"):
        plan_build(req(tmp_path, batch=(1, 2, 4)), STATIC)
    assert parse_batch("4") == (4, 4, 4) and parse_batch("1:2:8") == (1, 2, 8) and parse_batch(None) is None
    for bad in ("0", "4:2:8", "a", "1:2"):
        with pytest.raises(SemshareError, match="--batch"):
            parse_batch(bad)


def test_argument_errors_before_anything_else(tmp_path):
    for bad, msg in ((dict(precision="int4"), "unknown precision"), (dict(preset="xavier"), "unknown target preset"),
                     (dict(precision="int8"), "needs calibration data"),
                     (dict(precision="fp16", calib_dir=tmp_path), "only used with --precision int8"),
                     (dict(optimization_level=7), "0..5"), (dict(output=tmp_path / "m.json"), "collide")):
        with pytest.raises(SemshareError, match=msg):
            validate_request(req(tmp_path, **bad))


# --- validation order: everything is checked before TensorRT is imported ------------------------------


def test_not_a_semshare_export(tmp_path):
    path = fake_export(tmp_path)
    (tmp_path / "m.json").unlink()
    with pytest.raises(SemshareError, match="not a semshare export: no manifest m.json"):
        read_export_manifest(path)
    (tmp_path / "m.json").write_text(json.dumps({"format": "other/1"}))
    with pytest.raises(SemshareError, match="not a semshare export .*format is 'other/1'"):
        build_engine(req(tmp_path))
    assert not (tmp_path / "m.engine").exists()


def test_calibration_folder_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SemshareError, match="holds no fov120_N/fov60_N image pairs"):
        find_calibration_pairs(empty, 8)
    with pytest.raises(SemshareError, match="is not a folder"):
        find_calibration_pairs(tmp_path / "nope", 8)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "fov120_00001.jpg").write_bytes(b"\xff\xd8 truncated")
    (bad / "fov60_00001.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(SemshareError, match="fov120_00001.jpg is unreadable"):
        find_calibration_pairs(bad, 8)


@pytest.mark.skipif(HAS_TRT, reason="checks the message shown where TensorRT is absent")
def test_missing_plugin_library_then_missing_tensorrt(tmp_path, monkeypatch):
    import onnx
    from onnx import helper

    path = fake_export(tmp_path)
    model = onnx.load(str(path))
    model.graph.node.append(helper.make_node("SpatialCorrelation", ["img120", "img60"], ["corr"], domain="semshare"))
    onnx.save(model, str(path))
    monkeypatch.setenv("SEMSHARE_PLUGIN_LIB", str(tmp_path / "libsemshare_plugins.so"))
    with pytest.raises(MissingDependencyError, match="SEMSHARE_PLUGIN_LIB=.* is not a file"):
        build_engine(req(tmp_path))
    (tmp_path / "libsemshare_plugins.so").write_bytes(b"\x7fELF")
    with pytest.raises(MissingDependencyError, match=r"TensorRT is not installed .*pip install semshare\[trt\]"):
        build_engine(req(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["libsemshare_plugins.so", "m.json", "m.onnx"]


# --- engine manifests -------------------------------------------------------------------------------


def manifest(**kw):
    base = dict(precision="fp16", preset="orin", tensorrt_version="10.3.0", cuda_version="12.6", gpu_name="Orin",
                compute_capability="8.7", source_onnx="m.onnx", source_onnx_sha256="a", prepared_onnx_sha256="b",
                plugin_library=None, plugin_library_sha256=None, calibration_sha256=None, calibration_pairs=0,
                hardware_compatibility="NONE", dla_core=None)
    base.update(kw)
    return EngineManifest(**base)


def test_engine_from_another_tensorrt_or_gpu_is_refused():
    check_engine_compatible(manifest(), "10.3.0", "Orin", "8.7")
    with pytest.raises(IncompatibleEngineError, match="built with TensorRT 10.3.0 but this machine runs TensorRT 10.13.3"):
        check_engine_compatible(manifest(), "10.13.3", "Orin", "8.7")
    with pytest.raises(IncompatibleEngineError, match="built for Orin .sm 8.7. but this GPU is NVIDIA H100"):
        check_engine_compatible(manifest(), "10.3.0", "NVIDIA H100", "9.0")
    check_engine_compatible(manifest(hardware_compatibility="AMPERE_PLUS"), "10.3.0", "NVIDIA H100", "9.0")
    with pytest.raises(IncompatibleEngineError, match="Ampere and newer"):
        check_engine_compatible(manifest(hardware_compatibility="AMPERE_PLUS"), "10.3.0", "Tesla T4", "7.5")
    with pytest.raises(IncompatibleEngineError, match="compute capability 8.7"):
        check_engine_compatible(manifest(hardware_compatibility="SAME_COMPUTE_CAPABILITY"), "10.3.0", "A100", "8.0")


def test_engine_manifest_round_trip(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    assert engine_manifest_path(engine).name == "m.engine.json"  # never the export's m.json
    with pytest.raises(SemshareError, match="has no manifest m.engine.json"):
        read_engine_manifest(engine)
    engine_manifest_path(engine).write_text(json.dumps(manifest(bindings=[{"name": "img120"}]).to_dict()))
    assert read_engine_manifest(engine).bindings == [{"name": "img120"}]


@pytest.mark.skipif(HAS_TRT, reason="checks the message shown where TensorRT is absent")
def test_runner_refuses_cleanly_without_tensorrt(tmp_path):
    from semshare.engine.runner import TensorRTRunner

    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    engine_manifest_path(engine).write_text(json.dumps(manifest().to_dict()))
    with pytest.raises(MissingDependencyError, match="TensorRT is not installed"), TensorRTRunner(engine):
        pass


def test_driver_mismatch_hint():
    from semshare.engine.runner import driver_mismatch_hint

    assert driver_mismatch_hint(12060, 13040, "13.4.4") == (
        "cuda-python 13.4.4 is built for CUDA 13.4 but this driver supports CUDA 12.6: "
        "pip install 'cuda-python>=12,<13' (JetPack 6 is CUDA 12)")
    assert "no NVIDIA driver was found" in driver_mismatch_hint(0, 13040, "13.4.4")
    assert driver_mismatch_hint(13000, 12060, "12.6.0") == ""  # an older runtime on a newer driver is fine


def test_cuda_python_without_a_driver_says_why():
    """The real cuda-python on a machine without an NVIDIA driver (CI): a one-line error naming the cause."""
    pytest.importorskip("cuda.bindings", reason="cuda-python is not installed")
    from semshare.engine.runner import cuda_backend

    backend = cuda_backend()
    if backend.rt.cudaDriverGetVersion()[1]:
        pytest.skip("an NVIDIA driver is installed here")
    assert backend.name == "cuda-python"
    with pytest.raises(SemshareError, match=r"^CUDA cudaSetDevice failed: CUDA driver version is insufficient for CUDA "
                                            r"runtime version; no NVIDIA driver was found \(libcuda.so\)"):
        backend.device_info(0)


# --- the CLI: one line, non-zero, no partial file -------------------------------------------------------


def run_cli(*args):
    return CliRunner().invoke(app, list(map(str, args)))


@pytest.mark.skipif(HAS_TRT, reason="checks the message shown where TensorRT is absent")
def test_cli_build_engine_errors(tmp_path):
    path = fake_export(tmp_path)
    r = run_cli("build-engine", path, "-o", tmp_path / "m.engine")
    assert r.exit_code == 3 and "TensorRT is not installed" in r.output and "pip install semshare[trt]" in r.output
    r = run_cli("build-engine", path, "--precision", "int8")
    assert r.exit_code == 2 and "needs calibration data" in r.output
    r = run_cli("build-engine", path, "--precision", "int8", "--calib-dir", tmp_path / "none")
    assert r.exit_code == 2 and "is not a folder" in r.output
    r = run_cli("build-engine", tmp_path / "other.onnx")
    assert r.exit_code == 2 and "does not exist" in r.output
    r = run_cli("build-engine", path, "--precision", "fp16", "--high-precision", "fp32")
    assert r.exit_code == 2 and "--high-precision only applies to --precision int8 (got --precision fp16)" in r.output
    for res in (r,):
        assert len([ln for ln in res.output.splitlines() if ln.strip()]) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.onnx"]


def test_cli_quantize_int8_without_calibration(tmp_path):
    path = fake_export(tmp_path)
    r = run_cli("quantize", path, "--precision", "int8")
    assert r.exit_code == 2 and "needs calibration data" in r.output
    empty = tmp_path / "empty"
    empty.mkdir()
    r = run_cli("quantize", path, "--precision", "int8", "--calib-dir", empty)
    assert r.exit_code == 2 and "holds no fov120_N/fov60_N image pairs" in r.output
    r = run_cli("quantize", path, "--precision", "int8", "--calib-dir", empty, "--high-precision", "bf16")
    assert r.exit_code == 2 and "unknown --high-precision 'bf16'; choose one of: fp16, fp32" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty", "m.json", "m.onnx"]
