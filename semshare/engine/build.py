"""``semshare build-engine``: a semshare ONNX export -> a strongly typed TensorRT engine + its manifest.

The build reads as a chain of small steps, each callable on its own::

    request  --validate_request-->  checked arguments (no TensorRT, no model run)
             --read_export_manifest / inspect_onnx-->  the export's manifest, inputs, plugin nodes
             --find_calibration_pairs-->  the INT8 calibration pairs (int8 only)
             --plan_build-->  BuildPlan: every builder setting as plain data (preset, DLA, profiles, cache)
             --import_tensorrt / find_plugin_library-->  fails here, cleanly, without TensorRT or the library
             --for_tensorrt-->  the plan for this TensorRT release and GPU: DLA policy, keyed timing-cache file
             --prepare_precision-->  the FP32 / FP16 / Q/DQ-INT8 ONNX (semshare.precision, CPU)
             --build_serialized-->  parse, apply_plan to a real IBuilderConfig, build, layer report (TensorRT)
             --write-->  engine + manifest, each written atomically

Everything up to ``plan_build`` (and ``for_tensorrt``, given a version) runs and is tested without TensorRT.
The precision lives in the ONNX: networks are created ``STRONGLY_TYPED``, so TensorRT 10.x and 11.x give the same
engine for the same file, and no ``BuilderFlag.FP16/INT8`` (gone in TensorRT 11) or INT8 calibrator is used. The
one exception is DLA on TensorRT 10.x, built weakly typed with FP16/INT8 flags as trtexec does
(:func:`dla_policy`, docs/tensorrt.md). Enum members are looked up by NAME: their values were renumbered between
TensorRT 10 and 11.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from semshare.errors import MissingDependencyError, SemshareError
from semshare.precision import (
    MIN_AGREEMENT,
    MIN_INT8_SHARE,
    PRECISIONS,
    check_high_precision,
    check_mix_options,
)

if TYPE_CHECKING:  # the stubs (tensorrt-stubs) type-check this module in CI; nothing imports TensorRT at run time here
    import tensorrt as trt

HARDWARE_COMPAT = {"none": "NONE", "ampere_plus": "AMPERE_PLUS", "same_cc": "SAME_COMPUTE_CAPABILITY"}
GIB = 1 << 30
TRT_INSTALL_HINT = "install it with `pip install semshare[trt]` (on Jetson it comes with JetPack: python3-libnvinfer)"


@dataclass(frozen=True)
class Preset:
    """Target defaults. ``jetson``: integrated GPU (shared DRAM, no hardware-compatible engines)."""

    name: str
    workspace_gib: float
    optimization_level: int
    jetson: bool
    dla: bool
    description: str


PRESETS: dict[str, Preset] = {
    # Jetson practice (TENSORRT_NOTES.md): workspace 1-2 GiB, optimisation level 3, build on the device.
    "orin": Preset("orin", 2.0, 3, jetson=True, dla=True,
                   description="Jetson Orin (JetPack 6: TensorRT 10.3, CUDA 12.6, sm_87); DLA on AGX/NX, not on Orin Nano"),
    "thor": Preset("thor", 4.0, 3, jetson=True, dla=False,
                   description="Jetson Thor (JetPack 7: TensorRT 10.13+/11.4+, CUDA 13, sm_110); no DLA"),
    "desktop": Preset("desktop", 4.0, 3, jetson=False, dla=False,
                      description="desktop/server GPUs (sm_75+); optional hardware-compatible engines (Ampere+)"),
}


@dataclass(frozen=True)
class InputSpec:
    """A graph input: name, dtype name (ONNX), shape with None for a symbolic dimension."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    @property
    def dynamic_batch(self) -> bool:
        return bool(self.shape) and self.shape[0] is None


@dataclass(frozen=True)
class ProfileShape:
    """One input's (min, opt, max) shapes in an optimisation profile."""

    name: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


@dataclass(frozen=True)
class BuildPlan:
    """Every builder setting as plain data, computed without TensorRT and applied by :func:`apply_plan`."""

    precision: str
    preset: str
    network_flags: tuple[str, ...]
    builder_flags: tuple[str, ...]
    memory_pools: tuple[tuple[str, int], ...]
    optimization_level: int
    hardware_compatibility: str
    default_device_type: str
    dla_core: int | None
    profiles: tuple[tuple[ProfileShape, ...], ...]
    timing_cache: Path | None  # the user's --timing-cache, or (after :func:`for_tensorrt`) the keyed default
    use_timing_cache: bool = True
    typing: str = "strong"  # "weak" only for DLA on TensorRT 10.x (see :func:`dla_policy`)
    tensorrt_version: str = ""  # set by :func:`for_tensorrt`


@dataclass(frozen=True)
class BuildTarget:
    """The machine the engine is built on: what the version-dependent settings depend on."""

    tensorrt_version: str
    compute_capability: str  # "8.7"; "" where no CUDA binding could tell


@dataclass(frozen=True)
class DlaPolicy:
    """How ``--dla-core`` builds on one TensorRT release (docs/tensorrt.md, "DLA")."""

    typing: str  # "strong" or "weak"
    network_flags: tuple[str, ...]
    builder_flags: tuple[str, ...]

#: The DLA cores a Jetson AGX / NX Orin has (Orin Nano has none).
DLA_CORES = (0, 1)


@dataclass
class BuildRequest:
    """What the user asked for (the CLI's options)."""

    onnx: Path
    output: Path
    precision: str = "fp16"
    preset: str = "desktop"
    calib_dir: Path | None = None
    calib_count: int = 32
    batch: tuple[int, int, int] | None = None  # (min, opt, max) for a dynamic-batch export
    dla_core: int | None = None
    timing_cache: Path | None = None
    no_timing_cache: bool = False
    workspace_gib: float | None = None
    optimization_level: int | None = None
    hardware_compat: str = "none"
    plugin_library: Path | None = None
    checkpoint: Path | None = None  # for the accuracy report of the prepared ONNX
    report: Path | None = None
    high_precision: str = "fp16"  # int8: what the non-quantized layers compute in
    val_dir: Path | None = None  # int8: held-out pairs (default: a split of calib_dir)
    min_agreement: float = MIN_AGREEMENT  # int8: the INT8/FP16 mix (semshare.precision.sensitivity)
    min_int8_share: float = MIN_INT8_SHARE


@dataclass
class BuildResult:
    engine: Path
    manifest: Path
    plan: BuildPlan
    seconds: float
    report: Any = None


@dataclass
class OnnxInfo:
    inputs: list[InputSpec]
    outputs: list[str]
    plugin_ops: list[str] = field(default_factory=list)
    dla_blockers: list[str] = field(default_factory=list)  # "node (why)" for nodes DLA cannot run: GPU fallback


def parse_batch(text: str | None) -> tuple[int, int, int] | None:
    """``"4"`` -> (4, 4, 4); ``"1:2:8"`` -> (1, 2, 8) (min:opt:max); None stays None."""
    if text is None:
        return None
    parts = text.split(":")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        vals = []
    if len(vals) == 1:
        vals *= 3
    if len(vals) != 3 or not (1 <= vals[0] <= vals[1] <= vals[2]):
        raise SemshareError(f"--batch {text!r}: give N or MIN:OPT:MAX with 1 <= MIN <= OPT <= MAX, e.g. 1:2:4")
    return vals[0], vals[1], vals[2]


def validate_request(req: BuildRequest) -> BuildRequest:
    """Argument checks that need neither the ONNX file nor TensorRT."""
    if req.precision not in PRECISIONS:
        raise SemshareError(f"unknown precision {req.precision!r}; choose one of: {', '.join(PRECISIONS)}")
    if req.preset not in PRESETS:
        raise SemshareError(f"unknown target preset {req.preset!r}; choose one of: {', '.join(PRESETS)}")
    preset = PRESETS[req.preset]
    if req.precision == "int8" and req.calib_dir is None:
        raise SemshareError(
            "--precision int8 needs calibration data: pass --calib-dir FOLDER of fov120_N/fov60_N pairs from your "
            "cameras (semshare never builds INT8 from made-up scales)"
        )
    if req.precision != "int8" and req.calib_dir is not None:
        raise SemshareError(f"--calib-dir is only used with --precision int8 (got --precision {req.precision})")
    check_high_precision(req.precision, req.high_precision)
    if req.precision != "int8" and req.val_dir is not None:
        raise SemshareError(f"--val-dir is only used with --precision int8 (got --precision {req.precision})")
    check_mix_options(req.min_agreement, req.min_int8_share)
    if req.calib_count < 1:
        raise SemshareError(f"--calib-count must be >= 1, got {req.calib_count}")
    if req.hardware_compat not in HARDWARE_COMPAT:
        raise SemshareError(f"unknown --hardware-compat {req.hardware_compat!r}; choose one of: {', '.join(HARDWARE_COMPAT)}")
    if req.hardware_compat != "none" and preset.jetson:
        raise SemshareError(f"--hardware-compat {req.hardware_compat} is for desktop GPUs; TensorRT does not build "
                            f"hardware-compatible engines for Jetson ({req.preset}): use --hardware-compat none")
    if req.dla_core is not None:
        if not preset.dla:
            raise SemshareError(f"--dla-core: the {req.preset} preset has no DLA ({preset.description}); "
                                "DLA exists on Jetson AGX/NX Orin: use --target orin")
        if req.dla_core not in DLA_CORES:
            raise SemshareError(f"--dla-core {req.dla_core}: Jetson Orin has DLA cores {' and '.join(map(str, DLA_CORES))}; "
                                "pass --dla-core 0 or 1")
        if req.precision == "fp32":
            raise SemshareError("DLA runs FP16 and INT8 only: use --precision fp16 or int8 with --dla-core")
        if req.precision == "int8" and req.high_precision == "fp32":
            raise SemshareError("DLA computes in FP16 and INT8 only, so --high-precision fp32 layers could never run "
                                "on it: use --high-precision fp16 with --dla-core")
        if req.hardware_compat != "none":
            raise SemshareError("DLA engines cannot be hardware-compatible: drop --hardware-compat")
    if req.optimization_level is not None and not 0 <= req.optimization_level <= 5:
        raise SemshareError(f"--opt-level must be 0..5, got {req.optimization_level}")
    if req.workspace_gib is not None and req.workspace_gib <= 0:
        raise SemshareError(f"--workspace must be > 0 GiB, got {req.workspace_gib}")
    if req.output.suffix == ".json":
        raise SemshareError(f"--output {req.output} would collide with the manifest; name the engine *.engine")
    return req


def inspect_onnx(path: Path) -> OnnxInfo:
    """Inputs (names, dtypes, shapes), outputs and semshare plugin ops of an ONNX file, without its weights."""
    import onnx

    from semshare.ops.contracts import DOMAIN

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError, OSError, ...
        raise SemshareError(f"cannot read ONNX {path}: {exc}; re-export it with `semshare export`") from None
    inits = {i.name for i in model.graph.initializer}
    inputs = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        tt = vi.type.tensor_type
        dims = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
        inputs.append(InputSpec(vi.name, onnx.TensorProto.DataType.Name(tt.elem_type).lower(), dims))
    check_grid_sample(model, path)
    plugins = sorted({n.op_type for n in model.graph.node if n.domain == DOMAIN})
    return OnnxInfo(inputs, [o.name for o in model.graph.output], plugins, dla_blockers(model))


#: The GridSample ``mode`` strings onnx-tensorrt's importer recognises; it imports any other string as NEAREST
#: without a word (onnx/onnx-tensorrt ``onnxOpImporters.cpp``; NVIDIA/TensorRT#4646, onnx/onnx-tensorrt#1060).
PARSER_GRID_SAMPLE_MODES = ("bilinear", "nearest", "bicubic")


def check_grid_sample(model: Any, path: Path) -> None:
    """Refuse a GridSample that TensorRT's ONNX parser would silently run as nearest.

    Opset 20 renamed GridSample's ``bilinear``/``bicubic`` to ``linear``/``cubic`` (and made ``linear`` the default);
    onnx-tensorrt only knows the old strings, so such a node, e.g. one that onnx's version converter wrote, builds
    an engine that samples nearest (NVIDIA/TensorRT#4646, seen on TensorRT 10.13-11.1).
    """
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    for node in model.graph.node:
        if node.op_type != "GridSample" or node.domain not in ("", "ai.onnx"):
            continue
        mode = next((a.s.decode() for a in node.attribute if a.name == "mode"), None)
        if opset >= 20 or (mode is not None and mode not in PARSER_GRID_SAMPLE_MODES):
            raise SemshareError(
                f"{path.name}: GridSample {node.name or '?'} (opset {opset}, mode {mode or 'default'!r}) would run as "
                "nearest in TensorRT (its ONNX parser knows only the opset-16 mode names, NVIDIA/TensorRT#4646); "
                "export at opset 16-19, as `semshare export` does"
            )


#: DLA pooling windows are 1-8 per side (NvInfer.h 10.3, IPoolingLayer::setWindowSizeNd).
DLA_MAX_POOL_WINDOW = 8


def dla_blockers(model: Any) -> list[str]:
    """Nodes of ``model`` that cannot run on DLA whatever the build, each as ``"name (why)"``.

    Not a full DLA capability check (TensorRT's builder decides, and :func:`layer_devices` reports it): the
    nodes known up front to fall back to the GPU, so the user hears about them before minutes of building.
    """
    from semshare.ops.contracts import DOMAIN

    out = []
    for node in model.graph.node:
        name = node.name or node.op_type
        if node.domain == DOMAIN:
            out.append(f"{name} (plugin {node.op_type})")
        elif node.op_type == "GridSample":
            out.append(f"{name} (GridSample)")
        elif node.op_type in ("AveragePool", "MaxPool"):
            kernel = next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"), [])
            if any(k > DLA_MAX_POOL_WINDOW for k in kernel):
                window = "x".join(map(str, kernel))
                out.append(f"{name} ({node.op_type} {window} window; DLA pools 1-{DLA_MAX_POOL_WINDOW})")
    return out


def timing_cache_name(preset: str, tensorrt_version: str, compute_capability: str, hardware_compatibility: str) -> str:
    """``timing-orin-trt10.3.0.30-sm87-none.cache``: a TensorRT upgrade, another GPU or another hardware-compatibility
    level never reuses a blob tuned for something else."""
    sm = compute_capability.replace(".", "") or "unknown"
    return f"timing-{preset}-trt{tensorrt_version or 'unknown'}-sm{sm}-{hardware_compatibility.lower()}.cache"


def default_timing_cache(name: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "semshare" / name


def _version_tuple(version: str) -> tuple[int, ...]:
    """``"10.3.0.30"`` -> (10, 3, 0, 30); non-numeric parts (``"11.4.1.post1"``) end the tuple."""
    out = []
    for part in version.split("."):
        if not part.isdigit():
            break
        out.append(int(part))
    return tuple(out)


def dla_policy(tensorrt_version: str) -> DlaPolicy:
    """What ``--dla-core`` builds on ``tensorrt_version``, or a SemshareError where that release cannot use DLA.

    - 10.0-10.7 (JetPack 6 ships 10.3): weakly typed, as trtexec's DLA flow (samples/common/sampleEngines.cpp of
      10.3 sets kFP16 (kINT8 for --int8), kPREFER_PRECISION_CONSTRAINTS and kGPU_FALLBACK; a strongly typed network
      refuses those precision flags). The layers the prepared ONNX keeps in FP32 are pinned to FP32
      (:func:`pin_float32_layers`), so the accuracy-critical grid math stays FP32 as in a strongly typed build.
    - 10.8-10.x: no DLA ("TensorRT 10.7 was the last 10.x release that supported DLA", Working with DLA, 11.4.1 docs).
    - 11.0-11.3: no DLA at all; 11.4.0: DLA only on Windows on ARM, without GPU fallback, which the plugins and
      GridSample need (11.4.0 / 11.4.1 release notes, Working with DLA).
    - 11.4.1 and later: strongly typed DLA on Jetson AGX Orin with JetPack 7.2.2+ ("Strongly Typed Networks for
      DLA", 11.4.1), GPU fallback as in 10.x; precision comes from the ONNX types, no precision flags (removed in 11).
    """
    v = _version_tuple(tensorrt_version)
    fix = "on Jetson AGX Orin use JetPack 6 (TensorRT 10.3) or TensorRT 11.4.1+ on JetPack 7.2.2+, or drop --dla-core"
    if v[:1] == (10,) and v[:2] <= (10, 7):
        return DlaPolicy("weak", (), ("GPU_FALLBACK", "FP16", "PREFER_PRECISION_CONSTRAINTS"))
    if v[:1] == (10,):
        raise SemshareError(f"--dla-core: TensorRT {tensorrt_version} has no DLA support (10.7 was the last 10.x "
                            f"release with DLA); {fix}")
    if (11,) <= v < (11, 4, 1):
        raise SemshareError(f"--dla-core: TensorRT {tensorrt_version} has no DLA on Jetson (none in 11.0-11.3; 11.4.0 "
                            f"only on Windows on ARM, without the GPU fallback semshare's plugins need); {fix}")
    if v < (10,):
        raise SemshareError(f"--dla-core: TensorRT {tensorrt_version} is older than semshare supports (10.3+); {fix}")
    return DlaPolicy("strong", ("STRONGLY_TYPED",), ("GPU_FALLBACK",))


def plan_build(req: BuildRequest, info: OnnxInfo) -> BuildPlan:
    """The builder settings for ``req`` on a graph with ``info``'s inputs (pure; tested without TensorRT)."""
    preset = PRESETS[req.preset]
    dynamic = [i.name for i in info.inputs if i.dynamic_batch]
    other_dynamic = [i.name for i in info.inputs if any(d is None for d in i.shape[1:])]
    if other_dynamic:
        raise SemshareError(f"inputs {', '.join(other_dynamic)} have symbolic dimensions other than the batch; "
                            "re-export with a fixed --height/--width")
    if dynamic:
        bmin, bopt, bmax = req.batch or (1, 1, 4)
        if req.dla_core is not None and bmin != bmax:
            raise SemshareError(
                f"DLA needs static shapes but the batch range is {bmin}:{bopt}:{bmax}; pass --batch N "
                "(one size) or export with a fixed --batch"
            )
        profile = tuple(
            ProfileShape(i.name, *(((b, *i.shape[1:]) if i.dynamic_batch else i.shape) for b in (bmin, bopt, bmax)))  # type: ignore[arg-type]
            for i in info.inputs
        )
        profiles: tuple[tuple[ProfileShape, ...], ...] = (profile,)
    else:
        fixed = {i.shape[0] for i in info.inputs if i.shape and i.shape[0] is not None}
        if req.batch is not None and (req.batch[0] != req.batch[2] or {req.batch[0]} != fixed):
            raise SemshareError(
                f"the ONNX has a fixed batch of {sorted(fixed)[0] if fixed else '?'}; --batch needs an export made "
                "with --dynamic-batch"
            )
        profiles = ()
    workspace = int((req.workspace_gib or preset.workspace_gib) * GIB)
    pools: list[tuple[str, int]] = [("WORKSPACE", workspace)]
    flags: list[str] = []
    device = "GPU"
    if req.dla_core is not None:
        flags.append("GPU_FALLBACK")  # plugins and GridSample never run on DLA
        device = "DLA"
    return BuildPlan(
        precision=req.precision,
        preset=req.preset,
        network_flags=("STRONGLY_TYPED",),
        builder_flags=tuple(flags),
        memory_pools=tuple(pools),
        optimization_level=preset.optimization_level if req.optimization_level is None else req.optimization_level,
        hardware_compatibility=HARDWARE_COMPAT[req.hardware_compat],
        default_device_type=device,
        dla_core=req.dla_core,
        profiles=profiles,
        timing_cache=None if req.no_timing_cache else req.timing_cache,
        use_timing_cache=not req.no_timing_cache,
    )


def for_tensorrt(plan: BuildPlan, target: BuildTarget) -> BuildPlan:
    """``plan`` with what depends on the TensorRT release and the GPU: the DLA typing and flags
    (:func:`dla_policy`) and the default timing-cache file (:func:`timing_cache_name`). Pure."""
    changes: dict[str, Any] = {"tensorrt_version": target.tensorrt_version}
    if plan.default_device_type == "DLA":
        policy = dla_policy(target.tensorrt_version)
        flags = list(policy.builder_flags)
        if plan.precision == "int8" and policy.typing == "weak":
            flags.insert(flags.index("FP16") + 1, "INT8")  # the Q/DQ layers in a weakly typed network
        changes.update(typing=policy.typing, network_flags=policy.network_flags, builder_flags=tuple(flags))
    if plan.use_timing_cache and plan.timing_cache is None:
        name = timing_cache_name(plan.preset, target.tensorrt_version, target.compute_capability,
                                 plan.hardware_compatibility)
        changes["timing_cache"] = default_timing_cache(name)
    return replace(plan, **changes)


# --- TensorRT from here on ---------------------------------------------------------------------------


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or MissingDependencyError with the install hint."""
    try:
        import tensorrt
    except ImportError as exc:
        raise MissingDependencyError(f"TensorRT is not installed ({exc}); {TRT_INSTALL_HINT}") from None
    return tensorrt


def _enum(trt_mod: Any, enum_name: str, name: str) -> Any:
    """``trt_mod.<enum_name>.<name>`` by NAME (values differ between TensorRT 10 and 11); a clear error where the
    running release has no such member."""
    member = getattr(getattr(trt_mod, enum_name, None), name, None)
    if member is None:
        raise MissingDependencyError(f"TensorRT {trt_mod.__version__} has no {enum_name}.{name}; "
                                     "this setting needs another TensorRT release (see docs/tensorrt.md)")
    return member


def apply_plan(plan: BuildPlan, builder: trt.Builder, config: trt.IBuilderConfig, trt_mod: Any) -> None:
    """Translate ``plan`` onto a real IBuilderConfig (the only place builder settings are set).

    ``trt_mod`` is the ``tensorrt`` module (passed in so this translation is testable where TensorRT is absent).
    """
    for flag in plan.builder_flags:
        config.set_flag(_enum(trt_mod, "BuilderFlag", flag))
    for pool, size in plan.memory_pools:
        config.set_memory_pool_limit(_enum(trt_mod, "MemoryPoolType", pool), size)
    config.builder_optimization_level = plan.optimization_level
    config.profiling_verbosity = _enum(trt_mod, "ProfilingVerbosity", "DETAILED")  # for the engine inspector
    if plan.hardware_compatibility != "NONE":
        config.hardware_compatibility_level = _enum(trt_mod, "HardwareCompatibilityLevel", plan.hardware_compatibility)
    if plan.default_device_type == "DLA":
        cores = builder.num_DLA_cores
        if cores == 0:
            raise SemshareError("--dla-core given but this device has no DLA (Orin Nano, Thor, desktop GPUs); "
                                "drop --dla-core")
        if plan.dla_core is not None and plan.dla_core >= cores:
            raise SemshareError(f"--dla-core {plan.dla_core}: this device has {cores} DLA core(s) (0..{cores - 1})")
        config.default_device_type = _enum(trt_mod, "DeviceType", "DLA")
        config.DLA_core = plan.dla_core or 0
    for shapes in plan.profiles:
        profile = builder.create_optimization_profile()
        for s in shapes:
            profile.set_shape(s.name, trt_mod.Dims(list(s.min)), trt_mod.Dims(list(s.opt)), trt_mod.Dims(list(s.max)))
        config.add_optimization_profile(profile)


def pin_float32_layers(network: trt.INetworkDefinition, trt_mod: Any) -> int:
    """Weakly typed builds only (DLA on TensorRT 10.x): ask for FP32 in every layer whose outputs the prepared ONNX
    types FP32, so that with kFP16 set the builder keeps them FP32 (kPREFER_PRECISION_CONSTRAINTS) as a strongly
    typed build would. Q/DQ layers keep their own types. Returns how many layers were pinned."""
    fp32 = _enum(trt_mod, "DataType", "FLOAT")
    skip = {_enum(trt_mod, "LayerType", "QUANTIZE"), _enum(trt_mod, "LayerType", "DEQUANTIZE")}
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        outs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if layer.type in skip or not outs or any(t.dtype != fp32 for t in outs):
            continue
        layer.precision = fp32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, fp32)
        pinned += 1
    return pinned


def layer_devices(network: trt.INetworkDefinition, config: trt.IBuilderConfig, trt_mod: Any) -> dict[str, list[str]]:
    """Network layer names by the device the builder assigns them: ``{"DLA": [...], "GPU": [...]}``.

    A layer goes to DLA when its device type is DLA (the default device type of a DLA build) and
    ``config.can_run_on_DLA(layer)``; otherwise GPU_FALLBACK runs it on the GPU (the builder's own rule, the one
    behind its "Unsupported on DLA. Switching this layer's device type to GPU" messages).
    """
    dla = _enum(trt_mod, "DeviceType", "DLA")
    out: dict[str, list[str]] = {"DLA": [], "GPU": []}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        on_dla = config.get_device_type(layer) == dla and config.can_run_on_DLA(layer)
        out["DLA" if on_dla else "GPU"].append(layer.name)
    return out


def format_layer_devices(devices: dict[str, list[str]], dla_requested: bool, limit: int = 12) -> list[str]:
    """The lines printed after a build: ``N layers on DLA, M on GPU: <names>`` and, where DLA was asked for and got
    nothing, a warning."""
    dla, gpu = devices.get("DLA", []), devices.get("GPU", [])
    if not dla_requested:
        return [f"{len(dla)} layers on DLA, {len(gpu)} on GPU"]
    names = ", ".join(gpu[:limit]) + (f", ... (+{len(gpu) - limit} more, all in the manifest)" if len(gpu) > limit else "")
    lines = [f"{len(dla)} layers on DLA, {len(gpu)} on GPU" + (f": {names}" if gpu else "")]
    if not dla:
        lines.append("warning: --dla-core was given but no layer runs on DLA; this engine is GPU-only")
    return lines


def engine_layers(info_json: str) -> list[dict[str, str]]:
    """The engine inspector's ``get_engine_information(LayerInformationFormat.JSON)`` as ``[{"name", "type"}]``
    (built with ProfilingVerbosity.DETAILED each layer is an object with ``Name``/``LayerType``; with less detail a
    plain name)."""
    import json

    try:
        layers = json.loads(info_json).get("Layers", [])
    except (ValueError, AttributeError) as exc:
        raise SemshareError(f"unreadable engine-inspector output: {exc}") from None
    out = []
    for layer in layers:
        if isinstance(layer, dict):
            out.append({"name": str(layer.get("Name", "")), "type": str(layer.get("LayerType", ""))})
        else:
            out.append({"name": str(layer), "type": ""})
    return out


def inspect_serialized(trt_mod: Any, logger: Any, serialized: Any, dla_core: int | None) -> list[dict[str, str]]:
    """Deserialize a just-built engine (``runtime.DLA_core`` set first, as trtexec does) and list its layers."""
    runtime: trt.Runtime = trt_mod.Runtime(logger)
    if dla_core is not None:
        runtime.DLA_core = dla_core
    engine = runtime.deserialize_cuda_engine(serialized)
    if engine is None:
        raise SemshareError("TensorRT could not load the engine it just built (see its messages above)")
    inspector = engine.create_engine_inspector()
    return engine_layers(inspector.get_engine_information(_enum(trt_mod, "LayerInformationFormat", "JSON")))


def _logger(trt_mod: Any, verbose: bool) -> trt.ILogger:
    return trt_mod.Logger(trt_mod.Logger.VERBOSE if verbose else trt_mod.Logger.WARNING)


def _progress_monitor(trt_mod: Any, log: Callable[[str], None]) -> Any:
    """An IProgressMonitor that logs top-level phases (TensorRT >= 10.0), or None where it does not exist."""
    base = getattr(trt_mod, "IProgressMonitor", None)
    if base is None:
        return None

    class _Monitor(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            super().__init__()
            self._start: dict[str, float] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            self._start[phase_name] = time.perf_counter()
            if not parent_phase:
                log(f"  {phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True  # never cancel

        def phase_finish(self, phase_name: str) -> None:
            t = time.perf_counter() - self._start.pop(phase_name, time.perf_counter())
            if t > 5:
                log(f"  {phase_name} done in {t:.0f} s")

    return _Monitor()


def _create_timing_cache(config: trt.IBuilderConfig, data: bytes) -> trt.ITimingCache | None:
    """``config.create_timing_cache(data)``, or None where TensorRT returns None or raises (a corrupt blob)."""
    try:
        return config.create_timing_cache(data)
    except Exception:  # the bindings raise on some corrupt blobs, return None on others
        return None


def load_timing_cache(config: trt.IBuilderConfig, path: Path, log: Callable[[str], None]) -> trt.ITimingCache | None:
    """Attach the timing cache at ``path`` to ``config``: a missing, corrupt or mismatched file is discarded with a
    warning and a fresh cache is used; None (no cache, with a warning) where TensorRT cannot even create an empty
    one. Polygraphy guards the same None (backend/trt/config.py)."""
    data = b""
    if path.is_file():
        try:
            data = path.read_bytes()
        except OSError as exc:
            log(f"warning: cannot read timing cache {path} ({exc}); starting a fresh one")
    cache = _create_timing_cache(config, data) if data else None
    if data and (cache is None or not config.set_timing_cache(cache, False)):
        log(f"warning: timing cache {path} is corrupt or from another TensorRT/GPU; discarded, starting a fresh one")
        cache = None
    elif cache is not None:
        log(f"timing cache: {path} ({len(data) // 1024} KiB)")
        return cache
    cache = _create_timing_cache(config, b"")
    if cache is None or not config.set_timing_cache(cache, True):
        log("warning: TensorRT could not create a timing cache; building without one")
        return None
    return cache


@dataclass
class SerializedBuild:
    """What :func:`build_serialized` returns: the engine bytes and what the manifest records about them."""

    engine: bytes
    bindings: list[dict[str, Any]]
    layer_devices: dict[str, list[str]]
    engine_layers: list[dict[str, str]]


def build_serialized(plan: BuildPlan, onnx_path: Path, log: Callable[[str], None] = print,
                     verbose: bool = False) -> SerializedBuild:
    """Parse ``onnx_path``, apply ``plan`` (from :func:`for_tensorrt`), build, and list where the layers went.

    The plugin library must already be loaded into the global registry (:func:`semshare.engine.plugins.load_plugins`).
    """
    import tensorrt as trt

    from semshare.io import atomic_write_bytes

    logger = _logger(trt, verbose)
    builder = trt.Builder(logger)
    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(_enum(trt, "NetworkDefinitionCreationFlag", name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise SemshareError(f"TensorRT could not parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    apply_plan(plan, builder, config, trt)
    if plan.typing == "weak":
        pinned = pin_float32_layers(network, trt)
        log(f"DLA on TensorRT {trt.__version__}: weakly typed build (FP16 flags), {pinned} FP32 layers pinned to FP32")
    devices = layer_devices(network, config, trt)
    monitor = _progress_monitor(trt, log)
    if monitor is not None:
        config.progress_monitor = monitor
    cache = load_timing_cache(config, plan.timing_cache, log) if plan.timing_cache is not None else None
    log(f"building {plan.precision} engine (preset {plan.preset}, optimisation level {plan.optimization_level}); "
        "this takes minutes on a Jetson")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise SemshareError("TensorRT failed to build the engine (see its messages above); rerun with --verbose")
    if cache is not None and plan.timing_cache is not None:
        atomic_write_bytes(plan.timing_cache, memoryview(config.get_timing_cache().serialize()))
    bindings = []
    io = [("input", network.get_input(i)) for i in range(network.num_inputs)]
    io += [("output", network.get_output(i)) for i in range(network.num_outputs)]
    for mode, t in io:
        shape = [int(t.shape[d]) for d in range(len(t.shape))]  # -1 for a dynamic dimension
        bindings.append({"name": t.name, "mode": mode, "dtype": t.dtype.name, "shape": shape})
    layers = inspect_serialized(trt, logger, serialized, plan.dla_core)
    return SerializedBuild(bytes(memoryview(serialized)), bindings, devices, layers)


def find_calibration_pairs(calib_dir: Path, count: int) -> list[Any]:
    """Up to ``count`` pairs from ``calib_dir`` (sorted by key); SemshareError when there are none."""
    from semshare.data import find_pairs

    if not calib_dir.is_dir():
        raise SemshareError(f"--calib-dir {calib_dir} is not a folder; pass a folder of fov120_N/fov60_N image pairs")
    try:
        pairs, _ = find_pairs(calib_dir)
    except OSError as exc:
        raise SemshareError(f"cannot read --calib-dir {calib_dir}: {exc}") from None
    if not pairs:
        raise SemshareError(f"--calib-dir {calib_dir} holds no fov120_N/fov60_N image pairs; INT8 needs real "
                            "camera pairs to calibrate on")
    chosen = sorted(pairs, key=lambda p: p.key)[:count]
    from PIL import Image

    for pair in chosen:  # fail now, not after minutes of preparation, on a truncated or unreadable image
        for path in (pair.path120, pair.path60):
            try:
                with Image.open(path) as im:
                    im.verify()
            except (OSError, ValueError) as exc:
                raise SemshareError(f"calibration image {path} is unreadable ({exc}); fix or remove it") from None
    return chosen


def build_engine(req: BuildRequest, log: Callable[[str], None] = print, verbose: bool = False) -> BuildResult:
    """The whole chain (see the module docstring). Leaves no partial engine or manifest on failure."""
    from semshare import __version__
    from semshare.engine.manifest import (
        EngineManifest,
        engine_manifest_path,
        read_export_manifest,
        sha256_file,
        sha256_files,
    )
    from semshare.engine.plugins import find_plugin_library, load_plugins
    from semshare.io import json_bytes, write_atomic

    t0 = time.perf_counter()
    req = validate_request(req)
    export_manifest = read_export_manifest(req.onnx)
    info = inspect_onnx(req.onnx)
    pairs = find_calibration_pairs(req.calib_dir, req.calib_count) if req.precision == "int8" and req.calib_dir else []
    val_pairs = find_calibration_pairs(req.val_dir, req.calib_count) if req.precision == "int8" and req.val_dir else []
    plan = plan_build(req, info)
    plugin_lib = None
    if info.plugin_ops:
        plugin_lib = Path(req.plugin_library) if req.plugin_library else find_plugin_library()
        if not plugin_lib.is_file():
            raise MissingDependencyError(f"plugin library {plugin_lib} not found; build it with `make plugins`")
    trt = import_tensorrt()  # every check above runs without TensorRT

    from semshare.engine.runner import cuda_device_info
    from semshare.precision import prepare_precision

    dev = cuda_device_info()
    plan = for_tensorrt(plan, BuildTarget(trt.__version__, dev.get("compute_capability", "")))
    if plugin_lib is not None:
        load_plugins(trt.get_plugin_registry(), plugin_lib)
    if plan.dla_core is not None and info.dla_blockers:
        log(f"DLA cannot run {len(info.dla_blockers)} node(s); they fall back to the GPU: {', '.join(info.dla_blockers)}")

    with tempfile.TemporaryDirectory(prefix="semshare-build-") as tmp:
        prepared = Path(tmp) / f"model.{req.precision}.onnx"
        report = prepare_precision(req.onnx, prepared, req.precision, pairs=pairs, checkpoint=req.checkpoint,
                                   report_path=req.report, log=log, high_precision=req.high_precision,
                                   val_pairs=val_pairs, min_agreement=req.min_agreement,
                                   min_int8_share=req.min_int8_share)
        built = build_serialized(plan, prepared, log, verbose)
        prepared_sha = sha256_file(prepared)
    for line in format_layer_devices(built.layer_devices, plan.dla_core is not None):
        log(line)
    log(f"engine: {len(built.engine_layers)} layers after fusion (listed in the manifest)")
    manifest = EngineManifest(
        precision=req.precision,
        preset=req.preset,
        tensorrt_version=trt.__version__,
        cuda_version=dev.get("cuda_runtime", ""),
        gpu_name=dev.get("name", ""),
        compute_capability=dev.get("compute_capability", ""),
        source_onnx=str(req.onnx),
        source_onnx_sha256=sha256_file(req.onnx),
        prepared_onnx_sha256=prepared_sha,
        plugin_library=str(plugin_lib) if plugin_lib else None,
        plugin_library_sha256=sha256_file(plugin_lib) if plugin_lib else None,
        calibration_sha256=sha256_files([p for pair in pairs for p in (pair.path120, pair.path60)]) if pairs else None,
        calibration_pairs=len(pairs),
        hardware_compatibility=plan.hardware_compatibility,
        dla_core=plan.dla_core,
        high_precision=req.high_precision if req.precision == "int8" else None,
        bindings=built.bindings,
        profiles=[[vars(s) for s in prof] for prof in plan.profiles],
        variant=str(export_manifest.get("variant", "")),
        engine_sha256=hashlib.sha256(built.engine).hexdigest(),
        export_manifest=export_manifest,
        build_seconds=round(time.perf_counter() - t0, 1),
        semshare_version=__version__,
        typing=plan.typing,
        layer_devices=built.layer_devices,
        engine_layers=built.engine_layers,
        timing_cache=str(plan.timing_cache) if plan.timing_cache else None,
    )
    mpath = engine_manifest_path(req.output)
    write_atomic({req.output: built.engine, mpath: json_bytes(manifest.to_dict())})
    return BuildResult(req.output, mpath, plan, time.perf_counter() - t0, report)


__all__: Sequence[str] = (
    "PRECISIONS", "PRESETS", "BuildPlan", "BuildRequest", "BuildResult", "BuildTarget", "DlaPolicy", "InputSpec",
    "ProfileShape", "SerializedBuild", "apply_plan", "build_engine", "build_serialized", "check_grid_sample",
    "dla_blockers", "dla_policy", "engine_layers", "find_calibration_pairs", "for_tensorrt", "format_layer_devices",
    "inspect_onnx", "layer_devices", "load_timing_cache", "parse_batch", "pin_float32_layers", "plan_build",
    "timing_cache_name", "validate_request",
)
