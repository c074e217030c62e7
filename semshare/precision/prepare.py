"""The one entry point: write the precision ONNX of an export (with its manifest) and its accuracy report."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semshare.errors import SemshareError
from semshare.precision.fp16 import to_float16
from semshare.precision.graph import default_opset
from semshare.precision.int8 import PRECISIONS, ort_runnable, to_int8
from semshare.precision.report import AccuracyReport, accuracy_report

# --- the one entry point ---------------------------------------------------------------------------------


def feeds_for(model: Any, pairs: Sequence[Any], input_size: tuple[int, int]) -> list[dict[str, np.ndarray]]:
    """One ONNX feed per pair: the two images (and the rig homographies when the export takes them)."""
    from semshare.data import load_pair

    inits = {t.name for t in model.graph.initializer}
    names = [i.name for i in model.graph.input if i.name not in inits]
    if len(names) > 2:
        raise SemshareError(f"calibration of an export with homography inputs ({', '.join(names[2:])}) is not "
                            "supported yet; export without --homography-input for INT8")
    feeds = []
    for pair in pairs:
        a, b = load_pair(pair.path120, input_size, pair.path60)
        feeds.append({names[0]: a.numpy(), names[1]: b.numpy()})
    return feeds


def input_size_of(model: Any) -> tuple[int, int]:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    h, w = dims[2].dim_value, dims[3].dim_value
    if not h or not w:
        raise SemshareError("the ONNX has a symbolic image height/width; re-export with a fixed --height/--width")
    return int(h), int(w)


def prepare(model: Any, precision: str, feeds: list[dict[str, np.ndarray]] | None = None,
            calibrate_method: str = "MinMax", high_precision: str = "fp16") -> Any:
    """The ``precision`` graph of ``model`` (a ``tensorrt`` or ``onnx`` target export)."""
    if precision == "fp32":
        return model
    if precision == "fp16":
        return to_float16(model)
    if precision == "int8":
        return to_int8(model, feeds or [], calibrate_method, high_precision)
    raise SemshareError(f"unknown precision {precision!r}; choose one of: {', '.join(PRECISIONS)}")


def torch_reference(variant: str, checkpoint: Path, input_size: tuple[int, int],
                    rig: Any = None) -> Callable[[Any, Any], tuple[Any, Any]]:
    """FP32 PyTorch on the CPU, built as the export built it (same rig and input size)."""
    from semshare.models import create_model, load_checkpoint
    from semshare.runtime.backends import torch_predictor

    model = load_checkpoint(create_model(variant, rig=rig, input_size=input_size), checkpoint).eval()
    return torch_predictor(model)


def prepare_precision(onnx_path: Path, output: Path, precision: str, pairs: Sequence[Any] = (),
                      checkpoint: Path | None = None, report_path: Path | None = None,
                      compare: Sequence[str] = (), calibrate_method: str = "MinMax",
                      log: Callable[[str], None] = print, high_precision: str = "fp16") -> AccuracyReport | None:
    """Write the ``precision`` ONNX of a semshare export to ``output`` (atomically, with a manifest beside it)
    and, when ``report_path`` is given or ``compare`` lists precisions, an accuracy report on ``pairs``.

    The reference is FP32 PyTorch with ``checkpoint`` (its hash must match the export's) or, without a
    checkpoint, the export itself run by ONNX Runtime (which the export verified against PyTorch).
    ``high_precision``: what an int8 graph computes its non-quantized layers in.
    """
    import onnx

    from semshare.engine.manifest import (
        manifest_path,
        read_export_manifest,
        sha256_file,
    )
    from semshare.export.verify import cpu_session
    from semshare.io import atomic_write_json, json_bytes, write_atomic

    export_manifest = read_export_manifest(onnx_path)
    model = onnx.load(str(onnx_path))
    size = input_size_of(model)
    if precision == "int8" and not pairs:
        raise SemshareError("--precision int8 needs calibration pairs: pass --calib-dir FOLDER of fov120_N/fov60_N images")
    t0 = time.perf_counter()
    feeds = feeds_for(model, pairs, size) if precision == "int8" else None
    log(f"preparing {precision} from {onnx_path.name}" + (f" (calibrating on {len(pairs)} pair(s))" if feeds else ""))
    prepared = prepare(model, precision, feeds, calibrate_method, high_precision)
    manifest = dict(export_manifest)
    manifest.update({"precision": precision, "prepared_from": str(onnx_path), "prepared_from_sha256": sha256_file(onnx_path),
                     "calibration_pairs": [p.key for p in pairs] if precision == "int8" else [],
                     "calibrate_method": calibrate_method if precision == "int8" else None,
                     "high_precision": high_precision if precision == "int8" else None,
                     "opset": default_opset(prepared),
                     "prepare_seconds": round(time.perf_counter() - t0, 1)})
    write_atomic({Path(output): prepared.SerializeToString(), manifest_path(output): json_bytes(manifest)})
    if report_path is None and not compare:
        return None
    if not pairs:
        raise SemshareError("the accuracy report needs image pairs: pass --calib-dir (or --val-dir) FOLDER")
    variant = str(export_manifest.get("variant", ""))
    if checkpoint is not None:
        source = export_manifest.get("checkpoint")
        want = source.get("sha256") if isinstance(source, dict) else None
        if want is None:
            raise SemshareError(f"{onnx_path.name} was exported with {source or 'unknown weights'}, so --checkpoint "
                                "cannot be its reference; re-export with --checkpoint or drop --checkpoint")
        if want != sha256_file(checkpoint):
            raise SemshareError(f"--checkpoint {checkpoint} is not the checkpoint {onnx_path.name} was exported from "
                                "(sha256 differs); pass the same .pth")
        reference, ref_name = torch_reference(variant, checkpoint, size, _rig_of(export_manifest)), "FP32 PyTorch"
    else:
        sess = cpu_session(ort_runnable(model))
        names = [i.name for i in sess.get_inputs()]

        def reference(a: Any, b: Any) -> tuple[Any, Any]:
            out = sess.run(None, {names[0]: a.numpy(), names[1]: b.numpy()})
            return out[0], out[1]

        ref_name = "FP32 export (ONNX Runtime; pass --checkpoint to compare with PyTorch)"
    graphs = {p: (prepared if p == precision else prepare(model, p, feeds_for(model, pairs, size) if p == "int8" else None,
                                                            calibrate_method, high_precision))
              for p in dict.fromkeys([*compare, precision])}
    report = accuracy_report(graphs, pairs, reference, size, variant, ref_name, log=log)
    report.calibration = {"pairs": [p.key for p in pairs], "method": calibrate_method, "high_precision": high_precision}
    log(report.table())
    if report_path is not None:
        atomic_write_json(report_path, report.to_dict())
    return report


def _rig_of(manifest: dict[str, Any]) -> Any:
    rig = manifest.get("rig")
    if isinstance(rig, dict):
        from semshare.rig import Rig

        return Rig.from_dict(rig)
    return None


def write_report(report: AccuracyReport, path: Path) -> None:
    Path(path).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
