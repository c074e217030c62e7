"""The int8 pass: explicit Q/DQ calibrated on real pairs (see :mod:`semshare.precision`), and the ONNX
Runtime view of a prepared graph."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semshare.errors import SemshareError
from semshare.precision.fp16 import to_float16
from semshare.precision.graph import (
    FLOAT,
    FLOAT16,
    SAMPLING_OPS,
    drop_dead_nodes,
    elem_types,
    fold_weight_aliases,
    grid_region,
    name_nodes,
    producers,
    toposort,
)

PRECISIONS = ("fp32", "fp16", "int8")
#: What an int8 graph computes its non-quantized layers in (ModelOpt's ``high_precision_dtype``; fp16 by default).
HIGH_PRECISIONS = ("fp16", "fp32")


def check_high_precision(precision: str, high_precision: str) -> None:
    """``--high-precision`` names a float type, and only int8 has layers it applies to."""
    if high_precision not in HIGH_PRECISIONS:
        raise SemshareError(f"unknown --high-precision {high_precision!r}; choose one of: {', '.join(HIGH_PRECISIONS)}")
    if precision != "int8" and high_precision != "fp16":
        raise SemshareError(f"--high-precision only applies to --precision int8 (got --precision {precision})")


def float_island_convs(model: Any) -> list[str]:
    """Conv nodes reading a plugin, GridSample or grid-math output directly: they stay float (no Q/DQ
    may touch a plugin or a sampling op)."""
    from semshare.ops.contracts import DOMAIN

    prod = producers(model)
    grid = grid_region(model)
    out = []
    for n in model.graph.node:
        if n.op_type != "Conv":
            continue
        src = prod.get(n.input[0])
        if src is not None and (src.domain == DOMAIN or src.op_type in SAMPLING_OPS or src.name in grid):
            out.append(n.name)
    return out


class _PairReader:
    """ONNX Runtime CalibrationDataReader over preprocessed pairs."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


#: ``--calib-method``: how activation ranges are taken from the calibration pairs (weights: per-channel max).
CALIBRATION_METHODS = ("MinMax", "Entropy", "Percentile")
#: Histogram calibration. Entropy: 512 bins, thresholds searched for 255 int8 levels (``quantize_static``'s
#: defaults, 128 bins for 128 levels, leave it one candidate, the maximum: MinMax again; 2048 bins cost
#: minutes of pure-Python search). Percentile: 2048 bins, the 99.999th percentile of |x|.
_HISTOGRAM_OPTIONS = {"Entropy": {"num_bins": 512, "num_quantized_bins": 255},
                      "Percentile": {"num_bins": 2048, "percentile": 99.999}}


def check_calibrate_method(method: str) -> str:
    if method not in CALIBRATION_METHODS:
        raise SemshareError(f"unknown --calib-method {method!r}; choose one of: {', '.join(CALIBRATION_METHODS)}")
    return method


@dataclass
class Calibration:
    """One calibration of an export: every eligible Conv quantized once, so that any mix of INT8 and
    float Convs is put together from the same ranges (:meth:`graph`) without calibrating again.

    ``base`` is the export with weight aliases folded and every node named (the graph Q/DQ goes onto);
    ``quant`` the Q/DQ reference graph (plugin nodes replaced by their reference ops) that ONNX Runtime
    calibrated; ``convs`` the quantized Convs in graph order (float islands excluded)."""

    base: Any
    quant: Any
    method: str
    convs: list[str]

    def graph(self, float_convs: Collection[str] = (), high_precision: str = "fp16") -> Any:
        """The int8 graph with every Conv of :attr:`convs` INT8 except ``float_convs`` (their Q/DQ removed,
        float weights back); the layers that are not quantized compute in ``high_precision``."""
        check_high_precision("int8", high_precision)
        unknown = set(float_convs) - set(self.convs)
        if unknown:
            raise SemshareError(f"internal error: {sorted(unknown)[:3]} are not quantized Convs of this graph; please report")
        int8 = _transfer_qdq(self.base, self.quant, set(float_convs))
        return to_float16(int8) if high_precision == "fp16" else int8


def calibrate(model: Any, feeds: list[dict[str, np.ndarray]], calibrate_method: str = "MinMax") -> Calibration:
    """Calibrate ``model`` on ``feeds`` (one dict per pair) and quantize every eligible Conv (see the module
    docstring); :meth:`Calibration.graph` makes the int8 graphs."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    from semshare.export.graph import annotate_plugin_shapes, plugin_nodes, with_reference_ops

    if not feeds:
        raise SemshareError("INT8 needs calibration pairs: pass --calib-dir with fov120_N/fov60_N images")
    method = getattr(CalibrationMethod, check_calibrate_method(calibrate_method))
    base = fold_weight_aliases(copy.deepcopy(model))
    name_nodes(base)
    ref = with_reference_ops(annotate_plugin_shapes(base)) if plugin_nodes(base) else copy.deepcopy(base)
    exclude = float_island_convs(ref)
    with tempfile.TemporaryDirectory(prefix="semshare-int8-") as tmp:
        src, dst, cache = Path(tmp) / "ref.onnx", Path(tmp) / "ref.int8.onnx", Path(tmp) / "ranges.json"
        onnx.save(ref, str(src))
        calibrator = create_calibrator(src, ["Conv"], augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=method,
                                       extra_options={"symmetric": True,
                                                      **_HISTOGRAM_OPTIONS.get(calibrate_method, {})})
        for feed in feeds:  # one pair at a time: ranges/histograms merge, so memory holds one pair's activations
            calibrator.collect_data(_PairReader([feed]))
        save_tensors_data(calibrator.compute_data(), cache)
        del calibrator
        quantize_static(
            str(src), str(dst), None,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv"],
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            calibrate_method=method,
            calibration_cache_path=str(cache),
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
        )
        quant = drop_dead_nodes(_only_convs_read_qdq(onnx.load(str(dst))))
    prod = producers(quant)
    convs = [n.name for n in quant.graph.node if n.op_type == "Conv" and n.input[0] in prod
             and prod[n.input[0]].op_type == "DequantizeLinear"]
    return Calibration(base, quant, calibrate_method, convs)


def to_int8(model: Any, feeds: list[dict[str, np.ndarray]], calibrate_method: str = "MinMax",
            high_precision: str = "fp16", float_convs: Collection[str] = ()) -> Any:
    """Explicit Q/DQ INT8 (see the module docstring), calibrated on ``feeds`` (one dict per pair): every
    eligible Conv INT8 except ``float_convs``; the layers that are not quantized compute in ``high_precision``
    (fp16: :func:`to_float16` of the Q/DQ graph)."""
    check_high_precision("int8", high_precision)
    return calibrate(model, feeds, calibrate_method).graph(float_convs, high_precision)


def _only_convs_read_qdq(model: Any) -> Any:
    """Rewire every non-Conv reader of a quantized activation to the float tensor itself.

    ``quantize_static`` gives a tensor one shared Q/DQ pair, so a GridSample (or any other op) reading the same
    tensor as a quantized Conv would read the dequantized copy; only Convs may (sampling stays float).
    """
    prod = producers(model)
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear", "Conv"):
            continue
        for i, name in enumerate(node.input):
            dq = prod.get(name)
            q = prod.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[i] = q.input[0]
    return model


def _transfer_qdq(base: Any, quant: Any, float_convs: set[str]) -> Any:
    """Put the Q/DQ nodes of ``quant`` (the quantized reference graph) onto ``base`` (the export), except
    those of ``float_convs``: they keep their float inputs, and Q/DQ nodes nothing reads are dropped."""
    import onnx

    out = copy.deepcopy(base)
    qnodes = {n.name: n for n in quant.graph.node}
    qdq = [copy.deepcopy(n) for n in quant.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    for node in out.graph.node:
        q = qnodes.get(node.name)
        if q is not None and q.op_type == node.op_type and node.name not in float_convs:
            del node.input[:]
            node.input.extend(q.input)
    nodes = list(out.graph.node) + qdq
    qinits = {t.name: t for t in quant.graph.initializer}
    have_inits = {t.name for t in out.graph.initializer}
    needed = {i for n in nodes for i in n.input}
    extra = [qinits[i] for i in needed if i in qinits and i not in have_inits]
    kept = [t for t in out.graph.initializer if t.name in needed]
    out.graph.ClearField("initializer")
    out.graph.initializer.extend(kept + extra)
    out.graph.ClearField("node")
    out.graph.node.extend(toposort(nodes, {i.name for i in out.graph.input} | needed & (have_inits | set(qinits))))
    drop_dead_nodes(out)
    onnx.checker.check_model(out)
    return out


# --- the ONNX Runtime view of a prepared graph ---------------------------------------------------------


def ort_runnable(model: Any) -> Any:
    """A copy ONNX Runtime CPU can run: plugin nodes become their reference ops. A float16 plugin node is
    wrapped in Casts so its reference accumulates in float32 and returns float16, as the plugins do."""
    from onnx import helper

    from semshare.export.graph import annotate_plugin_shapes, plugin_nodes, with_reference_ops

    if not plugin_nodes(model):
        return model
    model = copy.deepcopy(model)
    name_nodes(model)
    for vi in list(model.graph.value_info):  # stale after a precision pass: infer afresh through the plugins
        model.graph.value_info.remove(vi)
    types = elem_types(annotate_plugin_shapes(model))
    new_nodes = []
    for node in model.graph.node:
        if node.domain and node.domain != "ai.onnx" and types.get(node.input[0]) == FLOAT16:
            for idx, t in enumerate(node.input):
                if types.get(t) == FLOAT16:
                    up = f"{node.name}__ref_in{idx}_fp32"
                    new_nodes.append(helper.make_node("Cast", [t], [up], name=up, to=FLOAT))
                    node.input[idx] = up
            orig = node.output[0]
            node.output[0] = f"{orig}__ref_fp32"
            new_nodes.append(node)
            new_nodes.append(helper.make_node("Cast", [node.output[0]], [orig], name=f"{node.name}__out_fp16", to=FLOAT16))
        else:
            new_nodes.append(node)
    model.graph.ClearField("node")
    model.graph.node.extend(new_nodes)
    for vi in list(model.graph.value_info):
        model.graph.value_info.remove(vi)
    return with_reference_ops(annotate_plugin_shapes(model))
