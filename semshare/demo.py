"""``semshare demo`` (``make demo``): the whole pipeline on any machine, no GPU, TensorRT or checkpoint needed.

1. a camera pair: the first pair of ``--pairs``, else the synthetic road scene rendered from the rig;
2. export ``mobilenetv3_tightly`` to ONNX (target ``onnx``: standard ops, any ONNX Runtime) and verify it
   against PyTorch (the checkpoint from ``--checkpoint`` / ``SEMSHARE_CHECKPOINT``, else random weights, said loudly);
3. ``semshare bench`` of PyTorch against ONNX Runtime on the CPU, with ``--check``;
4. when TensorRT and a GPU are present: build an fp16 engine and add it to the benchmark (else say why not);
5. coloured masks (and overlays) for the pair from the ONNX Runtime backend, through :class:`semshare.runtime.Segmenter`;
6. everything in one folder: ``model.onnx``, ``model.json`` (manifest), ``pair/``, ``masks/``, ``report.json``.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from semshare.errors import SemshareError

VARIANT = "mobilenetv3_tightly"
CHECKPOINT_ENV = "SEMSHARE_CHECKPOINT"


@dataclass
class DemoResult:
    output: Path
    files: dict[str, str] = field(default_factory=dict)
    report: dict = field(default_factory=dict)
    seconds: float = 0.0


def checkpoint_from_env(checkpoint: str | Path | None) -> Path | None:
    """The explicit checkpoint, else ``$SEMSHARE_CHECKPOINT``; an unset/empty variable means random weights."""
    value = checkpoint or os.environ.get(CHECKPOINT_ENV) or None
    if value is None:
        return None
    from semshare.validate import check_input_file

    return check_input_file(Path(value).expanduser(), f"checkpoint (from {'--checkpoint' if checkpoint else CHECKPOINT_ENV})",
                            "pass a .pth file or unset it for random weights")


def tensorrt_status() -> tuple[bool, str]:
    """(usable, reason): TensorRT importable and a CUDA GPU visible."""
    if importlib.util.find_spec("tensorrt") is None:
        return False, "TensorRT is not installed (pip install semshare[trt])"
    from semshare.engine.runner import cuda_device_info

    info = cuda_device_info()
    if not info:
        return False, "no CUDA GPU usable through cuda-python/pycuda"
    return True, f"TensorRT on {info.get('name', 'GPU')}"


def run_demo(output: str | Path, pairs: str | Path | None = None, checkpoint: str | Path | None = None,
             height: int = 1216, width: int = 1920, warmup: int = 1, iterations: int = 3,
             progress=None, log: Callable[[str], object] = print) -> DemoResult:
    """Run the demo into ``output``; returns the files written and the report (also in ``report.json``)."""
    from semshare.bench import BenchConfig, run_bench
    from semshare.bench.run import random_checkpoint
    from semshare.data import find_pairs, write_synthetic_pair
    from semshare.export import export_onnx
    from semshare.infer import run_infer
    from semshare.io import atomic_write_json
    from semshare.runtime import Segmenter

    t_start = time.perf_counter()
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    res = DemoResult(out)
    steps: dict[str, dict] = {}
    ckpt = checkpoint_from_env(checkpoint)
    weights = ckpt
    if ckpt is None:
        log("NOTE: no checkpoint (--checkpoint or SEMSHARE_CHECKPOINT): the model has RANDOM weights. The export, "
            "verification and timings are real; the masks are meaningless colours.")
        # One seeded random network for the export, the torch backend and the engine, so --check compares like with like.
        tmp = tempfile.TemporaryDirectory(prefix="semshare-demo-")
        weights = random_checkpoint(VARIANT, Path(tmp.name) / "random_seed0.pth")

    # 1. the pair
    t = time.perf_counter()
    if pairs is not None:
        found, _ = find_pairs(pairs)
        if not found:
            raise SemshareError(f"no fov120_N / fov60_N image pairs found under {pairs}")
        pair = found[0]
        pair_dir = pair.path120.parent
        pair_note = f"first pair of {pairs}: {pair.path120.name}"
    else:
        pair_dir = out / "pair"
        pair = write_synthetic_pair(pair_dir)
        pair_note = "synthetic road scene rendered from the default rig (semshare.data.synthetic_pair)"
    res.files["pair"] = str(pair_dir)
    steps["pair"] = {"seconds": round(time.perf_counter() - t, 2), "source": pair_note}
    log(f"pair: {pair_note}")

    # 2. export + verification
    t = time.perf_counter()
    onnx_path = out / "model.onnx"
    log(f"exporting {VARIANT} at {height}x{width} to {onnx_path} (target onnx) and verifying it against PyTorch ...")
    exported = export_onnx(VARIANT, onnx_path, checkpoint=weights, target="onnx", height=height, width=width,
                           verify=True, verify_pair=pair.path120)
    comparison = exported.comparison
    steps["export"] = {"seconds": round(time.perf_counter() - t, 2), "onnx": str(exported.model_path),
                       "manifest": str(exported.manifest_path),
                       "verification": comparison.to_dict() if hasattr(comparison, "to_dict") else None}
    res.files.update(onnx=str(exported.model_path), manifest=str(exported.manifest_path))
    log(f"exported and verified in {steps['export']['seconds']:.0f} s")

    # 3./4. benchmark (+ TensorRT when present)
    backends = ["torch", "onnxruntime"]
    engine = None
    trt_ok, trt_reason = tensorrt_status()
    if trt_ok:
        engine = _build_engine(out, weights, height, width, log)
        backends.append("tensorrt")
        steps["tensorrt"] = {"built": True, "engine": str(engine)}
        res.files["engine"] = str(engine)
    else:
        steps["tensorrt"] = {"built": False, "reason": trt_reason}
        log(f"TensorRT engine skipped: {trt_reason}. The table has PyTorch and ONNX Runtime on the CPU only.")
    t = time.perf_counter()
    cfg = BenchConfig(backends=backends, variant=VARIANT, checkpoint=weights, onnx=onnx_path, engine=engine,
                      pairs=pair.path120, height=height, width=width, warmup=warmup, iterations=iterations,
                      check=True)
    report = run_bench(cfg, progress=progress, log=log)
    steps["bench"] = {"seconds": round(time.perf_counter() - t, 2)}

    # 5. masks from the ONNX Runtime backend
    t = time.perf_counter()
    with Segmenter.load(onnx_path, backend="onnxruntime:cpu") as seg:
        inferred = run_infer(pair.path120, out / "masks", seg, overlays=True, overwrite=True)
    res.files["masks"] = str(out / "masks")
    steps["masks"] = {"seconds": round(time.perf_counter() - t, 2), "files": [str(p) for p in inferred.written],
                      "backend": seg.label}

    res.seconds = time.perf_counter() - t_start
    res.report = {"schema": "semshare-demo/1", "variant": VARIANT, "checkpoint": str(ckpt) if ckpt else None,
                  "random_weights": ckpt is None, "height": height, "width": width, "steps": steps,
                  "total_seconds": round(res.seconds, 1), "files": res.files, "bench": report}
    report_path = out / "report.json"
    atomic_write_json(report_path, res.report)
    res.files["report"] = str(report_path)
    return res


def _build_engine(out: Path, ckpt: Path | None, height: int, width: int, log: Callable[[str], object]) -> Path:
    """An fp16 engine: from a ``--target tensorrt`` export when the plugin library is found, else from the
    standard-ops export (TensorRT runs the decomposed correlation natively, slower)."""
    from semshare.engine.build import BuildRequest, build_engine
    from semshare.engine.plugins import find_plugin_library
    from semshare.errors import MissingDependencyError
    from semshare.export import export_onnx

    try:
        lib = find_plugin_library()
        src = out / "model_trt.onnx"
        log(f"exporting the TensorRT flavour (plugin nodes, library {lib}) ...")
        export_onnx(VARIANT, src, checkpoint=ckpt, target="tensorrt", height=height, width=width, verify=False)
    except MissingDependencyError as exc:
        lib, src = None, out / "model.onnx"
        log(f"plugin library not found ({exc}); building the engine from the standard-ops ONNX instead")
    engine = out / "model.fp16.engine"
    log(f"building {engine} (fp16) ...")
    build_engine(BuildRequest(onnx=src, output=engine, precision="fp16", plugin_library=lib), log=log)
    return engine
