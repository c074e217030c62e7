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
    assert orin.timing_cache is None and orin.use_timing_cache  # the default file is keyed once TensorRT is known
    desk = plan_build(validate_request(req(tmp_path, preset="desktop", hardware_compat="ampere_plus",
                                           optimization_level=5, workspace_gib=1.5, no_timing_cache=True)), STATIC)
    assert desk.hardware_compatibility == "AMPERE_PLUS" and desk.optimization_level == 5
    assert desk.memory_pools == (("WORKSPACE", int(1.5 * (1 << 30))),) and not desk.use_timing_cache
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
                     (dict(preset="orin", dla_core=0, precision="int8", calib_dir=tmp_path, high_precision="fp32"),
                      "--high-precision fp32 layers could never run on it"),
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


# --- the TensorRT-version seam: DLA policy, timing-cache naming (pure) ------------------------------------


def test_dla_policy_per_tensorrt_version():
    from semshare.engine.build import dla_policy

    jp6 = dla_policy("10.3.0.30")  # JetPack 6: weakly typed, as trtexec's --useDLACore flow
    assert (jp6.typing, jp6.network_flags, jp6.builder_flags) == (
        "weak", (), ("GPU_FALLBACK", "FP16", "PREFER_PRECISION_CONSTRAINTS"))
    assert dla_policy("10.7.0").typing == "weak"
    new = dla_policy("11.4.1.2")  # JetPack 7.2.2: strongly typed DLA, no precision flags (removed in 11)
    assert (new.typing, new.network_flags, new.builder_flags) == ("strong", ("STRONGLY_TYPED",), ("GPU_FALLBACK",))
    assert dla_policy("11.5.0").typing == "strong"
    for version, msg in (("10.8.0", "10.7 was the last 10.x release with DLA"), ("10.13.3.9", "10.7 was the last"),
                         ("11.0.0", "none in 11.0-11.3"), ("11.3.0.1", "none in 11.0-11.3"),
                         ("11.4.0.5", "11.4.0 only on Windows on ARM"), ("8.5.2.2", "older than semshare supports")):
        with pytest.raises(SemshareError, match=rf"^--dla-core: TensorRT {version} .*{msg}"):
            dla_policy(version)


def test_for_tensorrt_sets_dla_typing_and_keys_the_timing_cache(tmp_path, monkeypatch):
    from semshare.engine.build import BuildTarget, for_tensorrt, timing_cache_name

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    orin = BuildTarget("10.3.0.30", "8.7")
    fp16 = for_tensorrt(plan_build(validate_request(req(tmp_path, preset="orin", dla_core=1)), STATIC), orin)
    assert fp16.typing == "weak" and fp16.network_flags == () and fp16.dla_core == 1
    assert fp16.builder_flags == ("GPU_FALLBACK", "FP16", "PREFER_PRECISION_CONSTRAINTS")
    int8 = for_tensorrt(plan_build(validate_request(req(tmp_path, preset="orin", dla_core=0, precision="int8",
                                                        calib_dir=tmp_path)), STATIC), orin)
    assert int8.builder_flags == ("GPU_FALLBACK", "FP16", "INT8", "PREFER_PRECISION_CONSTRAINTS")
    strong = for_tensorrt(plan_build(validate_request(req(tmp_path, preset="orin", dla_core=0)), STATIC),
                          BuildTarget("11.4.1", "8.7"))
    assert strong.typing == "strong" and strong.builder_flags == ("GPU_FALLBACK",)
    with pytest.raises(SemshareError, match="TensorRT 11.2.0 has no DLA on Jetson"):
        for_tensorrt(plan_build(validate_request(req(tmp_path, preset="orin", dla_core=0)), STATIC),
                     BuildTarget("11.2.0", "8.7"))
    gpu = for_tensorrt(plan_build(validate_request(req(tmp_path, preset="orin")), STATIC), BuildTarget("11.2.0", "8.7"))
    assert gpu.typing == "strong" and gpu.network_flags == ("STRONGLY_TYPED",) and gpu.builder_flags == ()
    # the timing cache: one file per (preset, TensorRT version, compute capability, hardware-compatibility level)
    assert fp16.timing_cache == tmp_path / "xdg" / "semshare" / "timing-orin-trt10.3.0.30-sm87-none.cache"
    desk = plan_build(validate_request(req(tmp_path, hardware_compat="ampere_plus")), STATIC)
    names = {for_tensorrt(desk, BuildTarget(v, cc)).timing_cache.name
             for v, cc in (("10.13.3.9", "8.6"), ("10.13.3.9", "8.9"), ("11.4.1", "8.6"))}
    assert names == {"timing-desktop-trt10.13.3.9-sm86-ampere_plus.cache", "timing-desktop-trt10.13.3.9-sm89-ampere_plus.cache",
                     "timing-desktop-trt11.4.1-sm86-ampere_plus.cache"}
    assert timing_cache_name("desktop", "10.13.3.9", "", "NONE") == "timing-desktop-trt10.13.3.9-smunknown-none.cache"
    mine = tmp_path / "mine.cache"
    assert for_tensorrt(plan_build(req(tmp_path, timing_cache=mine), STATIC), orin).timing_cache == mine
    assert for_tensorrt(plan_build(req(tmp_path, no_timing_cache=True), STATIC), orin).timing_cache is None


# --- the TensorRT seam with recording stand-ins ---------------------------------------------------------
# These check what semshare asks of TensorRT (names, order, values), not what TensorRT does: the objects below
# only record calls. The API names they answer to are the real ones, checked by tests/test_typecheck_trt.py
# against NVIDIA's stubs; the engine path itself runs only on a GPU machine with TensorRT.


class _Enum:
    def __init__(self, kind, *names):
        for n in names:
            setattr(self, n, f"{kind}.{n}")


FAKE_TRT = type("FakeTensorRT", (), dict(
    __version__="10.3.0.30",
    BuilderFlag=_Enum("BuilderFlag", "GPU_FALLBACK", "FP16", "INT8", "PREFER_PRECISION_CONSTRAINTS"),
    MemoryPoolType=_Enum("MemoryPoolType", "WORKSPACE"),
    ProfilingVerbosity=_Enum("ProfilingVerbosity", "DETAILED"),
    DeviceType=_Enum("DeviceType", "GPU", "DLA"),
    DataType=_Enum("DataType", "FLOAT", "HALF", "INT8"),
    LayerType=_Enum("LayerType", "CONVOLUTION", "POOLING", "QUANTIZE", "DEQUANTIZE", "PLUGIN_V3"),
    LayerInformationFormat=_Enum("LayerInformationFormat", "JSON"),
    HardwareCompatibilityLevel=_Enum("HardwareCompatibilityLevel", "AMPERE_PLUS"),
))()


class RecordingConfig:
    def __init__(self, dla_layers=()):
        self.flags, self.pools, self.profiles, self.dla_layers = [], {}, [], set(dla_layers)
        self.default_device_type, self.DLA_core = "DeviceType.GPU", -1

    def set_flag(self, flag):
        self.flags.append(flag)

    def set_memory_pool_limit(self, pool, size):
        self.pools[pool] = size

    def add_optimization_profile(self, profile):
        self.profiles.append(profile)

    def get_device_type(self, layer):
        return self.default_device_type

    def can_run_on_DLA(self, layer):
        return layer.name in self.dla_layers


class FakeBuilder:
    def __init__(self, cores):
        self.num_DLA_cores = cores


def test_apply_plan_sets_dla_core_device_and_flags_by_name(tmp_path):
    from semshare.engine.build import BuildTarget, apply_plan, for_tensorrt

    plan = for_tensorrt(plan_build(validate_request(req(tmp_path, preset="orin", dla_core=1)), STATIC),
                        BuildTarget("10.3.0.30", "8.7"))
    config = RecordingConfig()
    apply_plan(plan, FakeBuilder(cores=2), config, FAKE_TRT)
    assert config.default_device_type == "DeviceType.DLA" and config.DLA_core == 1
    assert config.flags == ["BuilderFlag.GPU_FALLBACK", "BuilderFlag.FP16", "BuilderFlag.PREFER_PRECISION_CONSTRAINTS"]
    assert config.profiling_verbosity == "ProfilingVerbosity.DETAILED"  # the inspector needs it
    assert config.pools == {"MemoryPoolType.WORKSPACE": 2 << 30} and config.builder_optimization_level == 3
    with pytest.raises(SemshareError, match="this device has no DLA"):
        apply_plan(plan, FakeBuilder(cores=0), RecordingConfig(), FAKE_TRT)
    with pytest.raises(SemshareError, match=r"--dla-core 1: this device has 1 DLA core\(s\) \(0..0\)"):
        apply_plan(plan, FakeBuilder(cores=1), RecordingConfig(), FAKE_TRT)
    gpu = RecordingConfig()
    apply_plan(for_tensorrt(plan_build(req(tmp_path), STATIC), BuildTarget("10.3.0.30", "8.7")), FakeBuilder(2), gpu, FAKE_TRT)
    assert gpu.default_device_type == "DeviceType.GPU" and gpu.DLA_core == -1 and gpu.flags == []
    strong = for_tensorrt(plan, BuildTarget("11.4.1", "8.7"))
    with pytest.raises(MissingDependencyError, match=r"TensorRT 10.3.0.30 has no BuilderFlag.TF32"):
        apply_plan(type(strong)(**{**vars(strong), "builder_flags": ("TF32",)}), FakeBuilder(2), RecordingConfig(), FAKE_TRT)


class FakeTensor:
    def __init__(self, dtype):
        self.dtype = dtype


class FakeLayer:
    def __init__(self, name, type_, *out_dtypes):
        self.name, self.type, self._outs = name, f"LayerType.{type_}", [FakeTensor(f"DataType.{d}") for d in out_dtypes]
        self.num_outputs, self.output_types = len(self._outs), {}
        self.precision = None

    def get_output(self, i):
        return self._outs[i]

    def set_output_type(self, i, dtype):
        self.output_types[i] = dtype


class FakeNetwork:
    def __init__(self, *layers):
        self.layers = list(layers)
        self.num_layers = len(self.layers)

    def get_layer(self, i):
        return self.layers[i]


LRASPP_LIKE = FakeNetwork(FakeLayer("/backbone/conv", "CONVOLUTION", "HALF"),
                          FakeLayer("/head/AveragePool", "POOLING", "HALF"),
                          FakeLayer("/warp/HomographyWarp", "PLUGIN_V3", "FLOAT"),
                          FakeLayer("/q", "QUANTIZE", "FLOAT"))


def test_per_device_layer_report():
    from semshare.engine.build import format_layer_devices, layer_devices

    config = RecordingConfig(dla_layers={"/backbone/conv", "/q"})
    config.default_device_type = "DeviceType.DLA"
    devices = layer_devices(LRASPP_LIKE, config, FAKE_TRT)
    assert devices == {"DLA": ["/backbone/conv", "/q"], "GPU": ["/head/AveragePool", "/warp/HomographyWarp"]}
    assert format_layer_devices(devices, dla_requested=True) == [
        "2 layers on DLA, 2 on GPU: /head/AveragePool, /warp/HomographyWarp"]
    assert format_layer_devices(devices, True, limit=1) == [
        "2 layers on DLA, 2 on GPU: /head/AveragePool, ... (+1 more, all in the manifest)"]
    gpu_only = layer_devices(LRASPP_LIKE, RecordingConfig(dla_layers={"/backbone/conv"}), FAKE_TRT)
    assert gpu_only == {"DLA": [], "GPU": [layer.name for layer in LRASPP_LIKE.layers]}  # default device GPU
    assert format_layer_devices(gpu_only, dla_requested=False) == ["0 layers on DLA, 4 on GPU"]
    assert format_layer_devices(gpu_only, dla_requested=True)[1] == (
        "warning: --dla-core was given but no layer runs on DLA; this engine is GPU-only")


def test_weak_typing_pins_the_fp32_layers():
    from semshare.engine.build import pin_float32_layers

    net = FakeNetwork(FakeLayer("conv", "CONVOLUTION", "HALF"), FakeLayer("grid", "CONVOLUTION", "FLOAT", "FLOAT"),
                      FakeLayer("q", "QUANTIZE", "FLOAT"), FakeLayer("mixed", "CONVOLUTION", "FLOAT", "HALF"))
    assert pin_float32_layers(net, FAKE_TRT) == 1
    conv, grid, q, mixed = net.layers
    assert grid.precision == "DataType.FLOAT" and grid.output_types == {0: "DataType.FLOAT", 1: "DataType.FLOAT"}
    assert conv.precision is None and q.precision is None and mixed.precision is None


def test_engine_inspector_json_is_summarised():
    from semshare.engine.build import engine_layers

    detailed = json.dumps({"Layers": [{"Name": "conv + relu", "LayerType": "CaskConvolution", "Inputs": []},
                                      {"Name": "{ForeignNode[/a.../b]}", "LayerType": "Myelin"}],
                           "Bindings": ["img120", "seg120"]})
    assert engine_layers(detailed) == [{"name": "conv + relu", "type": "CaskConvolution"},
                                       {"name": "{ForeignNode[/a.../b]}", "type": "Myelin"}]
    assert engine_layers(json.dumps({"Layers": ["conv + relu"], "Bindings": []})) == [{"name": "conv + relu", "type": ""}]
    with pytest.raises(SemshareError, match="unreadable engine-inspector output"):
        engine_layers("not json")


class CacheConfig:
    """create_timing_cache / set_timing_cache as TensorRT answers them: None or an exception for a corrupt blob,
    False from set_timing_cache for a blob of another TensorRT/GPU."""

    def __init__(self, corrupt="none", mismatch=False, no_cache=False):
        self.corrupt, self.mismatch, self.no_cache, self.attached = corrupt, mismatch, no_cache, []

    def create_timing_cache(self, data):
        if self.no_cache:
            return None
        if data.startswith(b"junk"):
            if self.corrupt == "raise":
                raise RuntimeError("TensorRT: timing cache deserialization failed")
            return None
        return ("cache", bytes(data))

    def set_timing_cache(self, cache, ignore_mismatch):
        if cache is None:
            raise TypeError("set_timing_cache(None) is what Polygraphy guards against")
        if self.mismatch and cache[1] and not ignore_mismatch:
            return False
        self.attached.append(cache)
        return True


def test_timing_cache_corrupt_or_mismatched_is_discarded(tmp_path):
    from semshare.engine.build import load_timing_cache

    path = tmp_path / "t.cache"
    for corrupt in ("none", "raise"):
        path.write_bytes(b"junk" * 100)
        logs = []
        config = CacheConfig(corrupt=corrupt)
        assert load_timing_cache(config, path, logs.append) == ("cache", b"")
        assert config.attached == [("cache", b"")]
        assert logs == [f"warning: timing cache {path} is corrupt or from another TensorRT/GPU; discarded, starting a fresh one"]
    path.write_bytes(b"good blob")
    logs = []
    config = CacheConfig(mismatch=True)
    assert load_timing_cache(config, path, logs.append) == ("cache", b"") and "discarded" in logs[0]
    logs = []
    assert load_timing_cache(CacheConfig(), path, logs.append) == ("cache", b"good blob")
    assert logs == [f"timing cache: {path} (0 KiB)"]
    logs = []
    assert load_timing_cache(CacheConfig(), tmp_path / "absent.cache", logs.append) == ("cache", b"") and logs == []
    logs = []
    assert load_timing_cache(CacheConfig(no_cache=True), path, logs.append) is None
    assert logs[-1] == "warning: TensorRT could not create a timing cache; building without one"


# --- ONNX checks before TensorRT: the opset-20 GridSample trap, DLA blockers ----------------------------


def grid_sample_export(tmp_path, opset, mode):
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("img120", TensorProto.FLOAT, [1, 3, 784, 800])
    grid = helper.make_tensor_value_info("grid", TensorProto.FLOAT, [1, 784, 800, 2])
    o = helper.make_tensor_value_info("seg120", TensorProto.FLOAT, [1, 3, 784, 800])
    attrs = {} if mode is None else {"mode": mode}
    node = helper.make_node("GridSample", ["img120", "grid"], ["seg120"], name="/warp/GridSample", **attrs)
    model = helper.make_model(helper.make_graph([node], "g", [x, grid], [o]),
                              opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    (tmp_path / "m.json").write_text(json.dumps({"format": "semshare-export/1", "variant": "mobilenetv3",
                                                 "inputs": [], "outputs": []}))
    return path


def test_opset20_grid_sample_is_refused(tmp_path):
    from semshare.engine.build import inspect_onnx

    for opset, mode in ((16, "bilinear"), (17, None), (19, "nearest"), (19, "bicubic")):
        assert inspect_onnx(grid_sample_export(tmp_path, opset, mode)).dla_blockers == ["/warp/GridSample (GridSample)"]
    for opset, mode in ((20, "linear"), (20, None), (20, "bilinear"), (19, "linear"), (16, "cubic")):
        grid_sample_export(tmp_path, opset, mode)
        with pytest.raises(SemshareError, match=rf"^m.onnx: GridSample /warp/GridSample \(opset {opset}, mode .*\) would "
                                                r"run as nearest in TensorRT .*export at opset 16-19, as `semshare export` does$"):
            build_engine(req(tmp_path))
    import onnx
    from onnx import version_converter

    path = grid_sample_export(tmp_path, 19, "bilinear")  # what semshare export writes, then onnx's converter to 20:
    converted = version_converter.convert_version(onnx.load(str(path)), 20)
    assert [a.s for a in converted.graph.node[0].attribute if a.name == "mode"] == [b"linear"]  # the trap itself
    onnx.save(converted, str(path))
    r = run_cli("build-engine", path, "-o", tmp_path / "m.engine")
    assert r.exit_code == 2 and len([ln for ln in r.output.splitlines() if ln.strip()]) == 1
    assert "export at opset 16-19" in r.output and not (tmp_path / "m.engine").exists()


def test_dla_blockers_name_the_lraspp_pool(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from semshare.engine.build import dla_blockers

    nodes = [helper.make_node("AveragePool", ["x"], ["p"], name="/head/AveragePool", kernel_shape=[49, 49], strides=[16, 20]),
             helper.make_node("AveragePool", ["x"], ["q"], name="/small/AveragePool", kernel_shape=[8, 8]),
             helper.make_node("MaxPool", ["x"], ["m"], name="/big/MaxPool", kernel_shape=[3, 9]),
             helper.make_node("SpatialCorrelation", ["x", "x"], ["c"], name="/corr", domain="semshare")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 784, 800])], [])
    assert dla_blockers(onnx.helper.make_model(g)) == [
        "/head/AveragePool (AveragePool 49x49 window; DLA pools 1-8)", "/big/MaxPool (MaxPool 3x9 window; DLA pools 1-8)",
        "/corr (plugin SpatialCorrelation)"]


class _Flag(int):
    """An int-valued enum member (``int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)`` is 1 on 10.x)."""


class FakeBuildTensorRT:
    """A recording stand-in for the ``tensorrt`` module, just enough for :func:`build_serialized`: it parses
    nothing and builds nothing (``build_serialized_network`` returns placeholder bytes); it records what semshare
    asks for so the wiring (network flags, DLA core on the inspector's runtime, layer report) can be checked."""

    def __init__(self, version, cores, network, inspector_json):
        self.__version__ = version
        for name in ("BuilderFlag", "MemoryPoolType", "ProfilingVerbosity", "DeviceType", "DataType", "LayerType",
                     "LayerInformationFormat", "HardwareCompatibilityLevel"):
            setattr(self, name, getattr(FAKE_TRT, name))
        self.NetworkDefinitionCreationFlag = type("F", (), {"STRONGLY_TYPED": _Flag(1)})
        self.cores, self.network, self.inspector_json, self.calls = cores, network, inspector_json, []
        fake = self

        class Logger:
            VERBOSE, WARNING = "VERBOSE", "WARNING"

            def __init__(self, severity):
                pass

        class Builder:
            def __init__(self, logger):
                self.num_DLA_cores = fake.cores

            def create_network(self, flags):
                fake.calls.append(("create_network", flags))
                return fake.network

            def create_builder_config(self):
                fake.config = RecordingConfig(dla_layers={"/backbone/conv"})
                return fake.config

            def build_serialized_network(self, network, config):
                fake.calls.append(("build", config.default_device_type, config.DLA_core))
                return b"placeholder, not an engine"

        class OnnxParser:
            num_errors = 0

            def __init__(self, network, logger):
                pass

            def parse_from_file(self, path):
                return True

        class Runtime:
            def __init__(self, logger):
                self.DLA_core = -1

            def deserialize_cuda_engine(self, data):
                fake.calls.append(("deserialize", self.DLA_core))
                return type("Engine", (), {"create_engine_inspector": lambda _: type("Inspector", (), {
                    "get_engine_information": lambda _, fmt: fake.inspector_json})()})()

        self.Logger, self.Builder, self.OnnxParser, self.Runtime = Logger, Builder, OnnxParser, Runtime


class IONetwork(FakeNetwork):
    def __init__(self, *layers):
        super().__init__(*layers)
        dtype = type("D", (), {"name": "FLOAT"})
        io = type("T", (), {"name": "img120", "shape": (1, 3, 784, 800), "dtype": dtype})
        self.num_inputs = self.num_outputs = 1
        self.get_input = self.get_output = lambda i: io


def test_build_serialized_wiring_for_dla(tmp_path, monkeypatch):
    from semshare.engine.build import BuildTarget, build_serialized, for_tensorrt

    net = IONetwork(FakeLayer("/backbone/conv", "CONVOLUTION", "HALF"), FakeLayer("/head/AveragePool", "POOLING", "HALF"),
                    FakeLayer("/grid/MatMul", "CONVOLUTION", "FLOAT"))
    inspector = json.dumps({"Layers": [{"Name": "{ForeignNode[/backbone/conv]}", "LayerType": "DLA?"},
                                       {"Name": "/head/AveragePool", "LayerType": "CaskPooling"}]})
    fake = FakeBuildTensorRT("10.3.0.30", 2, net, inspector)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    plan = for_tensorrt(plan_build(validate_request(req(tmp_path, preset="orin", dla_core=1, no_timing_cache=True)),
                                   STATIC), BuildTarget("10.3.0.30", "8.7"))
    logs = []
    built = build_serialized(plan, tmp_path / "m.onnx", logs.append)
    assert fake.calls == [("create_network", 0),  # weakly typed on 10.x: no STRONGLY_TYPED bit
                          ("build", "DeviceType.DLA", 1),
                          ("deserialize", 1)]  # the inspector's runtime gets the DLA core before deserializing
    assert net.layers[2].precision == "DataType.FLOAT" and net.layers[0].precision is None  # FP32 layers pinned
    assert "weakly typed build (FP16 flags), 1 FP32 layers pinned to FP32" in logs[0]
    assert built.layer_devices == {"DLA": ["/backbone/conv"], "GPU": ["/head/AveragePool", "/grid/MatMul"]}
    assert built.engine_layers == [{"name": "{ForeignNode[/backbone/conv]}", "type": "DLA?"},
                                   {"name": "/head/AveragePool", "type": "CaskPooling"}]
    assert built.bindings == [{"name": "img120", "mode": "input", "dtype": "FLOAT", "shape": [1, 3, 784, 800]},
                              {"name": "img120", "mode": "output", "dtype": "FLOAT", "shape": [1, 3, 784, 800]}]
    fake = FakeBuildTensorRT("11.4.1", 2, IONetwork(FakeLayer("/grid/MatMul", "CONVOLUTION", "FLOAT")), inspector)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    build_serialized(for_tensorrt(plan_build(validate_request(req(tmp_path, preset="orin", no_timing_cache=True)),
                                             STATIC), BuildTarget("11.4.1", "8.7")), tmp_path / "m.onnx", logs.append)
    assert fake.calls == [("create_network", 2), ("build", "DeviceType.GPU", -1), ("deserialize", -1)]
    assert fake.network.layers[0].precision is None  # strongly typed: nothing pinned
