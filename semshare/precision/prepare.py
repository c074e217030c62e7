"""The one entry point: write the precision ONNX of an export (with its manifest) and its accuracy report."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semshare.errors import SemshareError
from semshare.precision.fp16 import to_float16
from semshare.precision.graph import default_opset
from semshare.precision.int8 import (
    PRECISIONS,
    calibrate,
    check_calibrate_method,
    check_high_precision,
    ort_runnable,
)
from semshare.precision.report import AccuracyReport, accuracy_report
from semshare.precision.sensitivity import (
    MIN_AGREEMENT,
    MIN_INT8_SHARE,
    Mix,
    Scorer,
    check_mix_options,
    choose_mix,
    compare_methods,
)


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


def torch_reference(variant: str, checkpoint: Path, input_size: tuple[int, int],
                    rig: Any = None) -> Callable[[Any, Any], tuple[Any, Any]]:
    """FP32 PyTorch on the CPU, built as the export built it (same rig and input size)."""
    from semshare.models import create_model, load_checkpoint
    from semshare.runtime.backends import torch_predictor

    model = load_checkpoint(create_model(variant, rig=rig, input_size=input_size), checkpoint).eval()
    return torch_predictor(model)


def check_options(precision: str, compare: Sequence[str] = (), calibrate_method: str = "MinMax",
                  high_precision: str = "fp16", min_agreement: float = MIN_AGREEMENT,
                  min_int8_share: float = MIN_INT8_SHARE) -> list[str]:
    """The argument checks of :func:`prepare_precision`, which need no file (the CLI runs them first);
    returns the precisions to prepare, ``precision`` first."""
    wanted = list(dict.fromkeys([precision, *compare]))
    for p in wanted:
        if p not in PRECISIONS:
            raise SemshareError(f"unknown precision {p!r}; choose one of: {', '.join(PRECISIONS)}")
    check_calibrate_method(calibrate_method)
    check_high_precision("int8" if "int8" in wanted else precision, high_precision)
    check_mix_options(min_agreement, min_int8_share)
    return wanted


def split_pairs(pairs: Sequence[Any], val_pairs: Sequence[Any] = ()) -> tuple[list[Any], list[Any]]:
    """``(calibration, validation)`` pairs, disjoint: no pair that calibrates is ever scored.

    Without ``val_pairs`` (``--val-dir``), the last quarter of ``pairs`` by key (at least one pair) is held
    out to score on and the rest calibrates; given ``val_pairs``, one that is also a calibration pair (same
    file or same fov120 image bytes) is refused."""
    from semshare.engine.manifest import sha256_file

    calib = sorted(pairs, key=lambda p: p.key)
    if val_pairs:
        seen = {p.path120.resolve() for p in calib} | {sha256_file(p.path120) for p in calib}
        both = [p.key for p in val_pairs if p.path120.resolve() in seen or sha256_file(p.path120) in seen]
        if both:
            raise SemshareError(f"--val-dir holds {len(both)} of the calibration pairs ({', '.join(both[:3])}): a pair "
                                "that calibrated would be scored; pass a folder of other pairs, or omit --val-dir "
                                "(the last quarter of --calib-dir is then held out)")
        return calib, list(val_pairs)
    if len(calib) < 2:
        raise SemshareError(f"--calib-dir has {len(calib)} pair, and INT8 is scored on pairs it was not calibrated on: "
                            "add pairs (the last quarter by key is held out) or pass --val-dir FOLDER of other pairs")
    n_val = max(1, len(calib) // 4)
    return calib[:-n_val], calib[-n_val:]


def prepare_precision(onnx_path: Path, output: Path, precision: str, pairs: Sequence[Any] = (),
                      checkpoint: Path | None = None, report_path: Path | None = None,
                      compare: Sequence[str] = (), calibrate_method: str = "MinMax",
                      log: Callable[[str], None] = print, high_precision: str = "fp16",
                      val_pairs: Sequence[Any] = (), min_agreement: float = MIN_AGREEMENT,
                      min_int8_share: float = MIN_INT8_SHARE, methods: bool = False) -> AccuracyReport | None:
    """Write the ``precision`` ONNX of a semshare export to ``output`` (atomically, with a manifest beside it)
    and, when ``report_path`` is given or ``compare`` lists precisions, an accuracy report.

    int8 (as ``precision`` or in ``compare``) calibrates on ``pairs`` less the held-out ones
    (:func:`split_pairs`), measures each layer group's sensitivity on the validation pairs and keeps the most
    sensitive groups FP16 until ``min_agreement`` is met with at least ``min_int8_share`` of the Convs INT8
    (:mod:`semshare.precision.sensitivity`), or refuses. The report scores every precision on the
    validation pairs (``val_pairs`` or ``pairs`` when nothing calibrates) and, with ``methods``, compares the
    int8 calibration methods (two more calibrations).

    The reference is FP32 PyTorch with ``checkpoint`` (its hash must match the export's) or, without a
    checkpoint, the export itself run by ONNX Runtime (which the export verified against PyTorch).
    ``high_precision``: what an int8 graph computes its non-quantized layers in.
    """
    import onnx

    from semshare.engine.manifest import manifest_path, read_export_manifest, sha256_file
    from semshare.io import atomic_write_json, json_bytes, write_atomic

    wanted = check_options(precision, compare, calibrate_method, high_precision, min_agreement, min_int8_share)
    int8 = "int8" in wanted
    export_manifest = read_export_manifest(onnx_path)
    model = onnx.load(str(onnx_path))
    size = input_size_of(model)
    if int8 and not pairs:
        raise SemshareError("--precision int8 needs calibration pairs: pass --calib-dir FOLDER of fov120_N/fov60_N images")
    calib, scored = split_pairs(pairs, val_pairs) if int8 else ([], list(val_pairs or pairs))
    reporting = report_path is not None or len(wanted) > 1
    if reporting and not scored:
        raise SemshareError("the accuracy report needs image pairs: pass --calib-dir (or --val-dir) FOLDER")
    variant = str(export_manifest.get("variant", ""))
    reference, ref_name = (_reference(model, onnx_path, export_manifest, checkpoint, size)
                           if int8 or reporting else (None, ""))
    t0 = time.perf_counter()
    graphs: dict[str, Any] = {"fp32": model} if "fp32" in wanted else {}
    if "fp16" in wanted:
        graphs["fp16"] = to_float16(model)
    mix = cal = None
    if int8:
        log(f"int8 from {onnx_path.name}: calibrating on {len(calib)} pair(s) ({', '.join(p.key for p in calib)}), "
            f"scoring on {len(scored)} held-out pair(s) ({', '.join(p.key for p in scored)})")
        score = Scorer(scored, reference, size)
        cal = calibrate(model, feeds_for(model, calib, size), calibrate_method)
        graphs["int8"], mix = choose_mix(cal, score, min_agreement, min_int8_share, high_precision, log)
    prepared = graphs[precision]
    data = prepared.SerializeToString()
    manifest = dict(export_manifest)
    manifest.update({"model_file": Path(output).name, "model_sha256": hashlib.sha256(data).hexdigest(),
                     "precision": precision, "prepared_from": str(onnx_path), "prepared_from_sha256": sha256_file(onnx_path),
                     "calibration_pairs": [p.key for p in calib] if precision == "int8" else [],
                     "validation_pairs": [p.key for p in scored] if precision == "int8" else [],
                     "calibrate_method": calibrate_method if precision == "int8" else None,
                     "high_precision": high_precision if precision == "int8" else None,
                     "int8_mix": _mix_summary(mix) if precision == "int8" and mix else None,
                     "opset": default_opset(prepared),
                     "prepare_seconds": round(time.perf_counter() - t0, 1)})
    write_atomic({Path(output): data, manifest_path(output): json_bytes(manifest)})
    if not reporting:
        return None
    report = accuracy_report({p: graphs[p] for p in wanted}, scored, reference, size, variant, ref_name, log=log)
    report.calibration = {"pairs": [p.key for p in calib], "validation_pairs": [p.key for p in scored],
                          "method": calibrate_method, "high_precision": high_precision}
    if mix is not None and cal is not None:
        report.mix = mix.to_dict()
        if methods:
            report.methods = compare_methods(model, feeds_for(model, calib, size), cal, mix, score, log)
    log(report.table())
    if report_path is not None:
        atomic_write_json(report_path, report.to_dict())
    return report


def _mix_summary(mix: Mix) -> dict[str, Any]:
    c = mix.chosen
    assert c is not None
    return {"fp16_groups": c.fp16_groups, "int8_convs": c.int8_convs, "total_convs": mix.total_convs,
            "min_agreement": mix.target, "agreement": {"120": c.agreement_120, "60": c.agreement_60}}


def _reference(model: Any, onnx_path: Path, export_manifest: dict[str, Any], checkpoint: Path | None,
               size: tuple[int, int]) -> tuple[Callable[[Any, Any], tuple[Any, Any]], str]:
    """``(reference(img120, img60) -> (seg120, seg60), its name)``: FP32 PyTorch with ``checkpoint`` (the one the
    export was made from), else the export run by ONNX Runtime."""
    from semshare.engine.manifest import sha256_file
    from semshare.export.verify import cpu_session

    if checkpoint is not None:
        source = export_manifest.get("checkpoint")
        want = source.get("sha256") if isinstance(source, dict) else None
        if want is None:
            raise SemshareError(f"{onnx_path.name} was exported with {source or 'unknown weights'}, so --checkpoint "
                                "cannot be its reference; re-export with --checkpoint or drop --checkpoint")
        if want != sha256_file(checkpoint):
            raise SemshareError(f"--checkpoint {checkpoint} is not the checkpoint {onnx_path.name} was exported from "
                                "(sha256 differs); pass the same .pth")
        variant = str(export_manifest.get("variant", ""))
        return torch_reference(variant, checkpoint, size, _rig_of(export_manifest)), "FP32 PyTorch"
    sess = cpu_session(ort_runnable(model))
    names = [i.name for i in sess.get_inputs()]

    def reference(a: Any, b: Any) -> tuple[Any, Any]:
        out = sess.run(None, {names[0]: a.numpy(), names[1]: b.numpy()})
        return out[0], out[1]

    return reference, "FP32 export (ONNX Runtime; pass --checkpoint to compare with PyTorch)"


def _rig_of(manifest: dict[str, Any]) -> Any:
    rig = manifest.get("rig")
    if isinstance(rig, dict):
        from semshare.rig import Rig

        return Rig.from_dict(rig)
    return None
