"""The runtime's backends: ``torch``, ``onnxruntime`` and ``tensorrt``, one interface, one registry.

:class:`semshare.runtime.Segmenter` (and so ``semshare infer`` and ``semshare demo``) runs a model through one
of these; ``semshare bench`` times their :meth:`Backend.step`. A backend is a context manager (entering loads the model, leaving frees it) with three calls::

    with make_backend(BackendSpec.parse("onnxruntime:cpu"), source) as b:
        b.set_inputs(img120, img60)      # (B, 3, H, W) float32 NumPy arrays, on the host
        extra = b.step()                 # one synchronous iteration: host inputs -> host outputs
        seg120, seg60 = b.outputs()      # (B, classes, H, W) float32 NumPy arrays

``step`` returns extra per-iteration timings in seconds: ``{"gpu": ...}`` for the GPU compute alone (CUDA
events for torch and TensorRT; a device-resident ``run_with_iobinding`` timed on the host for ONNX Runtime's
CUDA/TensorRT providers). The end-to-end time of a step (host<->device copies included) is measured around
it by :func:`semshare.bench.timing.measure`.

Spec strings: ``torch[:cpu|cuda][:fp32|fp16]``, ``onnxruntime[:cpu|cuda|tensorrt][:fp32|fp16]``,
``onnxruntime:cpu:int8`` (the export prepared as :func:`semshare.precision.ort_cpu.to_int8_ort_cpu`, calibrated
on ``Source.calib_pairs``), ``tensorrt[:graphs]``. Heavy packages load inside ``__enter__``; a missing one is a
:class:`~semshare.errors.MissingDependencyError` naming the package to install.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semshare.errors import MissingDependencyError, SemshareError

_BACKENDS: dict[str, type[Backend]] = {}
RANDOM_WEIGHTS_SEED = 0

#: What to install for each backend (the error message names it).
INSTALL_HINTS = {
    "torch": "pip install torch",
    "onnxruntime": "pip install onnxruntime (CPU) or onnxruntime-gpu (CUDA / TensorRT providers)",
    "tensorrt": "pip install semshare[trt] (tensorrt and cuda-python; on Jetson: JetPack's python3-libnvinfer)",
}

RANDOM_WEIGHTS_WARNING = (
    "no checkpoint given: the model has RANDOM weights and its masks are meaningless; "
    "pass --checkpoint PATH.pth (the authors' released .pth files load as they are)"
)


def register_backend(name: str) -> Callable:
    def deco(cls: type[Backend]) -> type[Backend]:
        cls.kind = name
        _BACKENDS[name] = cls
        return cls

    return deco


def list_backends() -> list[str]:
    return sorted(_BACKENDS)


@dataclass(frozen=True)
class BackendSpec:
    """A backend and its options, parsed from ``kind[:option[:option]]``."""

    kind: str
    device: str | None = None  # torch: cpu|cuda; onnxruntime: cpu|cuda|tensorrt
    precision: str = "fp32"
    cuda_graphs: bool = False

    @classmethod
    def parse(cls, text: str, default_device: str | None = None, default_precision: str = "fp32",
              cuda_graphs: bool = False) -> BackendSpec:
        parts = [p.strip().lower() for p in text.strip().split(":") if p.strip()]
        if not parts:
            raise SemshareError("empty backend name; use e.g. --backend torch,onnxruntime")
        kind, opts = parts[0], parts[1:]
        aliases = {"ort": "onnxruntime", "trt": "tensorrt", "pytorch": "torch"}
        kind = aliases.get(kind, kind)
        if kind not in _BACKENDS:
            raise SemshareError(f"unknown backend {parts[0]!r}; choose from: {', '.join(list_backends())}")
        device, precision, graphs = None, default_precision, cuda_graphs
        devices = _BACKENDS[kind].devices
        for o in opts:
            if o in ("fp32", "fp16", "int8"):
                precision = o
            elif o in devices:
                device = "tensorrt" if o == "trt" else o
            elif kind == "tensorrt" and o in ("graphs", "cudagraph", "cudagraphs", "cuda-graphs"):
                graphs = True
            else:
                raise SemshareError(f"backend {text!r}: unknown option {o!r}; {kind} takes "
                                    f"{'/'.join(devices) or 'graphs'} and fp32/fp16")
        if kind == "torch":
            device = device or (default_device or "cpu")
            if precision == "int8":
                raise SemshareError("torch has no int8 mode here; build an int8 TensorRT engine instead")
        elif kind == "onnxruntime":
            device = device or ("cuda" if default_device == "cuda" else "cpu")
            if precision == "int8" and device != "cpu":
                raise SemshareError(f"backend {text!r}: ONNX Runtime int8 runs on the CPU here (onnxruntime:cpu:int8); "
                                    "on a GPU, build an int8 TensorRT engine (semshare build-engine -p int8)")
        elif kind == "tensorrt":
            device = "cuda"
        else:
            device = device or default_device or (devices[0] if devices else "cpu")
        return cls(kind, device, precision, graphs if kind == "tensorrt" else False)

    @property
    def label(self) -> str:
        if self.kind == "tensorrt":
            return "tensorrt" + (":graphs" if self.cuda_graphs else "")
        return f"{self.kind}:{self.device}:{self.precision}"


@dataclass
class Source:
    """Where the network comes from: a variant (+ checkpoint), an exported ONNX, an engine."""

    variant: str | None = None
    checkpoint: Path | None = None
    onnx: Path | None = None
    engine: Path | None = None
    rig: Any = None
    size: tuple[int, int] = (1216, 1920)
    batch: int = 1
    threads: int | None = None
    plugin_library: Path | None = None
    onnx_manifest: dict | None = None
    engine_manifest: Any = None
    calib_pairs: list = field(default_factory=list)  # semshare.data.Pair: what onnxruntime:cpu:int8 calibrates on
    int8_cpu_onnx: bytes | None = None  # its prepared graph (int8_cpu_model)
    notes: list[str] = field(default_factory=list)
    #: onnxruntime on cpu/cuda: run a ``--target tensorrt`` export with its plugin nodes replaced by their
    #: standard-op reference decompositions (semshare.precision.ort_runnable) instead of refusing it.
    reference_ops: bool = False
    #: onnxruntime on cpu: let idle intra-op threads spin (lowest latency alone, as bench times it) or sleep
    #: (False: the cores go to other work in the process, e.g. a pipeline's reading and writing)
    spinning: bool = True


def require(module: str, kind: str) -> Any:
    """Import ``module`` or raise MissingDependencyError naming the package for ``kind``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(f"the {kind} backend needs {module!r}, which is not installed ({exc}); "
                                     f"install it: {INSTALL_HINTS[kind]}") from None


class Backend:
    """Base class; subclasses implement ``load``, ``set_inputs``, ``step``, ``outputs``."""

    kind = ""
    devices: tuple[str, ...] = ("cpu",)  # the device options its spec string accepts
    is_gpu = False
    reuses_outputs = False  # outputs() returns buffers that the next step overwrites (copy to keep them)

    def __init__(self, spec: BackendSpec, source: Source) -> None:
        self.spec, self.source = spec, source
        self.info: dict[str, Any] = {"precision": spec.precision, "device": spec.device}
        self.unavailable: dict[str, str] = {}

    @property
    def label(self) -> str:
        return self.spec.label

    def __enter__(self) -> Backend:
        self.load()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def load(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def set_inputs(self, img120: np.ndarray, img60: np.ndarray) -> None:
        raise NotImplementedError

    def step(self) -> dict[str, float] | None:
        raise NotImplementedError

    def outputs(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def gpu_memory_peak(self) -> int | None:
        """An exact peak from the backend's own allocator, where it has one (else the sampler's figure)."""
        return None

def make_backend(spec: BackendSpec, source: Source) -> Backend:
    return _BACKENDS[spec.kind](spec, source)


def preflight(specs: list[BackendSpec]) -> None:
    """Every backend's Python package importable, before any work (names the package to install)."""
    needed = {"torch": ["torch"], "onnxruntime": ["onnxruntime", "onnx"], "tensorrt": ["tensorrt"]}
    for spec in specs:
        for mod in needed.get(spec.kind, []):
            if importlib.util.find_spec(mod) is None:
                raise MissingDependencyError(f"backend {spec.label} needs the Python package {mod!r}, which is not "
                                             f"installed; install it: {INSTALL_HINTS.get(spec.kind, 'pip install ' + mod)}")
        if spec.kind == "tensorrt" and not any(importlib.util.find_spec(m) for m in ("cuda", "pycuda")):
            raise MissingDependencyError(f"backend {spec.label} needs cuda-python (or pycuda); install it: "
                                         f"{INSTALL_HINTS['tensorrt']}")
        if spec.kind == "onnxruntime" and spec.device != "cpu":
            import onnxruntime as ort

            want = {"cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}[spec.device]
            if want not in ort.get_available_providers():
                raise MissingDependencyError(
                    f"backend {spec.label}: this ONNX Runtime ({ort.__version__}) has no {want}; install "
                    "onnxruntime-gpu (and TensorRT for the TensorRT provider) in place of onnxruntime")


def manifest_size(manifest: dict) -> tuple[int, int] | None:
    """The (H, W) an export manifest's image inputs have, or None when they are not fixed."""
    for inp in manifest.get("inputs", []):
        shape = inp.get("shape") if isinstance(inp, dict) else None
        if shape and len(shape) == 4 and all(isinstance(s, int) for s in shape[2:]):
            return int(shape[2]), int(shape[3])
    return None


# ---------------------------------------------------------------------------------------------------- torch


def build_torch_model(variant: str, checkpoint: str | Path | None, device: str = "cpu", rig=None,
                      input_size: tuple[int, int] | None = None):
    """A model in eval mode on ``device``; random weights (with a warning) when no checkpoint is given.
    ``input_size`` (H, W): the size its rig homographies are precomputed for (others are computed per call)."""
    import torch

    from semshare.models import create_model, load_checkpoint

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SemshareError("--device cuda asked for, but torch sees no CUDA GPU; use --device cpu")
    model = create_model(variant, rig=rig, **({"input_size": tuple(input_size)} if input_size else {}))
    if checkpoint is None:
        warnings.warn(RANDOM_WEIGHTS_WARNING, stacklevel=2)
    else:
        load_checkpoint(model, checkpoint)
    return model.to(device).eval()


def torch_predictor(model, device: str = "cpu") -> Callable:
    """(img120, img60) tensors -> (seg120, seg60) logits as NumPy arrays."""
    import torch

    def predict(img120, img60):
        with torch.inference_mode():
            a, b = model(img120.to(device), img60.to(device))
        return a.float().cpu().numpy(), b.float().cpu().numpy()

    return predict


@register_backend("torch")
class TorchBackend(Backend):
    """The PyTorch model (``create_model`` + checkpoint) on CPU or CUDA, fp32 or fp16 (CUDA only)."""

    devices = ("cpu", "cuda")

    def load(self) -> None:
        torch = require("torch", "torch")
        src, spec = self.source, self.spec
        variant = src.variant or (src.onnx_manifest or {}).get("variant")
        if variant is None and src.engine_manifest is not None:
            variant = src.engine_manifest.variant or None
        if not variant:
            raise SemshareError("the torch backend needs a model: pass --variant (and --checkpoint), or an ONNX "
                                "whose manifest names its variant")
        if spec.device == "cuda" and not torch.cuda.is_available():
            raise SemshareError(f"backend {spec.label}: torch sees no CUDA GPU (torch {torch.__version__}, "
                                f"CUDA build {torch.version.cuda}); use torch:cpu or install a CUDA build of torch")
        if spec.precision == "fp16" and spec.device != "cuda":
            raise SemshareError("torch fp16 runs on CUDA only; use torch:cuda:fp16 or torch:cpu:fp32")
        if spec.device == "cpu" and src.threads:
            torch.set_num_threads(src.threads)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the random-weights note is printed once by the caller
            if src.checkpoint is None:
                torch.manual_seed(RANDOM_WEIGHTS_SEED)  # the same random network in every torch backend of a run
            model = build_torch_model(variant, src.checkpoint, spec.device, src.rig, src.size)
        self.dtype = torch.float16 if spec.precision == "fp16" else torch.float32
        self.model = model.to(self.dtype)
        self.torch = torch
        self.device = torch.device(spec.device)
        self.is_gpu = spec.device == "cuda"
        self.info.update(variant=variant, threads=torch.get_num_threads() if not self.is_gpu else None,
                         checkpoint=str(src.checkpoint) if src.checkpoint else None)
        if self.is_gpu:
            torch.cuda.reset_peak_memory_stats()
            self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

    def close(self) -> None:
        self.model = None
        if self.is_gpu:
            self.torch.cuda.empty_cache()

    def set_inputs(self, img120: np.ndarray, img60: np.ndarray) -> None:
        t = self.torch
        self.host = [t.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for a in (img120, img60)]
        if self.is_gpu:
            self.host = [h.pin_memory() for h in self.host]

    def step(self) -> dict[str, float] | None:
        t = self.torch
        with t.inference_mode():
            if not self.is_gpu:
                a, b = self.model(*self.host)
                self.out = (a.numpy(), b.numpy())
                return None
            x = [h.to(self.device, non_blocking=True).to(self.dtype) for h in self.host]
            self.start.record()
            a, b = self.model(*x)
            self.end.record()
            self.out = (a.float().cpu().numpy(), b.float().cpu().numpy())  # synchronises the stream
            self.end.synchronize()
            return {"gpu": self.start.elapsed_time(self.end) / 1e3}

    def outputs(self) -> tuple[np.ndarray, np.ndarray]:
        return self.out

    def gpu_memory_peak(self) -> int | None:
        return int(self.torch.cuda.max_memory_allocated()) if self.is_gpu else None


# ---------------------------------------------------------------------------------------------- onnxruntime

_ORT_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}


def onnx_plugin_ops(path: Path) -> list[str]:
    """The custom (``semshare`` domain) op types of an ONNX file: non-empty for a ``--target tensorrt`` export."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return sorted({n.op_type for n in model.graph.node if n.domain == "semshare"})


@register_backend("onnxruntime")
class OnnxRuntimeBackend(Backend):
    """An exported ONNX in ONNX Runtime with the CPU, CUDA or TensorRT execution provider."""

    devices = ("cpu", "cuda", "tensorrt", "trt")

    def load(self) -> None:
        ort = require("onnxruntime", "onnxruntime")
        from semshare.export.verify import ORT_DISABLED_OPTIMIZERS

        src, spec = self.source, self.spec
        if src.onnx is None:
            raise SemshareError("the onnxruntime backend needs an ONNX: pass --onnx MODEL.onnx (from `semshare export`)")
        provider = _ORT_PROVIDERS[spec.device]
        if provider not in ort.get_available_providers():
            raise MissingDependencyError(
                f"backend {spec.label}: ONNX Runtime {ort.__version__} has no {provider} (available: "
                f"{', '.join(ort.get_available_providers())}); install onnxruntime-gpu with CUDA"
                + (" and TensorRT" if spec.device == "tensorrt" else ""))
        int8_cpu = spec.precision == "int8" and spec.device == "cpu"
        if spec.precision != "fp32" and spec.device != "tensorrt" and not int8_cpu:
            raise SemshareError(f"backend {spec.label}: ONNX Runtime runs the ONNX's own precision; export an fp16 "
                                "ONNX (build-engine's preparation) or use onnxruntime:tensorrt:fp16")
        plugin_ops = onnx_plugin_ops(src.onnx)
        model_bytes: bytes | str = str(src.onnx)
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if src.threads:
            opts.intra_op_num_threads = src.threads
        if not src.spinning:
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers: list[Any] = [provider]
        tmp = tempfile.TemporaryDirectory(prefix="semshare-ort-") if int8_cpu else None
        if int8_cpu:  # plugin nodes run as their reference ops there
            model_bytes = int8_cpu_model(src)
            self.info["calibration_pairs"] = [p.key for p in src.calib_pairs]
            opts.optimized_model_filepath = str(Path(tmp.name) / "optimized.onnx")  # to count the integer kernels
        elif spec.device == "tensorrt":
            trt_opts: dict[str, Any] = {"trt_fp16_enable": spec.precision == "fp16",
                                        "trt_engine_cache_enable": True,
                                        "trt_engine_cache_path": str(Path(src.onnx).parent / ".ort_trt_cache")}
            if plugin_ops:
                from semshare.engine.plugins import find_plugin_library

                lib = src.plugin_library or find_plugin_library()
                trt_opts["trt_extra_plugin_lib_paths"] = str(lib)
                model_bytes = _plugin_domain_for_ort(src.onnx)
                self.info["plugin_library"] = str(lib)
            providers = [(provider, trt_opts), "CUDAExecutionProvider", "CPUExecutionProvider"]
        elif plugin_ops and src.reference_ops:
            import onnx

            from semshare.precision import ort_runnable

            model_bytes = ort_runnable(onnx.load(str(src.onnx))).SerializeToString()
            self.info["plugin_nodes"] = "run as their standard-op reference decompositions (not the TensorRT plugins)"
        elif plugin_ops:
            raise SemshareError(
                f"{src.onnx} is a --target tensorrt export (plugin ops {', '.join(plugin_ops)}), which only TensorRT "
                f"runs; use onnxruntime:tensorrt or tensorrt, or export with --target onnx for {spec.label}")
        elif spec.device == "cuda":
            providers = [provider, "CPUExecutionProvider"]
        try:
            self.sess = ort.InferenceSession(model_bytes, opts, providers=providers,
                                             disabled_optimizers=ORT_DISABLED_OPTIMIZERS)
        except Exception as exc:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
            raise SemshareError(f"ONNX Runtime cannot load {src.onnx}: {str(exc).splitlines()[0][:300]}") from None
        if tmp is not None:
            with tmp:
                self.info["ort_kernels"] = ort_kernel_counts(Path(opts.optimized_model_filepath))
        self.ort = ort
        self.is_gpu = spec.device != "cpu"
        ins = self.sess.get_inputs()
        if len(ins) < 2:
            raise SemshareError(f"{src.onnx} has {len(ins)} input(s); a semshare model takes img120 and img60")
        self.input_names = [i.name for i in ins[:2]]
        self.extra_inputs = _homography_feed(ins[2:], src.onnx_manifest, src.onnx)
        self.output_names = [o.name for o in self.sess.get_outputs()[:2]]
        b = ins[0].shape[0]
        if isinstance(b, int) and b != src.batch:
            raise SemshareError(f"{src.onnx} was exported for batch {b} but --batch is {src.batch}; pass --batch {b} "
                                "or export with --dynamic-batch")
        self.info.update(providers=self.sess.get_providers(), threads=src.threads or "ORT default (physical cores)",
                         onnx=str(src.onnx), plugin_ops=plugin_ops or None, intra_op_spinning=src.spinning)
        if self.is_gpu:
            self.binding = self.sess.io_binding()

    def close(self) -> None:
        self.sess = None

    def set_inputs(self, img120: np.ndarray, img60: np.ndarray) -> None:
        self.host = {n: np.ascontiguousarray(a, dtype=np.float32) for n, a in zip(self.input_names, (img120, img60), strict=True)}
        self.host.update({n: np.repeat(h, len(img120), 0) for n, h in self.extra_inputs.items()})
        if self.is_gpu:
            self.dev_in = {n: self.ort.OrtValue.ortvalue_from_numpy(a, "cuda", 0) for n, a in self.host.items()}

    def step(self) -> dict[str, float] | None:
        if not self.is_gpu:
            self.out = self.sess.run(self.output_names, self.host)
            return None
        # Host -> device copy, device-resident run (timed: the "gpu" figure), device -> host copy.
        for n, v in self.dev_in.items():
            v.update_inplace(self.host[n])
        b = self.binding
        b.clear_binding_inputs()
        b.clear_binding_outputs()
        for n, v in self.dev_in.items():
            b.bind_ortvalue_input(n, v)
        for n in self.output_names:
            b.bind_output(n, "cuda", 0)
        b.synchronize_inputs()
        t0 = time.perf_counter()
        self.sess.run_with_iobinding(b)
        b.synchronize_outputs()
        gpu = time.perf_counter() - t0
        self.out = [o.numpy() for o in b.get_outputs()[:2]]
        return {"gpu": gpu}

    def outputs(self) -> tuple[np.ndarray, np.ndarray]:
        return self.out[0], self.out[1]


def int8_cpu_model(src: Source) -> bytes:
    """``src.onnx`` prepared for ONNX Runtime CPU INT8, calibrated on ``src.calib_pairs``; prepared once per
    source (``semshare bench`` prepares it before timing anything, so no backend's memory figure includes it)."""
    if src.int8_cpu_onnx is None:
        import onnx

        from semshare.precision import feeds_for, input_size_of
        from semshare.precision.ort_cpu import to_int8_ort_cpu

        if not src.calib_pairs:
            raise SemshareError("the onnxruntime:cpu:int8 backend needs calibration pairs: pass --calib-dir FOLDER "
                                "of fov120_N/fov60_N images (or --pairs to calibrate on the benchmark's input)")
        model = onnx.load(str(src.onnx))
        src.int8_cpu_onnx = to_int8_ort_cpu(model, feeds_for(model, src.calib_pairs, input_size_of(model))).SerializeToString()
    return src.int8_cpu_onnx


def ort_kernel_counts(optimized: Path) -> dict[str, int]:
    """What ONNX Runtime runs, from its optimized model: the integer kernels (``QLinear*``, ``*Integer``), the
    Q/DQ nodes left unfused, and the float convolutions."""
    import collections

    import onnx

    ops = collections.Counter(n.op_type for n in onnx.load(str(optimized), load_external_data=False).graph.node)
    return {k: ops[k] for k in sorted(ops) if k.startswith("QLinear") or k.endswith("Integer") or
            k in ("QuantizeLinear", "DequantizeLinear", "Conv", "FusedConv", "NhwcFusedConv")}


def _homography_feed(extra: list, manifest: dict | None, path: Path) -> dict[str, np.ndarray]:
    """Values for an ``--homography-input`` export's homography inputs: the rig's, from the manifest, (1, 3, 3)
    each (repeated to the batch of every call)."""
    if not extra:
        return {}
    homs = (manifest or {}).get("homography_inputs") or {}
    feed = {}
    for inp in extra:
        if inp.name not in homs:
            raise SemshareError(f"{path} has an input {inp.name!r} that its manifest gives no value for; "
                                "re-export it with `semshare export`")
        feed[inp.name] = np.asarray(homs[inp.name], np.float32)[None]
    return feed


def _plugin_domain_for_ort(path: Path) -> bytes:
    """The ONNX with its ``semshare`` plugin nodes moved to ORT's ``trt.plugins`` domain, in memory.

    ONNX Runtime's TensorRT provider registers every creator of the TensorRT plugin registry as a custom op of
    the ``trt.plugins`` domain (onnxruntime ``CreateTensorRTCustomOpDomainList``); the node's
    ``plugin_namespace``/``plugin_version`` attributes still select the semshare creator inside TensorRT.
    """
    import onnx

    model = onnx.load(str(path))
    for node in model.graph.node:
        if node.domain == "semshare":
            node.domain = "trt.plugins"
    imports = {o.domain for o in model.opset_import}
    if "trt.plugins" not in imports:
        model.opset_import.append(onnx.helper.make_opsetid("trt.plugins", 1))
    return model.SerializeToString()


# ------------------------------------------------------------------------------------------------- tensorrt


def engine_max_batch(manifest: Any) -> int | None:
    """The largest batch an engine accepts, from its manifest (profiles, else static bindings)."""
    best = None
    for profile in getattr(manifest, "profiles", None) or []:
        for shape in profile:
            mx = shape.get("max") if isinstance(shape, dict) else None
            if mx:
                best = mx[0] if best is None else min(best, mx[0])
    if best is not None:
        return int(best)
    for b in getattr(manifest, "bindings", None) or []:
        shape = b.get("shape") if isinstance(b, dict) else None
        if b.get("mode", b.get("io", "input")).lower().startswith("in") and shape and isinstance(shape[0], int) and shape[0] > 0:
            return int(shape[0])
    return None


@register_backend("tensorrt")
class TensorRTBackend(Backend):
    """A serialised engine from ``semshare build-engine``, run by :class:`semshare.engine.runner.TensorRTRunner`.

    The runner times each call both ways: CUDA events around the enqueue (or the CUDA-graph launch) give the
    GPU compute time; the end-to-end time around :meth:`step` includes the pinned host<->device copies.
    """

    is_gpu = True
    devices = ()
    reuses_outputs = True  # the runner's pinned host buffers

    def load(self) -> None:
        src = self.source
        if src.engine is None:
            raise SemshareError("the tensorrt backend needs an engine: pass --engine MODEL.engine (from `semshare build-engine`)")
        require("tensorrt", "tensorrt")
        from semshare.engine.runner import TensorRTRunner

        self.runner = TensorRTRunner(src.engine, cuda_graph=self.spec.cuda_graphs, plugin_library=src.plugin_library)
        self.runner.__enter__()
        names = self.runner.input_names()
        self.input_names = [n for n in names if "120" in n][:1] + [n for n in names if "60" in n and "120" not in n][:1]
        if len(self.input_names) != 2:
            self.input_names = names[:2]
        outs = self.runner.output_names()
        self.output_names = [n for n in outs if "120" in n][:1] + [n for n in outs if "60" in n and "120" not in n][:1]
        if len(self.output_names) != 2:
            self.output_names = outs[:2]
        m = self.runner.manifest
        self.info.update(engine=str(src.engine), precision=getattr(m, "precision", None) or "unknown",
                         cuda_graphs=self.spec.cuda_graphs, tensorrt_built_with=getattr(m, "tensorrt_version", None))
        self.spec = BackendSpec(self.spec.kind, "cuda", self.info["precision"], self.spec.cuda_graphs)

    def close(self) -> None:
        runner = getattr(self, "runner", None)
        if runner is not None:
            runner.__exit__(None, None, None)
            self.runner = None

    def set_inputs(self, img120: np.ndarray, img60: np.ndarray) -> None:
        self.feed = dict(zip(self.input_names, (img120, img60), strict=True))

    def step(self) -> dict[str, float] | None:
        out = self.runner.infer(self.feed)
        self.out = (out[self.output_names[0]], out[self.output_names[1]])
        return {"gpu": self.runner.timing.gpu_ms / 1e3}

    def outputs(self) -> tuple[np.ndarray, np.ndarray]:
        return self.out
