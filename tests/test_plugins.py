"""The TensorRT plugins without a GPU or the TensorRT runtime.

All CPU:
- ``semshare.engine.plugins``: library search and registry checks (a fake registry; no TensorRT);
- the plugin library built with CMake against TensorRT 10.14 headers (downloaded at test time) and driven
  through ``getCreators`` by ``plugins/tests/plugin_harness.cpp``: names, fields, shapes, types, formats,
  serialisation round trip, clone; field sets from ``semshare.ops.contracts`` and from ONNX plugin nodes;
- its load-time registration against a stand-in ``libnvinfer.so.10`` (``plugins/tests/fake_nvinfer.cpp``): ctypes
  (Polygraphy), dlopen (trtexec --staticPlugins) and loadLibrary, in every order, each creator registered once;
- the kernels' per-element math, launch geometry and per-thread loops built for the host
  (``plugins/tests/kernels_host.cpp``, the same headers the CUDA kernels include) against the PyTorch reference
  ``semshare.ops``, batch > 65535 included;
- ``benchmarks/gpu_day.sh`` up to its stop before the first GPU step, the CUDA library it builds, and its
  correctness sweep through the host kernels.
"""

from __future__ import annotations

import ctypes
import math
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import plugins_build
import pytest
import torch

from semshare.errors import MissingDependencyError
from semshare.ops import homography_warp, spatial_correlation
from semshare.ops.contracts import (
    CONTRACTS,
    DOMAIN,
    HOMOGRAPHY_WARP,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    SPATIAL_CORRELATION,
)

FIELD_TYPES = {"INT": 5, "FLOAT": 1, "STRING": 6}  # nvinfer1::PluginFieldType kINT32, kFLOAT32, kCHAR
REQUIRED_VALUES = {"out_height": 486, "out_width": 768}  # HomographyWarp's required fields, e.g. fov60 -> fov120


def exporter_fields(contract) -> dict:
    """The attributes the exporter writes for a node of ``contract``: every attribute, defaults where given."""
    return {a.name: a.default if a.default is not None else REQUIRED_VALUES[a.name] for a in contract.attributes}


# ---- fixtures --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def harness() -> plugins_build.Harness:
    try:
        build_dir = plugins_build.build_plugins()
    except plugins_build.Unavailable as exc:
        pytest.skip(f"cannot build the plugin library here: {exc}")
    return plugins_build.Harness(build_dir)


@pytest.fixture(scope="session")
def host() -> ctypes.CDLL:
    try:
        return plugins_build.load_host_kernels(plugins_build.build_host_kernels())
    except plugins_build.Unavailable as exc:
        pytest.skip(f"cannot build the host kernels here: {exc}")


# ---- semshare.engine.plugins (no TensorRT) ---------------------------------------------------------------------
def test_library_search_order(tmp_path: Path):
    from semshare.engine import plugins

    build, package = tmp_path / "build", tmp_path / "pkg"
    (package / "lib").mkdir(parents=True)
    (package / "lib" / plugins.LIBRARY_NAME).write_bytes(b"")
    assert plugins.find_plugin_library({}, build, package) == (package / "lib" / plugins.LIBRARY_NAME).resolve()
    build.mkdir()
    (build / plugins.LIBRARY_NAME).write_bytes(b"")
    assert plugins.find_plugin_library({}, build, package) == (build / plugins.LIBRARY_NAME).resolve()
    env_lib = tmp_path / "custom.so"
    env_lib.write_bytes(b"")
    assert plugins.find_plugin_library({plugins.ENV_VAR: str(env_lib)}, build, package) == env_lib.resolve()


def test_library_missing_messages(tmp_path: Path):
    from semshare.engine import plugins

    with pytest.raises(MissingDependencyError, match="make plugins") as info:
        plugins.find_plugin_library({}, tmp_path / "build", tmp_path / "pkg")
    assert plugins.LIBRARY_NAME in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(MissingDependencyError, match=plugins.ENV_VAR):
        plugins.find_plugin_library({plugins.ENV_VAR: str(tmp_path / "nope.so")}, tmp_path, tmp_path)


class FakeRegistry:
    """Stands in for tensorrt.IPluginRegistry: load_library registers the given creator names."""

    def __init__(self, provides: tuple[str, ...], loadable: bool = True) -> None:
        self.provides, self.loadable, self.creators, self.loads = provides, loadable, set(), 0

    def get_creator(self, name, version, namespace):
        return object() if (name, version, namespace) in self.creators else None

    def load_library(self, path):
        self.loads += 1
        if not self.loadable:
            return None
        self.creators |= {(n, PLUGIN_VERSION, PLUGIN_NAMESPACE) for n in self.provides}
        return object()


def test_load_plugins_checks_the_registry(tmp_path: Path):
    from semshare.engine import plugins

    lib = tmp_path / plugins.LIBRARY_NAME
    registry = FakeRegistry(tuple(CONTRACTS))
    assert plugins.load_plugins(registry, lib) == lib
    assert plugins.load_plugins(registry, lib) == lib and registry.loads == 1  # idempotent
    with pytest.raises(MissingDependencyError, match="HomographyWarp"):
        plugins.load_plugins(FakeRegistry(("SpatialCorrelation",)), lib)
    with pytest.raises(MissingDependencyError, match="could not load"):
        plugins.load_plugins(FakeRegistry(tuple(CONTRACTS), loadable=False), lib)


def test_load_plugins_without_tensorrt(monkeypatch, tmp_path: Path):
    from semshare.engine import plugins

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(MissingDependencyError, match=r"pip install semshare\[trt\]"):
        plugins.load_plugins(library=tmp_path / plugins.LIBRARY_NAME)


def test_load_plugins_uses_the_global_registry(monkeypatch, tmp_path: Path):
    from semshare.engine import plugins

    registry = FakeRegistry(tuple(CONTRACTS))
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(get_plugin_registry=lambda: registry))
    assert plugins.load_plugins(library=tmp_path / "x.so") == tmp_path / "x.so" and registry.loads == 1


# ---- the plugin library through getCreators --------------------------------------------------------------------
def test_creators_match_the_contract(harness):
    result = harness.creators()
    assert result["count"] == 2
    by_name = {c["name"]: c for c in result["creators"]}
    assert set(by_name) == set(CONTRACTS)
    for name, contract in CONTRACTS.items():
        creator = by_name[name]
        assert (creator["version"], creator["namespace"]) == (PLUGIN_VERSION, PLUGIN_NAMESPACE)
        assert [(f["name"], f["type"]) for f in creator["fields"]] == [
            (a.name, FIELD_TYPES[a.type]) for a in contract.attributes
        ]


# ---- load-time registration vs loadLibrary (plugins/common/library.cpp) -------------------------------------------
# Each scenario runs in a fresh process with a stand-in libnvinfer.so.N (plugins/tests/fake_nvinfer.cpp: a recording
# registry whose loadLibrary refuses creators that are already registered, as TensorRT documents).
PLUGIN_KEYS = sorted((name, PLUGIN_VERSION, PLUGIN_NAMESPACE) for name in CONTRACTS)


def _registered(report: dict) -> list[tuple[str, str, str]]:
    return sorted((r["name"], r["version"], r["namespace"]) for r in report["registered"])


def _calls(report: dict) -> list[tuple[str, str, bool]]:
    return [(e["call"], e["name"], e["ok"]) for e in report["events"] if e["call"] != "loadLibrary"]


@pytest.mark.parametrize("steps", [["ctypes"], ["ctypes", "tensorrt"]], ids=["no-tensorrt", "tensorrt-after"])
def test_no_registration_without_tensorrt_in_the_process(harness, steps):
    r = plugins_build.registration_scenario(harness.library.parent, steps)
    assert r["events"] == [] and r["registered"] == [] and r["stderr"] == ""


@pytest.mark.parametrize("scope", ["tensorrt", "tensorrt_global"], ids=["python-rtld-local", "trtexec-global"])
def test_plain_dlopen_registers_each_creator_once(harness, scope):
    """polygraphy --plugins (ctypes.CDLL) and trtexec --staticPlugins (dlopen): the library registers itself,
    found through RTLD_NOLOAD even though the Python tensorrt module holds libnvinfer RTLD_LOCAL."""
    r = plugins_build.registration_scenario(harness.library.parent, [scope, "ctypes", "ctypes"])
    assert _registered(r) == PLUGIN_KEYS
    assert not any(e["by_load_library"] for e in r["registered"])
    assert sorted(_calls(r)) == sorted(("registerCreator", name, True) for name in CONTRACTS)


def test_another_tensorrt_major_gets_a_warning_and_no_registration(harness):
    """IPluginRegistry's vtable differs between majors: a library built for 10 must not call an 11 registry."""
    r = plugins_build.registration_scenario(harness.library.parent, ["tensorrt", "ctypes"], other_major=True)
    assert r["events"] == [] and r["registered"] == []
    warning = [line for line in r["stderr"].splitlines() if line.startswith("[W] semshare plugin:")]
    assert len(warning) == 1 and "built for TensorRT 10 but the process holds libnvinfer.so.11" in warning[0]


def test_load_library_of_a_fresh_library_registers_through_load_library_only(harness):
    """The constructor sees TensorRT on the stack and stays out: no registry call besides loadLibrary's own."""
    r = plugins_build.registration_scenario(harness.library.parent, ["tensorrt", "load_library"])
    assert r["load_library"] == [True]
    assert _registered(r) == PLUGIN_KEYS and all(e["by_load_library"] for e in r["registered"])
    assert sorted(_calls(r)) == sorted(("loadLibrary.registerCreator", name, True) for name in CONTRACTS)


@pytest.mark.parametrize("steps, loads", [
    (["tensorrt", "ctypes", "load_library"], [True]),                       # polygraphy first, then load_library
    (["ctypes", "tensorrt", "load_library"], [True]),                       # loaded before TensorRT was
    (["tensorrt", "load_library", "ctypes", "load_library"], [True, False]),  # TensorRT refuses a second load
])
def test_load_library_after_any_load_ends_with_one_registration(harness, steps, loads):
    r = plugins_build.registration_scenario(harness.library.parent, steps)
    assert r["load_library"] == loads
    assert _registered(r) == PLUGIN_KEYS and all(e["by_load_library"] for e in r["registered"])
    registered = [(call, name) for call, name, ok in _calls(r) if ok and call in ("registerCreator", "loadLibrary.registerCreator")]
    taken_back = [name for call, name, ok in _calls(r) if ok and call == "deregisterCreator"]
    assert sorted(registered) == sorted([("loadLibrary.registerCreator", n) for n in CONTRACTS] + [
        ("registerCreator", n) for n in taken_back])  # a self-registration is taken back before loadLibrary's
    if steps[:2] == ["tensorrt", "ctypes"]:
        assert sorted(taken_back) == sorted(CONTRACTS)
    if False in loads:
        refused = [e for e in r["events"] if e["call"] == "loadLibrary" and not e["ok"]]
        assert len(refused) == 1 and "exists already" in refused[0]["detail"]


@pytest.mark.parametrize("phase", ["build", "runtime"])
@pytest.mark.parametrize("contract", [SPATIAL_CORRELATION, HOMOGRAPHY_WARP], ids=lambda c: c.name)
def test_exporter_fields_create_a_full_plugin(harness, contract, phase):
    fields = exporter_fields(contract)
    r = harness.check(contract.name, fields, phase=phase)
    assert r["created"], r["create_log"]
    assert r["create_log"] == []
    assert r["capabilities"] and r["core"] == [contract.name, PLUGIN_VERSION, PLUGIN_NAMESPACE]
    assert r["interfaces"] == ["PLUGIN_V3ONE_CORE", "PLUGIN_V3ONE_BUILD", "PLUGIN_V3ONE_RUNTIME"]
    assert r["nb_outputs"] == 1
    assert {f["name"]: f["value"] for f in r["serialized"]} == fields
    assert r["roundtrip_equal"] and r["clone_equal"] and r["attach_equal"]


def test_type_and_format_tables(harness):
    corr = harness.check("SpatialCorrelation", exporter_fields(SPATIAL_CORRELATION))
    assert {k: v for k, v in corr["output_types"].items() if v} == {"FLOAT,FLOAT": "FLOAT", "HALF,HALF": "HALF"}
    assert corr["formats"] == [["FLOAT", "FLOAT", "FLOAT"], ["HALF", "HALF", "HALF"]]
    assert not corr["nonlinear_accepted"]
    warp = harness.check("HomographyWarp", exporter_fields(HOMOGRAPHY_WARP))
    assert {k: v for k, v in warp["output_types"].items() if v} == {"FLOAT,FLOAT": "FLOAT", "HALF,FLOAT": "HALF"}
    assert warp["formats"] == [["FLOAT", "FLOAT", "FLOAT"], ["HALF", "FLOAT", "HALF"]]
    assert not warp["nonlinear_accepted"]


def test_missing_optional_fields_take_defaults(harness):
    r = harness.check("SpatialCorrelation", {})
    assert r["created"] and {f["name"]: f["value"] for f in r["serialized"]} == SPATIAL_CORRELATION.defaults()
    r = harness.check("HomographyWarp", {"out_height": 10, "out_width": 20})
    assert r["created"]
    assert {f["name"]: f["value"] for f in r["serialized"]} == {"out_height": 10, "out_width": 20,
                                                               **HOMOGRAPHY_WARP.defaults()}


BAD_FIELDS = [
    ("SpatialCorrelation", {"patch_size": 8}, [], "patch_size"),
    ("SpatialCorrelation", {"patch_size": 0}, [], "patch_size"),
    ("SpatialCorrelation", {"kernel_size": 3}, [], "kernel_size"),
    ("SpatialCorrelation", {"stride": 2}, [], "stride"),
    ("SpatialCorrelation", {"dilation_patch": 0}, [], "dilation_patch"),
    ("SpatialCorrelation", {"normalize": 2}, [], "normalize"),
    ("SpatialCorrelation", {}, ["patch_size:f:9"], "patch_size"),
    ("SpatialCorrelation", {}, ["patch_size:l:9"], "patch_size"),
    ("SpatialCorrelation", {}, ["normalize:s:1"], "normalize"),
    ("SpatialCorrelation", {"patch_size": 9}, ["patch_size:i:9"], "more than once"),
    ("HomographyWarp", {"out_width": 768}, [], "out_height"),
    ("HomographyWarp", {"out_height": 486}, [], "out_width"),
    ("HomographyWarp", {"out_height": 1, "out_width": 768}, [], "out_height"),
    ("HomographyWarp", {"out_height": 486, "out_width": 768, "align_corners": 2}, [], "align_corners"),
    ("HomographyWarp", {"out_height": 486, "out_width": 768, "padding_mode": "border"}, [], "padding_mode"),
    ("HomographyWarp", {"out_height": 486, "out_width": 768}, ["padding_mode:i:0"], "padding_mode"),
    ("HomographyWarp", {"out_width": 768}, ["out_height:f:486"], "out_height"),
]


@pytest.mark.parametrize("plugin, fields, raw, needle", BAD_FIELDS)
def test_bad_fields_are_rejected_with_a_message(harness, plugin, fields, raw, needle):
    r = harness.check(plugin, fields, raw_fields=raw)
    assert not r["created"]
    errors = [m for m in r["create_log"] if m.startswith("1: ")]  # ILogger::Severity::kERROR
    assert len(errors) == 1 and needle in errors[0] and plugin in errors[0], r["create_log"]


def test_unknown_fields_are_ignored_with_a_warning(harness):
    r = harness.check("SpatialCorrelation", {"plugin_version": "1"})
    assert r["created"] and any("plugin_version" in m and m.startswith("2: ") for m in r["create_log"])


# The tightly model's three correlation levels and the fov60 -> fov120 warp, with symbolic and concrete batch.
CORR_SHAPES = [(1, 112, 32, 48), (1, 40, 64, 96), (1, 24, 128, 192), (3, 7, 5, 9)]
WARP_CASES = [((1, 6, 486, 768), 1, (486, 768)), ((2, 3, 20, 30), 2, (11, 17)), ((2, 3, 20, 30), 1, (64, 48))]


@pytest.mark.parametrize("shape", CORR_SHAPES)
@pytest.mark.parametrize("patch_size", [9, 3])
def test_correlation_output_shape_equals_pytorch(harness, shape, patch_size):
    fields = {**exporter_fields(SPATIAL_CORRELATION), "patch_size": patch_size}
    r = harness.check("SpatialCorrelation", fields, shapes=[shape, shape])
    x = torch.zeros(shape)
    expected = list(spatial_correlation(x, x, patch_size=patch_size).shape)
    assert r["output_shape"] == expected and r["configure"] == 0 and r["shape_change"] == 0
    symbolic = harness.check("SpatialCorrelation", fields, shapes=[("B",) + shape[1:3] + ("W",)] * 2)
    assert symbolic["output_shape"] == ["B", patch_size * patch_size, shape[2], "W"] and symbolic["configure"] == 0


@pytest.mark.parametrize("src_shape, h_batch, out_size", WARP_CASES)
@pytest.mark.parametrize("align_corners", [1, 0])
def test_warp_output_shape_equals_pytorch(harness, src_shape, h_batch, out_size, align_corners):
    fields = {**exporter_fields(HOMOGRAPHY_WARP), "out_height": out_size[0], "out_width": out_size[1],
              "align_corners": align_corners}
    r = harness.check("HomographyWarp", fields, shapes=[src_shape, (h_batch, 3, 3)])
    src = torch.zeros(src_shape)
    h = torch.eye(3).expand(h_batch, 3, 3)
    expected = list(homography_warp(src, h, out_size, align_corners=bool(align_corners)).shape)
    assert r["output_shape"] == expected and r["configure"] == 0 and r["shape_change"] == 0
    symbolic = harness.check("HomographyWarp", fields, shapes=[("B",) + src_shape[1:], ("HB", 3, 3)])
    assert symbolic["output_shape"] == ["B", src_shape[1], *out_size] and symbolic["configure"] == 0


@pytest.mark.parametrize("plugin, fields, shapes", [
    ("SpatialCorrelation", {}, [(1, 8, 4, 4), (1, 8, 4, 5)]),
    ("SpatialCorrelation", {}, [(2, 8, 4, 4), (1, 8, 4, 4)]),
    ("SpatialCorrelation", {}, [(1, 8, 4), (1, 8, 4)]),
    ("HomographyWarp", {"out_height": 4, "out_width": 4}, [(2, 3, 8, 8), (3, 3, 3)]),
    ("HomographyWarp", {"out_height": 4, "out_width": 4}, [(2, 3, 8, 8), (2, 2, 3)]),
])
def test_inconsistent_input_shapes_are_rejected(harness, plugin, fields, shapes):
    r = harness.check(plugin, fields, shapes=shapes)
    assert r["created"]
    rejected = [r.get("output_shape") is None, r.get("configure", -1) != 0, r.get("shape_change", -1) != 0]
    assert rejected[1] and rejected[2] or rejected[0], r
    assert any(m.startswith("1: ") for m in r["log"])


def onnx_model_with_plugin_nodes():
    """A graph shaped like ``semshare export --target tensorrt``'s plugin nodes (TENSORRT_NOTES.md)."""
    from onnx import TensorProto, helper

    corr = helper.make_node("SpatialCorrelation", ["f1", "f2"], ["corr"], domain=DOMAIN,
                            plugin_namespace=PLUGIN_NAMESPACE, plugin_version=PLUGIN_VERSION,
                            **exporter_fields(SPATIAL_CORRELATION))
    warp = helper.make_node("HomographyWarp", ["img", "h"], ["warped"], domain=DOMAIN,
                            plugin_namespace=PLUGIN_NAMESPACE, plugin_version=PLUGIN_VERSION,
                            **exporter_fields(HOMOGRAPHY_WARP))
    graph = helper.make_graph(
        [corr, warp], "plugins",
        [helper.make_tensor_value_info("f1", TensorProto.FLOAT, ["B", 112, 32, 48]),
         helper.make_tensor_value_info("f2", TensorProto.FLOAT, ["B", 112, 32, 48]),
         helper.make_tensor_value_info("img", TensorProto.FLOAT, ["B", 6, 486, 768]),
         helper.make_tensor_value_info("h", TensorProto.FLOAT, [1, 3, 3])],
        [helper.make_tensor_value_info("corr", TensorProto.FLOAT, None),
         helper.make_tensor_value_info("warped", TensorProto.FLOAT, None)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid(DOMAIN, 1)])


def test_onnx_plugin_node_attributes_are_accepted(harness):
    """Feed every plugin node's attributes to its creator, filtered as TensorRT's ONNX parser filters them."""
    listed = {c["name"]: [f["name"] for f in c["fields"]] for c in harness.creators()["creators"]}
    nodes = plugins_build.onnx_plugin_fields(onnx_model_with_plugin_nodes(), listed)
    assert [op for op, _ in nodes] == ["SpatialCorrelation", "HomographyWarp"]
    for op, fields in nodes:
        assert "plugin_version" not in fields and "plugin_namespace" not in fields
        r = harness.check(op, fields)
        assert r["created"] and r["create_log"] == [], r["create_log"]


def test_cmake_without_tensorrt_says_what_it_needs(tmp_path: Path):
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed")
    try:
        home = plugins_build.cuda_home()
    except plugins_build.Unavailable as exc:
        pytest.skip(str(exc))
    if any(Path(p, "NvInferRuntime.h").exists() for p in ("/usr/include", "/usr/include/x86_64-linux-gnu",
                                                         "/usr/include/aarch64-linux-gnu", "/usr/local/include")):
        pytest.skip("TensorRT headers are installed system-wide here")
    result = subprocess.run([cmake, "-S", str(plugins_build.PLUGINS), "-B", str(tmp_path / "b"),
                             f"-DTENSORRT_ROOT={tmp_path / 'no-tensorrt'}", f"-DCMAKE_CUDA_COMPILER={home}/bin/nvcc"],
                            capture_output=True, text=True)
    assert result.returncode != 0
    message = " ".join(result.stderr.split())
    assert "TensorRT (>= 10.3) C++ headers" in message and "-DTENSORRT_ROOT" in message


# ---- kernel math on the host vs the PyTorch reference ---------------------------------------------------------
def _ptr(t: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(t.data_ptr())


def _host_dtype(dtype: torch.dtype) -> int:
    return {torch.float32: 0, torch.float16: 1}[dtype]


def host_correlation(host, x1, x2, patch_size, dilation, normalize, tiled=None):
    b, c, h, w = x1.shape
    out = torch.empty(b, patch_size * patch_size, h, w, dtype=x1.dtype)
    args = (_host_dtype(x1.dtype), _ptr(x1), _ptr(x2), _ptr(out), b, c, h, w, patch_size, dilation, int(normalize))
    status = host.semshare_correlation_direct(*args) if tiled is None else host.semshare_correlation_tiled(*args, tiled)
    assert status == 0, f"host correlation returned {status}"
    return out


def correlation_plan(host, shape, patch_size, dilation, min_blocks):
    plan = (ctypes.c_longlong * 7)()
    host.semshare_correlation_plan(*shape, patch_size, dilation, min_blocks, plan)
    return dict(zip(("tiled", "rows_per_block", "row_groups", "chunk", "tiles_x", "tiles_y", "shared_bytes"), plan, strict=True))


CORR_CASES = [  # (B, C, H, W), P, d, normalize
    ((2, 5, 7, 9), 9, 1, True),
    ((1, 13, 11, 37), 9, 1, True),
    ((1, 16, 13, 21), 3, 2, True),
    ((3, 4, 5, 6), 7, 1, False),
    ((1, 3, 10, 40), 1, 1, True),
    ((2, 9, 17, 33), 5, 3, False),
    ((1, 6, 9, 8), 11, 1, True),  # no tiled kernel for P = 11: the direct kernel runs
]


def _tolerance(dtype):
    return dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-2, rtol=1e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("shape, patch_size, dilation, normalize", CORR_CASES)
def test_host_correlation_matches_pytorch(host, shape, patch_size, dilation, normalize, dtype):
    x1, x2 = torch.randn(shape).to(dtype), torch.randn(shape).to(dtype)
    # fp16: the reference sees the same rounded inputs, in float32
    ref = spatial_correlation(x1.float(), x2.float(), patch_size=patch_size, dilation_patch=dilation,
                              normalize=normalize)
    direct = host_correlation(host, x1, x2, patch_size, dilation, normalize)
    torch.testing.assert_close(direct.float(), ref, **_tolerance(dtype))
    for min_blocks in (0, 1 << 30):  # whole patch per block, and one displacement row per block
        plan = correlation_plan(host, shape, patch_size, dilation, min_blocks)
        if patch_size > 9:
            assert not plan["tiled"]
            continue
        assert plan["tiled"] and plan["shared_bytes"] <= 48 * 1024
        tiled = host_correlation(host, x1, x2, patch_size, dilation, normalize, tiled=min_blocks)
        torch.testing.assert_close(tiled.float(), ref, **_tolerance(dtype))


def test_correlation_plan_at_the_model_levels(host):
    for shape in CORR_SHAPES[:3]:
        whole = correlation_plan(host, shape, 9, 1, 0)
        assert whole["tiled"] and whole["row_groups"] == 1 and whole["chunk"] == 8
        split = correlation_plan(host, shape, 9, 1, 1 << 30)
        assert split["tiled"] and split["row_groups"] == 9 and split["rows_per_block"] == 1
    assert not correlation_plan(host, (1, 8, 32, 48), 9, 40, 0)["tiled"]  # halo too large: direct kernel


def random_homographies(n: int, strength: float) -> torch.Tensor:
    h = torch.eye(3).repeat(n, 1, 1) + strength * torch.randn(n, 3, 3)
    return h.contiguous()


def host_warp(host, src, h, out_size, align_corners, max_blocks=0):
    """The warp kernel's launch run on the CPU, every (block, thread) of the launcher's geometry; max_blocks > 0
    caps the grid so that each thread strides over many items."""
    b, c, hs, ws = src.shape
    out = torch.full((b, c, *out_size), float("nan"), dtype=src.dtype)  # an item never written stays NaN
    h = h.contiguous().float()
    status = host.semshare_homography_warp(_host_dtype(src.dtype), _ptr(src), _ptr(h), _ptr(out), b, c, hs, ws,
                                           out_size[0], out_size[1], h.shape[0], int(align_corners), max_blocks)
    assert status == 0
    return out


def warp_plan(host, batch, out_size):
    plan = (ctypes.c_longlong * 2)()
    host.semshare_homography_warp_plan(batch, *out_size, plan)
    return {"items": plan[0], "blocks": plan[1]}


WARP_HOST_CASES = [  # src shape, homography batch, out size, perturbation
    ((1, 3, 16, 24), 1, (16, 24), 0.0),
    ((2, 4, 15, 23), 2, (19, 13), 0.1),
    ((3, 2, 9, 31), 1, (8, 33), 0.3),  # strong perspective: many samples fall outside (zeros padding)
    ((2, 5, 20, 20), 2, (21, 21), 1.0),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["fp32", "fp16"])
@pytest.mark.parametrize("align_corners", [True, False])
@pytest.mark.parametrize("src_shape, h_batch, out_size, strength", WARP_HOST_CASES)
def test_host_warp_matches_pytorch(host, src_shape, h_batch, out_size, strength, align_corners, dtype):
    src = torch.randn(src_shape).to(dtype)
    h = random_homographies(h_batch, strength)
    ref = homography_warp(src.float(), h, out_size, align_corners=align_corners)
    out = host_warp(host, src, h, out_size, align_corners)
    torch.testing.assert_close(out.float(), ref, **_tolerance(dtype))


def test_warp_launch_geometry_has_no_batch_limit(host):
    """A 1-D grid over (batch, pixel) items: no gridDim.y/z (65535) for any batch, gridDim.x within 2^31 - 1."""
    for batch, out_size in [(1, (486, 768)), (65535, (2, 2)), (65536, (2, 2)), (70000, (3, 5)), (2**20, (486, 768))]:
        plan = warp_plan(host, batch, out_size)
        items = batch * out_size[0] * out_size[1]
        assert plan["items"] == items
        assert plan["blocks"] == min(-(-items // 256), 1 << 20) and 1 <= plan["blocks"] < 2**31


@pytest.mark.parametrize("max_blocks", [0, 7], ids=["planned-grid", "7-blocks-grid-stride"])
def test_host_warp_batch_beyond_65535_matches_pytorch(host, max_blocks):
    """Batch 70000 (more than gridDim.y allows) with per-sample homographies: every item written, equal to PyTorch."""
    batch = 70_000
    src = torch.randn(batch, 2, 4, 5)
    h = random_homographies(batch, 0.2)
    ref = homography_warp(src, h, (3, 4), align_corners=True)
    out = host_warp(host, src, h, (3, 4), True, max_blocks=max_blocks)
    assert not out.isnan().any()
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_host_warp_degenerate_z_leaves_points_undivided(host):
    src = torch.randn(2, 3, 12, 17)
    h = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]])  # q.z == 0 everywhere
    for align_corners in (True, False):
        ref = homography_warp(src, h, (12, 17), align_corners=align_corners)
        torch.testing.assert_close(host_warp(host, src, h, (12, 17), align_corners), ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant, counts", [
    ("mobilenetv3", {}),
    ("mobilenetv3_loosely", {"SpatialCorrelation": 5, "HomographyWarp": 3}),
    ("mobilenetv3_tightly", {"SpatialCorrelation": 3, "HomographyWarp": 5}),
])
def test_exported_plugin_nodes_are_accepted_with_pytorch_shapes(harness, tmp_path, variant, counts):
    """``semshare export --target tensorrt``: every plugin node's fields create its plugin, and the plugin's
    output shape, given the input shapes PyTorch sees at that call, equals PyTorch's output shape."""
    import onnx

    from semshare.export import export_onnx
    from semshare.models import create_model
    from semshare.ops import HomographyWarp, SpatialCorrelation

    size = (784, 800)
    out = tmp_path / f"{variant}.onnx"
    export_onnx(variant, out, target="tensorrt", height=size[0], width=size[1], verify=False)
    listed = {c["name"]: [f["name"] for f in c["fields"]] for c in harness.creators()["creators"]}
    nodes = plugins_build.onnx_plugin_fields(onnx.load(str(out)), listed)
    assert {op: sum(1 for o, _ in nodes if o == op) for op in counts} == counts and len(nodes) == sum(counts.values())

    calls: dict[str, list] = {"SpatialCorrelation": [], "HomographyWarp": []}  # PyTorch's shapes, call order
    model = create_model(variant)
    for module in model.modules():
        if isinstance(module, (SpatialCorrelation, HomographyWarp)):
            name = "SpatialCorrelation" if isinstance(module, SpatialCorrelation) else "HomographyWarp"

            def hook(m, args, output, name=name):
                hom = args[1] if len(args) > 1 and args[1] is not None else m.src_from_dst
                inputs = [tuple(args[0].shape), tuple(args[1].shape)] if name == "SpatialCorrelation" else \
                    [tuple(args[0].shape), tuple(hom.shape)]
                calls[name].append((inputs, list(output.shape)))

            module.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.zeros(1, 3, *size), torch.zeros(1, 3, *size))
    seen = {"SpatialCorrelation": 0, "HomographyWarp": 0}
    for op, fields in nodes:
        inputs, expected = calls[op][seen[op]]
        seen[op] += 1
        r = harness.check(op, fields, shapes=inputs)
        assert r["created"] and r["create_log"] == [], (op, fields, r["create_log"])
        assert r["output_shape"] == expected and r["configure"] == 0, (op, fields, inputs, r)
    assert seen == {op: len(c) for op, c in calls.items()}


# ---- benchmarks/gpu_day.sh and the GPU check's CUDA library (benchmarks/plugins_gpu.py), without a GPU ---------
GPU_DAY = plugins_build.ROOT / "benchmarks" / "gpu_day.sh"
GPU_DAY_STOP = "gpu_day: STOP before the first GPU step (kernels vs PyTorch on CUDA)"


@pytest.fixture(scope="module")
def gpu_day_cpu_run(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    """benchmarks/gpu_day.sh on this machine: its CPU steps (environment, prerequisites, the CUDA library built
    for one architecture), then the stop before the first GPU step."""
    try:
        home = plugins_build.cuda_home()
    except plugins_build.Unavailable as exc:
        pytest.skip(str(exc))
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: run benchmarks/gpu_day.sh for the real thing")
    out = tmp_path_factory.mktemp("gpu_day")
    env = {**os.environ, "PYTHON": sys.executable, "GPU_DAY_ARCH": f"sm_{plugins_build.TEST_ARCH[:2]}",
           "PATH": f"{home / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run(["bash", str(GPU_DAY), str(out)], capture_output=True, text=True, env=env, timeout=600)
    return result, out


def test_gpu_day_stops_before_the_first_gpu_step(gpu_day_cpu_run):
    result, out = gpu_day_cpu_run
    assert result.returncode == 3, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1].startswith(GPU_DAY_STOP) and "sees no CUDA device" in lines[-1]
    assert [line for line in lines if line.startswith("gpu_day:")] == [lines[-1]]  # one clear line, the last
    assert "torch:" in (out / "environment.txt").read_text()
    assert (out / "build" / "libsemshare_kernels_cuda.so").is_file()
    assert not (out / "card.txt").exists() and not (out / "SUMMARY.md").exists()  # nothing GPU-side was written


def test_gpu_day_usage():
    result = subprocess.run(["bash", str(GPU_DAY)], capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.startswith("usage: benchmarks/gpu_day.sh OUT_DIR")


@pytest.fixture
def gpu_check(monkeypatch) -> types.ModuleType:
    """benchmarks/plugins_gpu.py as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("plugins_gpu", plugins_build.ROOT / "benchmarks" / "plugins_gpu.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


class HostKernelsAsCuda:
    """The CUDA library's two launchers, served by the host build of the same kernel math (CPU pointers)."""

    def __init__(self, host: ctypes.CDLL) -> None:
        self.host = host

    def semshare_cuda_correlation(self, dtype, x1, x2, out, b, c, h, w, p, d, normalize, stream):
        """The tiled kernel where the launcher plans one (2 blocks per SM of a 132-SM card), else the direct one."""
        assert stream is None
        args = (dtype, x1, x2, out, b, c, h, w, p, d, normalize)
        status = self.host.semshare_correlation_tiled(*args, 264)
        return self.host.semshare_correlation_direct(*args) if status == 1 else status

    def semshare_cuda_homography_warp(self, dtype, src, hom, dst, b, c, hs, ws, hd, wd, hb, align, stream):
        assert stream is None
        return self.host.semshare_homography_warp(dtype, src, hom, dst, b, c, hs, ws, hd, wd, hb, align, 0)


@pytest.mark.slow
def test_gpu_day_correctness_sweep_runs_on_the_host_kernels(gpu_check, host, monkeypatch):
    """gpu_day's correctness step (fp32 and fp16) through the host build: the sweep's own code (cases, references,
    tolerances, the NaN-means-unwritten check) works before it first meets a GPU. The two model-level correlation
    cases are left out (their CPU reference alone takes seconds; the smaller cases take the same code paths)."""
    small = [case for case in gpu_check.CORRELATION_CHECKS if math.prod(case[0]) < 600_000]
    assert len(small) == len(gpu_check.CORRELATION_CHECKS) - 2
    monkeypatch.setattr(gpu_check, "CORRELATION_CHECKS", small)
    table, failures = gpu_check.correctness(HostKernelsAsCuda(host), device="cpu")
    assert failures == []
    rows = table.splitlines()[2:]
    expected = 2 * (len(gpu_check.CORRELATION_CHECKS) + 2 * len(gpu_check.WARP_CHECKS))
    assert len(rows) == expected and all(r.endswith("| ok") for r in rows)
    assert any("(70000, 2, 4, 5) H70000" in r for r in rows) and any("(70000, 1, 2, 3)" in r for r in rows)


def test_gpu_check_library_builds_and_loads(gpu_day_cpu_run, gpu_check):
    """The library ``benchmarks/plugins_gpu.py`` times on a GPU, built by its own command (gpu_day.sh's build step)
    and loaded through its own ctypes signatures, so the first GPU run cannot fail on a compile error or a missing
    symbol."""
    _, out = gpu_day_cpu_run
    lib = gpu_check.load_library(out / "build" / "libsemshare_kernels_cuda.so")
    no_device = (35, 100)  # cudaErrorInsufficientDriver, cudaErrorNoDevice: the launch got as far as the driver
    assert lib.semshare_cuda_correlation(0, None, None, None, 1, 8, 5, 7, 9, 1, 1, None) in no_device
    assert lib.semshare_cuda_homography_warp(1, None, None, None, 1, 3, 5, 7, 5, 7, 1, 1, None) in no_device
    assert lib.semshare_cuda_correlation(2, None, None, None, 1, 8, 5, 7, 9, 1, 1, None) == 1  # unknown dtype
    assert lib.semshare_cuda_peak_bandwidth_gbs() == 0.0
    # the table the script prints: bytes moved and the columns
    assert gpu_check.correlation_bytes((1, 24, 128, 192), 9, 2) == (2 * 24 + 81) * 128 * 192 * 2
    row = gpu_check.Row("SpatialCorrelation", "24@128x192", "fp16", 0.05, 0.5, None, 1e-3, 10**7)
    table = gpu_check.format_table([row], peak_gbs=4800.0)
    assert "10.0x" in table and "200.0" in table and "4.2%" in table and table.count("\n") == 2
