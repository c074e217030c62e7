"""Precision preparation on the CPU: the ONNX a strongly typed TensorRT engine is built from, and its accuracy.

TensorRT 11 has no FP16/INT8 builder flags and no calibrators; semshare builds every engine strongly typed,
so the precision is written into the ONNX here (TENSORRT_NOTES.md, "Precision"):

- ``fp32``: the export as it is.
- ``fp16`` (:func:`to_float16`, semshare's own pass, no extra dependency): compute in float16, graph inputs
  and outputs float32. Kept in float32: every ``GridSample`` and the math that makes its grid (base grid,
  flow upsampling, flow rescaling, the flow accumulation ``estimate + flow``, homography grid math of the
  ``onnx`` target), the homography input of ``HomographyWarp`` (its contract), ``Resize`` scales/roi, shape
  arithmetic, and constant subgraphs. Casts sit only on region boundaries.
- ``int8`` (:func:`to_int8`): explicit Q/DQ from ONNX Runtime's ``quantize_static`` (QDQ format, QInt8 with
  ``ActivationSymmetric``/``WeightSymmetric``: signed, zero-point 0; per-channel weights, per-tensor
  activations; bias left float), calibrated on real camera pairs (:func:`calibrate`, once). Only ``Conv`` inputs are quantized; Convs
  that read a plugin/sampling output directly are excluded, so no Q/DQ touches a plugin node, a
  ``GridSample`` or the grid math. ONNX Runtime cannot run plugin nodes, so calibration runs on the in-memory
  reference graph (:func:`semshare.export.graph.with_reference_ops`) and the Q/DQ placement is transferred
  back by node name onto the ``tensorrt`` graph: the result keeps exactly its plugin nodes. Weight aliases
  (``Identity`` of an initializer, one per reuse of a shared weight) are folded first, so every Conv weight is
  quantized per-channel. By default (``high_precision="fp16"``, as ModelOpt's ``high_precision_dtype``) the
  Q/DQ graph then goes through :func:`to_float16`: float16 scales (a scale float16 cannot hold is raised to
  :data:`FP16_MIN_SCALE` and its weights re-quantized, :func:`raise_fp16_scales`), opset 19, every other
  layer in float16.
- INT8 that holds its accuracy (:mod:`semshare.precision.sensitivity`): calibration and validation pairs are
  disjoint (:func:`split_pairs`); each layer group's sensitivity is measured on the validation pairs and the
  most sensitive groups stay FP16 until ``--min-agreement`` is met (:func:`choose_mix`), or the int8 graph is
  refused.

:func:`accuracy_report` compares every prepared graph (run by ONNX Runtime CPU, plugin nodes through the
reference ops with the plugins' FP32 accumulation) with FP32 PyTorch on the validation pairs.
"""

from semshare.precision.fp16 import FP16_MIN_SCALE, raise_fp16_scales, to_float16
from semshare.precision.int8 import (
    CALIBRATION_METHODS,
    HIGH_PRECISIONS,
    PRECISIONS,
    Calibration,
    calibrate,
    check_calibrate_method,
    check_high_precision,
    float_island_convs,
    ort_runnable,
    to_int8,
)
from semshare.precision.prepare import check_options, feeds_for, input_size_of, prepare_precision, split_pairs
from semshare.precision.report import AccuracyReport, accuracy_report, margin_mask
from semshare.precision.sensitivity import (
    MIN_AGREEMENT,
    MIN_INT8_SHARE,
    Mix,
    MixError,
    Scorer,
    check_mix_options,
    choose_mix,
    layer_group,
    layer_groups,
    sensitivity,
)

__all__ = ["CALIBRATION_METHODS", "FP16_MIN_SCALE", "HIGH_PRECISIONS", "MIN_AGREEMENT", "MIN_INT8_SHARE", "PRECISIONS",
           "AccuracyReport", "Calibration", "Mix", "MixError", "Scorer", "accuracy_report", "calibrate", "check_calibrate_method",
           "check_high_precision", "check_mix_options", "check_options", "choose_mix", "feeds_for", "float_island_convs",
           "input_size_of", "layer_group", "layer_groups", "margin_mask", "ort_runnable", "prepare_precision",
           "raise_fp16_scales", "sensitivity", "split_pairs", "to_float16", "to_int8"]
