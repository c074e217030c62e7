"""``semshare bench``: run several backends on the same input in one process and report them side by side.

Order of work: check the arguments and that every backend's package is importable (fail fast, before minutes
of warm-up), resolve the artefacts (an ONNX and its manifest, an engine and its manifest, or export an ONNX
for this run), build the input batch (a pair folder or the synthetic pair), record the run conditions, then
per backend: load, warm up, time, keep the last outputs for ``--check``, unload. Backends run one after the
other, never concurrently, so they do not compete for the machine. The backends and the preprocessing are
the runtime's (:mod:`semshare.runtime`); this package only times and reports them.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semshare.bench import conditions as cond_mod
from semshare.bench.compare import REDUCED_TOLERANCE, compare, tolerance_for
from semshare.bench.memory import MemorySampler, max_rss_bytes
from semshare.bench.timing import STAT_KEYS, check_counts, measure, summarize
from semshare.errors import SemshareError
from semshare.runtime.backends import (
    RANDOM_WEIGHTS_SEED,
    BackendSpec,
    Source,
    engine_max_batch,
    int8_cpu_model,
    make_backend,
    manifest_size,
    preflight,
)

SCHEMA = "semshare-bench/1"
#: At most this many pairs of --calib-dir calibrate an int8 backend (as `semshare quantize --calib-count`).
CALIBRATION_PAIRS = 32
RANDOM_WEIGHTS_NOTE = ("no checkpoint: the model has RANDOM weights. Timings are real (the arithmetic does not "
                       "depend on the weights) but masks and class agreement are meaningless; pass --checkpoint "
                       "or set SEMSHARE_CHECKPOINT")

#: progress(label, total) -> advance(n); total None when a duration decides.
ProgressFactory = Callable[[str, int | None], Callable[[int], object]]


@dataclass
class BenchConfig:
    backends: list[str] = field(default_factory=lambda: ["torch", "onnxruntime"])
    variant: str | None = None
    checkpoint: Path | None = None
    onnx: Path | None = None
    engine: Path | None = None
    pairs: Path | None = None
    calib_dir: Path | None = None  # what onnxruntime:cpu:int8 calibrates on (default: the --pairs folder)
    height: int = 1216
    width: int = 1920
    batch: int = 1
    warmup: int = 3
    iterations: int | None = 20
    duration: float | None = None
    device: str | None = None
    precision: str = "fp32"
    cuda_graphs: bool = False
    threads: int | None = None
    plugin_library: Path | None = None
    rig: Any = None
    check: bool = False
    rtol: float | None = None  # --check between fp32 backends: max |err| / max |reference| (None: compare's default)
    workdir: Path | None = None  # where an ONNX exported for this run goes (default: a temp dir)


def resolve_source(cfg: BenchConfig, specs: list[BackendSpec], log: Callable[[str], object]) -> Source:
    """Read and check the artefacts; export an ONNX for the onnxruntime backends when only a variant is given."""
    from semshare.engine.manifest import read_engine_manifest, read_export_manifest

    src = Source(variant=cfg.variant, checkpoint=cfg.checkpoint, rig=cfg.rig, size=(cfg.height, cfg.width),
                 batch=cfg.batch, threads=cfg.threads, plugin_library=cfg.plugin_library)
    kinds = {s.kind for s in specs}
    if cfg.checkpoint is not None and not Path(cfg.checkpoint).is_file():
        raise SemshareError(f"checkpoint {cfg.checkpoint} does not exist; pass the path of a .pth file")
    if cfg.onnx is not None:
        src.onnx = Path(cfg.onnx)
        src.onnx_manifest = read_export_manifest(src.onnx)
        size = manifest_size(src.onnx_manifest)
        if size:
            src.size = size
        if src.variant is None:
            src.variant = src.onnx_manifest.get("variant")
    if cfg.engine is not None:
        src.engine = Path(cfg.engine)
        src.engine_manifest = read_engine_manifest(src.engine)
        mx = engine_max_batch(src.engine_manifest)
        if mx is not None and cfg.batch > mx:
            raise SemshareError(f"--batch {cfg.batch} is larger than the engine's profile allows (max batch {mx}); "
                                f"pass --batch {mx} or less, or rebuild with `semshare build-engine --batch 1,{cfg.batch},{cfg.batch}`")
        size = manifest_size(src.engine_manifest.export_manifest or {})
        if size and cfg.onnx is None:
            src.size = size
        if src.variant is None:
            src.variant = src.engine_manifest.variant or None
    if "tensorrt" in kinds and src.engine is None:
        raise SemshareError("the tensorrt backend needs --engine MODEL.engine (build one with `semshare build-engine`)")
    if any(s.precision == "int8" and s.kind == "onnxruntime" for s in specs):
        src.calib_pairs = calibration_pairs(cfg, src.notes)
    elif cfg.calib_dir is not None:
        raise SemshareError("--calib-dir is for an int8 backend (onnxruntime:cpu:int8); add one to --backend or drop it")
    if "onnxruntime" in kinds and src.onnx is None:
        if not cfg.variant:
            raise SemshareError("the onnxruntime backend needs --onnx MODEL.onnx, or --variant to export one for this run")
        src.onnx, random_ckpt = export_for_run(cfg, log)
        src.onnx_manifest = read_export_manifest(src.onnx)
        src.notes.append(f"ONNX exported for this run (target onnx): {src.onnx}")
        if random_ckpt is not None:
            src.checkpoint = random_ckpt  # the torch backend runs the very same random network
    elif cfg.check and "torch" in kinds and (cfg.onnx or cfg.engine) and cfg.checkpoint is None:
        raise SemshareError("--check with the torch backend and an ONNX/engine needs --checkpoint (the one the "
                            "artefact was exported from): without it torch would run other, random weights")
    if "torch" in kinds and not src.variant:
        raise SemshareError("the torch backend needs --variant (and --checkpoint), or an ONNX/engine whose manifest names it")
    if ("torch" in kinds or (cfg.onnx is None and "onnxruntime" in kinds)) and cfg.checkpoint is None:
        src.notes.append(RANDOM_WEIGHTS_NOTE)
    return src


def calibration_pairs(cfg: BenchConfig, notes: list[str]) -> list:
    """The pairs an int8 backend calibrates on: ``--calib-dir``, else the benchmark's own ``--pairs`` (noted)."""
    from semshare.engine.build import find_calibration_pairs

    if cfg.calib_dir is not None:
        return find_calibration_pairs(Path(cfg.calib_dir), CALIBRATION_PAIRS)
    if cfg.pairs is None or not Path(cfg.pairs).is_dir():
        raise SemshareError("the onnxruntime:cpu:int8 backend needs calibration pairs: pass --calib-dir FOLDER of "
                            "fov120_N/fov60_N images (or a --pairs folder, to calibrate on the benchmark's input)")
    notes.append(f"INT8 calibrated on the benchmark's own input pairs ({cfg.pairs}): its agreement is measured on "
                 "calibration data; pass --calib-dir with other pairs for a held-out figure")
    return find_calibration_pairs(Path(cfg.pairs), CALIBRATION_PAIRS)


def random_checkpoint(variant: str, path: str | Path, seed: int = RANDOM_WEIGHTS_SEED, rig=None) -> Path:
    """Save the seeded random weights of ``variant`` as a checkpoint, so that an export and the torch backend
    of the same run hold the same (random) network and ``--check`` compares like with like."""
    import torch

    from semshare.models import create_model

    torch.manual_seed(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(create_model(variant, rig=rig).state_dict(), path)
    return path


def export_for_run(cfg: BenchConfig, log: Callable[[str], object]) -> tuple[Path, Path | None]:
    """An ONNX (target onnx) of ``cfg.variant`` for this run; returns (onnx, the random checkpoint it used)."""
    from semshare.export import export_onnx

    out_dir = Path(cfg.workdir) if cfg.workdir else Path(tempfile.mkdtemp(prefix="semshare-bench-"))
    out = out_dir / f"{cfg.variant}_{cfg.height}x{cfg.width}_b{cfg.batch}.onnx"
    ckpt = cfg.checkpoint
    random_ckpt = None
    if ckpt is None:
        ckpt = random_ckpt = random_checkpoint(cfg.variant, out_dir / f"{cfg.variant}_random_seed{RANDOM_WEIGHTS_SEED}.pth",
                                               rig=cfg.rig)
    log(f"exporting {cfg.variant} to {out} (target onnx) for the onnxruntime backend ...")
    export_onnx(cfg.variant, out, checkpoint=ckpt, target="onnx", height=cfg.height, width=cfg.width,
                batch=cfg.batch, rig=cfg.rig, verify=False)
    return out, random_ckpt


def load_inputs(pairs: Path | None, size: tuple[int, int], batch: int, rig=None) -> tuple[np.ndarray, np.ndarray, dict]:
    """(img120, img60) float32 (batch, 3, H, W): the first ``batch`` pairs of a folder (cycled), or the synthetic
    pair, preprocessed as the runtime does (:func:`semshare.runtime.preprocess.prepare_image`)."""
    from semshare.data import find_pairs, read_pair, synthetic_pair
    from semshare.runtime.preprocess import prepare_image

    if pairs is not None:
        found, _ = find_pairs(pairs)
        if not found:
            raise SemshareError(f"no fov120_N / fov60_N image pairs found under {pairs}")
        chosen = [found[i % len(found)] for i in range(batch)]
        loaded = [read_pair(p.path120, p.path60, size) for p in chosen]
        info = {"kind": "pairs", "path": str(pairs), "pairs": [str(p.path120) for p in chosen]}
    else:
        loaded = [synthetic_pair(rig=rig)] * batch
        info = {"kind": "synthetic", "path": None, "pairs": ["semshare.data.synthetic_pair(seed=0)"]}
    a = np.stack([prepare_image(x[0], size) for x in loaded])
    b = np.stack([prepare_image(x[1], size) for x in loaded])
    return a, b, info


def _mb(n: int | None) -> float | None:
    return None if n is None else round(n / 2**20, 1)


def run_backend(spec: BackendSpec, src: Source, inputs: tuple[np.ndarray, np.ndarray], cfg: BenchConfig,
                progress: ProgressFactory | None = None) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """Load, warm up, time and unload one backend; returns its result entry and its last outputs."""
    backend = make_backend(spec, src)
    unavailable: dict[str, str] = {}
    total = None if cfg.duration else cfg.warmup + (cfg.iterations or 0)
    advance = progress(spec.label, total) if progress else None
    with MemorySampler(gpu=spec.kind == "tensorrt" or spec.device != "cpu") as mem:
        with backend:
            backend.set_inputs(*inputs)
            series = measure(backend.step, cfg.warmup, cfg.iterations, cfg.duration, advance)
            out = backend.outputs()
            out = (np.array(out[0], np.float32, copy=True), np.array(out[1], np.float32, copy=True))
            exact_gpu = backend.gpu_memory_peak()
    e2e = summarize(series.seconds, cfg.batch)
    entry: dict[str, Any] = {
        "name": backend.label, "kind": spec.kind, "device": backend.spec.device, "precision": backend.spec.precision,
        "info": backend.info, "warmup": series.warmup, "iterations": e2e.n, "batch": cfg.batch,
        "timed_seconds": float(sum(series.seconds)),
        "latency_ms": {k: getattr(e2e, k) for k in (*STAT_KEYS, "std")},
        "fps": e2e.fps,
    }
    if backend.is_gpu and series.extra.get("gpu"):
        g = summarize(series.extra["gpu"], cfg.batch)
        entry["gpu_compute_ms"] = {k: getattr(g, k) for k in (*STAT_KEYS, "std")}
        entry["gpu_compute_method"] = {"torch": "CUDA events around the forward (inputs already on the GPU)",
                                       "tensorrt": "CUDA events around the enqueue / graph launch",
                                       "onnxruntime": "host clock around a device-resident run_with_iobinding "
                                                      "(no host copies; ORT has no CUDA-event API)"}[spec.kind]
    else:
        entry["gpu_compute_ms"] = None
        unavailable["gpu_compute_ms"] = "CPU backend: no GPU work to time (end-to-end latency only)"
    entry["end_to_end_ms"] = entry["latency_ms"]
    entry["memory"] = {
        "host_peak_rss_mb": _mb(mem.host_peak),
        "host_rss_increase_mb": _mb(mem.host_delta),
        "process_max_rss_mb": _mb(max_rss_bytes()),
        "host_method": "RSS sampled every 5 ms from /proc/self/statm while the backend loaded and ran; "
                       "increase = peak minus RSS before loading",
        "gpu_peak_mb": None,
        "gpu_method": None,
    }
    if mem.host_peak is None:
        unavailable["memory.host_peak_rss_mb"] = "/proc/self/statm not readable on this OS"
    if exact_gpu is not None:
        entry["memory"].update(gpu_peak_mb=_mb(exact_gpu), gpu_method="torch.cuda.max_memory_allocated (torch allocator)")
    elif mem.gpu_peak_delta is not None:
        entry["memory"].update(gpu_peak_mb=_mb(mem.gpu_peak_delta),
                               gpu_method="device-wide memory in use (cudaMemGetInfo) sampled every 5 ms, peak minus before")
    else:
        unavailable["memory.gpu_peak_mb"] = mem.gpu_reason or "not measurable"
    entry["unavailable"] = unavailable
    return entry, out


def ratios(entries: list[dict]) -> list[dict]:
    """Every backend against the first: speedup of the median latency and of the throughput."""
    if not entries:
        return []
    ref = entries[0]
    out = []
    for e in entries:
        r: dict[str, Any] = {"backend": e["name"], "vs": ref["name"],
                             "speedup_median": ref["latency_ms"]["median"] / e["latency_ms"]["median"],
                             "fps_ratio": e["fps"] / ref["fps"]}
        if e.get("gpu_compute_ms") and ref.get("gpu_compute_ms"):
            r["gpu_compute_speedup_median"] = ref["gpu_compute_ms"]["median"] / e["gpu_compute_ms"]["median"]
        out.append(r)
    return out


def run_bench(cfg: BenchConfig, progress: ProgressFactory | None = None,
              log: Callable[[str], object] = lambda s: None) -> dict:
    """The whole benchmark; returns the JSON-ready report (schema ``semshare-bench/1``)."""
    check_counts(cfg.warmup, cfg.iterations, cfg.duration)
    if cfg.batch < 1:
        raise SemshareError(f"--batch must be >= 1, got {cfg.batch}")
    if not cfg.backends:
        raise SemshareError("no backend given; use e.g. --backend torch,onnxruntime")
    specs = [BackendSpec.parse(b, cfg.device, cfg.precision, cfg.cuda_graphs) for b in cfg.backends]
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise SemshareError(f"the same backend is listed twice ({', '.join(labels)}); list each once")
    preflight(specs)
    src = resolve_source(cfg, specs, log)
    if src.engine_manifest is not None:  # the engine's precision is fixed at build time
        specs = [BackendSpec(s.kind, s.device, src.engine_manifest.precision or s.precision, s.cuda_graphs)
                 if s.kind == "tensorrt" else s for s in specs]
    img120, img60, input_info = load_inputs(cfg.pairs, src.size, cfg.batch, cfg.rig)
    threads = cfg.threads
    conditions = cond_mod.collect(threads)
    if threads is None:
        conditions["threads"] = None
        conditions["unavailable"]["threads"] = ("not set: torch and ONNX Runtime each used their default "
                                                "(see every backend's info.threads)")
    if src.calib_pairs:
        log(f"preparing the ONNX Runtime CPU INT8 graph (calibrating on {len(src.calib_pairs)} pair(s)) ...")
        int8_cpu_model(src)
    entries, outputs = [], []
    for spec in specs:
        log(f"running {spec.label} ...")
        entry, out = run_backend(spec, src, (img120, img60), cfg, progress)
        entries.append(entry)
        outputs.append(out)
    for e, o in zip(entries[1:], outputs[1:], strict=True):  # agreement with the first backend, always
        diff = compare(outputs[0], o, e["name"], entries[0]["name"], REDUCED_TOLERANCE)
        e["agreement"] = {"reference": entries[0]["name"],
                          **{d.name: {"all": d.argmax_agreement, "margin": d.margin_agreement} for d in diff.outputs}}
    warnings = cond_mod.finish(conditions)
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "config": {
            "backends": [s.label for s in specs], "variant": src.variant,
            "checkpoint": str(cfg.checkpoint) if cfg.checkpoint else None,
            "onnx": str(src.onnx) if src.onnx else None, "engine": str(src.engine) if src.engine else None,
            "input": input_info, "height": src.size[0], "width": src.size[1], "batch": cfg.batch,
            "warmup": cfg.warmup, "iterations": None if cfg.duration else cfg.iterations, "duration_s": cfg.duration,
        },
        "conditions": conditions,
        "backends": entries,
        "ratios": ratios(entries),
        "check": None,
        "warnings": warnings,
        "notes": src.notes,
    }
    if cfg.check:
        ref = entries[0]
        report["check"] = [compare(outputs[0], o, e["name"], ref["name"],
                                   tolerance_for(ref["precision"], e["precision"], cfg.rtol)).to_dict()
                           for e, o in zip(entries[1:], outputs[1:], strict=True)]
    return report


def check_failed(report: dict) -> list[dict]:
    return [c for c in report.get("check") or [] if not c["passed"]]
