"""The ONNX Runtime CPU flavour of INT8: a QDQ graph whose Q/DQ pairs ONNX Runtime fuses into integer kernels.

The TensorRT flavour (:func:`semshare.precision.to_int8`) quantizes only Conv inputs, symmetric int8: TensorRT
fuses that, ONNX Runtime does not (every Conv stays float between a DequantizeLinear and nothing, so the graph
runs slower than FP32). ONNX Runtime's CPU provider turns ``DQ -> op -> Q`` node units into its ``QLinear*``
kernels (QLinearConv, QLinearMatMul, QLinearAdd, QLinearMul, QLinearLeakyRelu, QLinearSigmoid,
QLinearGlobalAveragePool, QLinearAveragePool) when the op's inputs *and* output are quantized, so this flavour:

- quantizes those ops and folds ``Relu``/``Clip`` into the quantization range (``quantize_static``, QDQ
  format), so the backbone's hard-swish (``x * clip(x + 3, 0, 6) / 6``), its squeeze-excitation and the residual
  adds stay uint8 from one Conv to the next, with no float round trip between them. Division by a scalar
  constant is first written as multiplication by its reciprocal (the same value to one rounding step), since ONNX
  Runtime has a QLinearMul kernel and no QLinearDiv;
- uses uint8 activations (asymmetric, per tensor) and int8 weights (symmetric, per output channel), bias int32:
  U8S8 is the form MLAS's x86 integer GEMM has AVX-512 VNNI / AMX kernels for (on this project's CPU a 1024^3
  product runs 17-31x faster than float32 as U8S8, 5x *slower* as S8S8 and at float32 speed as U8U8,
  ``benchmarks/int8_cpu.py``);
- keeps float32 what the TensorRT flavour keeps float: every ``GridSample`` and the grid math feeding it (flow
  upsampling, rescaling and accumulation, homography grids; they read float tensors, never a dequantized
  copy), the Convs that read a sampling output directly, and the spatial correlation's products (each ``Mul``
  read only by the ``ReduceSum`` of its displacement; they read float features too), and so the Convs whose
  output the grid math reads (the flow estimates) run in float. The feature maps that the warps sample are the
  dequantized int8 tensors their Conv readers see;
- calibrates with Percentile (99.999 %) by default, one pair's intermediate tensors in memory at a time
  (``quantize_static`` keeps every tensor of the graph: ~6 GB for one pair at 1216x1920);
- runs plugin nodes as their reference ops (:func:`semshare.precision.ort_runnable`), so a ``--target tensorrt``
  export and a ``--target onnx`` export give the same CPU graph.

The result is for ONNX Runtime's CPU provider only (``semshare bench -b onnxruntime:cpu:int8``); TensorRT
engines are built from the TensorRT flavour.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from semshare.errors import SemshareError
from semshare.precision.graph import (
    FLOAT16,
    SAMPLING_OPS,
    consumers,
    drop_dead_nodes,
    fold_weight_aliases,
    grid_region,
    name_nodes,
    producers,
)

#: The op types quantized: those with an ONNX Runtime CPU QLinear kernel, plus the activations that fold into
#: the quantization range.
CPU_QUANTIZED_OPS = ("Conv", "MatMul", "Add", "Mul", "LeakyRelu", "Sigmoid", "GlobalAveragePool", "AveragePool",
                     "Relu", "Clip")
CALIBRATE_METHODS = ("MinMax", "Entropy", "Percentile")


def to_int8_ort_cpu(model: Any, feeds: list[dict[str, np.ndarray]], calibrate_method: str = "Percentile") -> Any:
    """The ONNX Runtime CPU INT8 graph of an FP32 semshare export (either target), calibrated on ``feeds`` (one
    ONNX feed per pair, :func:`semshare.precision.feeds_for`); see the module docstring for what it quantizes."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from semshare.precision.int8 import float_island_convs, ort_runnable

    if not feeds:
        raise SemshareError("ONNX Runtime CPU INT8 needs calibration pairs: pass --calib-dir FOLDER of "
                            "fov120_N/fov60_N images")
    if calibrate_method not in CALIBRATE_METHODS:
        raise SemshareError(f"unknown calibration method {calibrate_method!r}; choose one of: {', '.join(CALIBRATE_METHODS)}")
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node) or \
            any(t.data_type == FLOAT16 for t in model.graph.initializer):
        raise SemshareError("the ONNX Runtime CPU INT8 graph is prepared from the FP32 export (`semshare export`), "
                            "not from an already prepared fp16/int8 ONNX")
    base = fold_weight_aliases(copy.deepcopy(ort_runnable(model)))
    name_nodes(base)
    grid = grid_region(base)
    _divisions_as_products(base, skip=grid)
    drop_dead_nodes(base)  # the divisors' Constant nodes
    cons = consumers(base)
    correlation = {n.name for n in base.graph.node if n.op_type == "Mul" and cons.get(n.output[0])
                   and all(c.op_type == "ReduceSum" for c in cons[n.output[0]])}
    exclude = grid | correlation | set(float_island_convs(base)) | \
        {n.name for n in base.graph.node if n.op_type in SAMPLING_OPS}
    with tempfile.TemporaryDirectory(prefix="semshare-int8-cpu-") as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8_cpu.onnx"
        onnx.save(base, str(src))
        quantize_static(
            str(src), str(dst), _OnePairAtATime(feeds),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(CPU_QUANTIZED_OPS),
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=sorted(exclude),
            calibrate_method=getattr(CalibrationMethod, calibrate_method),
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True, "CalibMovingAverage": False,
                           "CalibStridedMinMax": 1},  # one pair's tensors in memory at a time, ranges merged
        )
        return drop_dead_nodes(_read_float(onnx.load(str(dst)), grid | correlation))


def _read_float(model: Any, nodes: set[str]) -> Any:
    """Rewire ``nodes`` (and every sampling grid) to the float tensor where ``quantize_static`` gave them the
    dequantized copy of a tensor it quantized for another reader: the grid math then reads a flow Conv's float
    output, and each of the correlation's products its float features (ONNX Runtime would otherwise give every
    one of the 81 products its own full-size DequantizeLinear)."""
    prod = producers(model)
    for node in model.graph.node:
        for i, name in enumerate(node.input):
            if node.name not in nodes and not (node.op_type in SAMPLING_OPS and i == 1):
                continue
            dq = prod.get(name)
            q = prod.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[i] = q.input[0]
    return model


class _OnePairAtATime:
    """A CalibrationDataReader that ``quantize_static`` can walk in strides (``CalibStridedMinMax``): the
    calibrator then holds the intermediate tensors of one pair, not of all (gigabytes each at 1216x1920)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds = feeds
        self.set_range(0, len(feeds))

    def __len__(self) -> int:
        return len(self.feeds)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._it = iter(self.feeds[start_index:end_index])

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def _divisions_as_products(model: Any, skip: set[str]) -> None:
    """``Div(x, c)`` with a scalar float constant ``c`` becomes ``Mul(x, 1 / c)`` (nodes in ``skip`` stay)."""
    from onnx import numpy_helper

    inits = {t.name: t for t in model.graph.initializer}
    prod = producers(model)
    for node in model.graph.node:
        if node.op_type != "Div" or node.name in skip:
            continue
        src = inits.get(node.input[1])
        const = prod.get(node.input[1])
        if src is not None:
            value = numpy_helper.to_array(src)
        elif const is not None and const.op_type == "Constant" and const.attribute[0].name == "value":
            value = numpy_helper.to_array(const.attribute[0].t)
        else:
            continue
        if value.size != 1 or value.dtype != np.float32 or not np.isfinite(value).all() or float(value.flat[0]) == 0.0:
            continue
        name = f"{node.name}__reciprocal"
        model.graph.initializer.append(numpy_helper.from_array((np.float32(1) / value).astype(np.float32), name))
        node.op_type = "Mul"
        node.input[1] = name
