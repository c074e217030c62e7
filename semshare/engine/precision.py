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
  activations; bias left float), calibrated on real camera pairs. Only ``Conv`` inputs are quantized; Convs
  that read a plugin/sampling output directly are excluded, so no Q/DQ touches a plugin node, a
  ``GridSample`` or the grid math. ONNX Runtime cannot run plugin nodes, so calibration runs on the in-memory
  reference graph (:func:`semshare.export.graph.with_reference_ops`) and the Q/DQ placement is transferred
  back by node name onto the ``tensorrt`` graph: the result keeps exactly its plugin nodes. Weight aliases
  (``Identity`` of an initializer, one per reuse of a shared weight) are folded first, so every Conv weight is
  quantized per-channel. By default (``high_precision="fp16"``, as ModelOpt's ``high_precision_dtype``) the
  Q/DQ graph then goes through :func:`to_float16`: float16 scales, opset 19, every other layer in float16.

:func:`accuracy_report` compares every prepared graph (run by ONNX Runtime CPU, plugin nodes through the
reference ops with the plugins' FP32 accumulation) with FP32 PyTorch on the calibration/validation pairs.
"""

from __future__ import annotations

import copy
import json
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semshare.errors import SemshareError

PRECISIONS = ("fp32", "fp16", "int8")
#: What an int8 graph computes its non-quantized layers in (ModelOpt's ``high_precision_dtype``; fp16 by default).
HIGH_PRECISIONS = ("fp16", "fp32")
#: Q/DQ nodes take float16 scales and data from this opset on.
QDQ_FP16_OPSET = 19
#: Agreement is also reported over pixels whose FP32 top-1/top-2 margin exceeds this share of the logit range.
MARGIN_FRACTION = 0.05

_FLOAT = 1  # onnx.TensorProto.FLOAT
_FLOAT16 = 10  # onnx.TensorProto.FLOAT16
_SAMPLING_OPS = {"GridSample"}
#: Inputs that stay float32 whatever the node's precision (op_type -> input indices).
_FIXED_FP32_INPUTS = {"Resize": {1, 2}, "HomographyWarp": {1}, "GridSample": {1}}
#: Ops where the backward walk from a sampling grid stops: learned compute (their outputs are cast up).
_COMPUTE_OPS = {"Conv", "ConvTranspose", "Gemm", "SpatialCorrelation", "HomographyWarp", "GridSample"}
#: Ops whose outputs carry shapes, not data: data-dependence does not flow through them.
_SHAPE_OPS = {"Shape", "Size"}


# --- graph helpers ---------------------------------------------------------------------------------------


def _name_nodes(model: Any) -> None:
    """Give every unnamed node a unique name (the int8 transfer matches nodes by name)."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}" if not node.name else f"{node.name}_{i}"
        seen.add(node.name)


def _producers(model: Any) -> dict[str, Any]:
    return {o: n for n in model.graph.node for o in n.output}


def _consumers(model: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for n in model.graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def check_high_precision(precision: str, high_precision: str) -> None:
    """``--high-precision`` names a float type, and only int8 has layers it applies to."""
    if high_precision not in HIGH_PRECISIONS:
        raise SemshareError(f"unknown --high-precision {high_precision!r}; choose one of: {', '.join(HIGH_PRECISIONS)}")
    if precision != "int8" and high_precision != "fp16":
        raise SemshareError(f"--high-precision only applies to --precision int8 (got --precision {precision})")


def _fold_weight_aliases(model: Any) -> Any:
    """Drop the ``Identity`` nodes that alias an initializer (the exporter writes one for every reuse of a
    weight, e.g. the backbone run on both cameras): readers take the initializer itself. A quantizer would
    otherwise see the alias as an activation and quantize that copy of the weights per-tensor."""
    g = model.graph
    inits = {t.name for t in g.initializer}
    outputs = {o.name for o in g.output}
    alias = {n.output[0]: n.input[0] for n in g.node
             if n.op_type == "Identity" and n.input[0] in inits and n.output[0] not in outputs}
    if not alias:
        return model
    kept = [n for n in g.node if not (n.op_type == "Identity" and n.output and n.output[0] in alias)]
    for n in kept:
        for i, t in enumerate(n.input):
            if t in alias:
                n.input[i] = alias[t]
    g.ClearField("node")
    g.node.extend(kept)
    return model


def _drop_dead_nodes(model: Any) -> Any:
    """Remove the nodes whose outputs nothing reads (and the initializers only they read)."""
    g = model.graph
    needed = {o.name for o in g.output}
    live = []
    for n in reversed(g.node):
        if any(o in needed for o in n.output):
            live.append(n)
            needed.update(i for i in n.input if i)
    g.ClearField("node")
    g.node.extend(reversed(live))
    kept = [t for t in g.initializer if t.name in needed]
    g.ClearField("initializer")
    g.initializer.extend(kept)
    return model


def _default_opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _elem_types(model: Any) -> dict[str, int]:
    """Tensor name -> ONNX elem type, from shape inference plus our own rules for the plugin outputs."""
    import onnx

    from semshare.ops.contracts import DOMAIN

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # custom ops may stop strict inference; the fallback rules below cover the gaps
        inferred = model
    g = inferred.graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in (*g.input, *g.output, *g.value_info)}
    types.update({t.name: t.data_type for t in g.initializer})
    for n in g.node:  # propagate where inference could not (plugin outputs have their first input's dtype)
        if n.domain == DOMAIN and n.output[0] not in types and n.input[0] in types:
            types[n.output[0]] = types[n.input[0]]
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    types[n.output[0]] = a.t.data_type
    return {k: v for k, v in types.items() if v}


def _grid_region(model: Any) -> set[str]:
    """Names of the nodes that compute a sampling grid: walked back from each GridSample's grid input,
    through everything but learned compute (Conv, plugins, sampling) and shape reads (``Shape(x)`` takes only
    the size of ``x``: the nodes making ``x`` are not grid math)."""
    prod = _producers(model)
    region: set[str] = set()
    stack = [n.input[1] for n in model.graph.node if n.op_type in _SAMPLING_OPS and len(n.input) > 1]
    while stack:
        t = stack.pop()
        node = prod.get(t)
        if node is None or node.name in region or node.op_type in _COMPUTE_OPS | _SHAPE_OPS:
            continue
        region.add(node.name)
        stack.extend(i for i in node.input if i)
    return region


def _data_nodes(model: Any) -> set[str]:
    """Nodes that depend on a float graph input through data (not only through Shape): the compute."""
    inits = {t.name for t in model.graph.initializer}
    live = {i.name for i in model.graph.input if i.name not in inits and i.type.tensor_type.elem_type == _FLOAT}
    out: set[str] = set()
    for n in model.graph.node:  # graph order is topological
        if n.op_type in _SHAPE_OPS:
            continue
        if any(i in live for i in n.input):
            out.add(n.name)
            live.update(n.output)
    return out


# --- fp16 ------------------------------------------------------------------------------------------------


def to_float16(model: Any, keep_fp32_ops: Iterable[str] = ()) -> Any:
    """A copy of ``model`` computing in float16, graph inputs/outputs float32 (see the module docstring).

    Homography inputs (``HomographyWarp`` input 1) stay float32. ``keep_fp32_ops``: extra op types to keep
    in float32. On a Q/DQ graph (:func:`to_int8`) the Q/DQ nodes take float16 scales, so activations are
    quantized from and dequantized to float16 and weights dequantize straight to float16; that needs opset
    19, so such a graph is converted to it first.
    """
    import onnx
    from onnx import helper, numpy_helper

    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node) \
            and _default_opset(model) < QDQ_FP16_OPSET:
        import onnx.version_converter

        try:
            model = onnx.version_converter.convert_version(model, QDQ_FP16_OPSET)  # a new model: no copy needed
        except Exception as exc:  # the converter raises plain RuntimeErrors/ValueErrors naming the op
            raise SemshareError(
                f"cannot convert the int8 graph to opset {QDQ_FP16_OPSET} for float16 Q/DQ scales "
                f"({str(exc).splitlines()[0][:200]}); export with --opset {QDQ_FP16_OPSET} or use --high-precision fp32"
            ) from None
    else:
        model = copy.deepcopy(model)
    model = _fold_weight_aliases(model)
    _name_nodes(model)
    g = model.graph
    types = _elem_types(model)
    keep = set(keep_fp32_ops)
    fp32_nodes = _grid_region(model) | {n.name for n in g.node if n.op_type in _SAMPLING_OPS | keep}
    data = _data_nodes(model)
    fp16_nodes = {n.name for n in g.node if n.name in data and n.name not in fp32_nodes}
    inits = {t.name: t for t in g.initializer}
    prod = _producers(model)
    cons = _consumers(model)
    # Weight DequantizeLinear nodes (constant, so not data) feeding float16 compute dequantize straight to float16.
    fp16_nodes |= {n.name for n in g.node if n.op_type == "DequantizeLinear" and n.name not in fp32_nodes
                   and cons.get(n.output[0]) and all(c.name in fp16_nodes for c in cons[n.output[0]])}

    def is_fp16_input(node: Any, idx: int) -> bool:
        return node.name in fp16_nodes and idx not in _FIXED_FP32_INPUTS.get(node.op_type, set())

    new_inits: list[Any] = []
    cast_nodes: list[Any] = []
    converted: dict[tuple[str, int], str] = {}  # (tensor, to) -> name of the converted tensor

    def convert(tensor: str, to: int) -> str:
        key = (tensor, to)
        if key in converted:
            return converted[key]
        suffix = "fp16" if to == _FLOAT16 else "fp32"
        name = f"{tensor}__{suffix}"
        src_init = inits.get(tensor)
        const = prod.get(tensor)
        if src_init is not None:
            arr = numpy_helper.to_array(src_init).astype(np.float16 if to == _FLOAT16 else np.float32)
            new_inits.append(numpy_helper.from_array(arr, name))
        elif const is not None and const.op_type == "Constant" and const.name not in data:
            value = next(a.t for a in const.attribute if a.name == "value")
            arr = numpy_helper.to_array(value).astype(np.float16 if to == _FLOAT16 else np.float32)
            new_inits.append(numpy_helper.from_array(arr, name))
        else:
            cast_nodes.append(helper.make_node("Cast", [tensor], [name], name=f"{tensor}__cast_{suffix}", to=to))
        converted[key] = name
        return name

    out_names = {o.name for o in g.output}
    renamed_outputs: dict[str, str] = {}
    for node in g.node:
        half = node.name in fp16_nodes
        for idx, t in enumerate(node.input):
            if not t:
                continue
            ttype = types.get(t)
            src = prod.get(t)
            src_half = src is not None and src.name in fp16_nodes and ttype in (_FLOAT, _FLOAT16)
            want_half = is_fp16_input(node, idx)
            if want_half and ttype == _FLOAT and not src_half:
                node.input[idx] = convert(t, _FLOAT16)
            elif not want_half and src_half:
                node.input[idx] = convert(renamed_outputs.get(t, t), _FLOAT)
        if half:
            if node.op_type == "Cast":
                for a in node.attribute:
                    if a.name == "to" and a.i == _FLOAT:
                        a.i = _FLOAT16
            for oi, o in enumerate(node.output):
                if o in out_names and types.get(o) == _FLOAT:  # a graph output: compute as o__fp16, cast back
                    node.output[oi] = f"{o}__fp16"
                    renamed_outputs[o] = node.output[oi]
                    cast_nodes.append(helper.make_node("Cast", [node.output[oi]], [o], name=f"{o}__cast_out", to=_FLOAT))
    # Consumers of a renamed graph output inside the graph read the fp16 tensor (or its fp32 twin).
    for node in g.node:
        for idx, t in enumerate(node.input):
            if t in renamed_outputs and node.name in fp16_nodes:
                node.input[idx] = renamed_outputs[t]
    # Cast nodes must come right after their producer: rebuild the node list in topological order.
    nodes = list(g.node) + cast_nodes
    g.ClearField("node")
    g.node.extend(_toposort(nodes, {i.name for i in g.input} | set(inits) | {t.name for t in new_inits}))
    g.initializer.extend(new_inits)
    _drop_dead_nodes(model)  # the float32 Constants now copied into float16 initializers, and what only they read
    # value_info is stale now: drop it for the converted tensors (TensorRT and ORT infer types themselves).
    stale = [vi for vi in g.value_info if types.get(vi.name) == _FLOAT]
    for vi in stale:
        g.value_info.remove(vi)
    onnx.checker.check_model(model)
    return model


def _toposort(nodes: Sequence[Any], available: set[str]) -> list[Any]:
    have = set(available) | {""}
    pending = list(nodes)
    ordered: list[Any] = []
    while pending:
        rest = []
        for n in pending:
            if all(i in have for i in n.input):
                ordered.append(n)
                have.update(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            missing = sorted({i for n in rest for i in n.input if i not in have})[:5]
            raise SemshareError(f"internal error: cannot order the converted graph (missing {missing}); please report")
        pending = rest
    return ordered


# --- int8 ------------------------------------------------------------------------------------------------


def float_island_convs(model: Any) -> list[str]:
    """Conv nodes reading a plugin, GridSample or grid-math output directly: they stay float (no Q/DQ
    may touch a plugin or a sampling op)."""
    from semshare.ops.contracts import DOMAIN

    prod = _producers(model)
    grid = _grid_region(model)
    out = []
    for n in model.graph.node:
        if n.op_type != "Conv":
            continue
        src = prod.get(n.input[0])
        if src is not None and (src.domain == DOMAIN or src.op_type in _SAMPLING_OPS or src.name in grid):
            out.append(n.name)
    return out


class _PairReader:
    """ONNX Runtime CalibrationDataReader over preprocessed pairs."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def to_int8(model: Any, feeds: list[dict[str, np.ndarray]], calibrate_method: str = "MinMax",
            high_precision: str = "fp16") -> Any:
    """Explicit Q/DQ INT8 (see the module docstring), calibrated on ``feeds`` (one dict per pair); the layers
    that are not quantized compute in ``high_precision`` (fp16: :func:`to_float16` of the Q/DQ graph)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from semshare.export.graph import annotate_plugin_shapes, plugin_nodes, with_reference_ops

    if not feeds:
        raise SemshareError("INT8 needs calibration pairs: pass --calib-dir with fov120_N/fov60_N images")
    check_high_precision("int8", high_precision)
    base = _fold_weight_aliases(copy.deepcopy(model))
    _name_nodes(base)
    has_plugins = bool(plugin_nodes(base))
    ref = with_reference_ops(annotate_plugin_shapes(base)) if has_plugins else copy.deepcopy(base)
    exclude = float_island_convs(ref)
    with tempfile.TemporaryDirectory(prefix="semshare-int8-") as tmp:
        src, dst = Path(tmp) / "ref.onnx", Path(tmp) / "ref.int8.onnx"
        onnx.save(ref, str(src))
        quantize_static(
            str(src), str(dst), _PairReader(feeds),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv"],
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=exclude,
            calibrate_method=getattr(CalibrationMethod, calibrate_method),
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                           "CalibMovingAverage": False},
        )
        quant = _drop_dead_nodes(_only_convs_read_qdq(onnx.load(str(dst))))
    int8 = _transfer_qdq(base, quant) if has_plugins else _strip_ms_domain(quant)
    return to_float16(int8) if high_precision == "fp16" else int8


def _only_convs_read_qdq(model: Any) -> Any:
    """Rewire every non-Conv reader of a quantized activation to the float tensor itself.

    ``quantize_static`` gives a tensor one shared Q/DQ pair, so a GridSample (or any other op) reading the same
    tensor as a quantized Conv would read the dequantized copy; only Convs may (sampling stays float).
    """
    prod = _producers(model)
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear", "Conv"):
            continue
        for i, name in enumerate(node.input):
            dq = prod.get(name)
            q = prod.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[i] = q.input[0]
    return model


def _strip_ms_domain(model: Any) -> Any:
    if not any(n.domain == "com.microsoft" for n in model.graph.node):
        kept = [o for o in model.opset_import if o.domain != "com.microsoft"]
        model.ClearField("opset_import")
        model.opset_import.extend(kept)
    return model


def _transfer_qdq(base: Any, quant: Any) -> Any:
    """Put the Q/DQ nodes of ``quant`` (the quantized reference graph) onto ``base`` (the plugin graph)."""
    import onnx

    out = copy.deepcopy(base)
    qnodes = {n.name: n for n in quant.graph.node}
    qdq = [n for n in quant.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    for node in out.graph.node:
        q = qnodes.get(node.name)
        if q is not None and q.op_type == node.op_type:
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
    out.graph.node.extend(_toposort(nodes, {i.name for i in out.graph.input} | needed & (have_inits | set(qinits))))
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
    _name_nodes(model)
    for vi in list(model.graph.value_info):  # stale after a precision pass: infer afresh through the plugins
        model.graph.value_info.remove(vi)
    types = _elem_types(annotate_plugin_shapes(model))
    new_nodes = []
    for node in model.graph.node:
        if node.domain and node.domain != "ai.onnx" and types.get(node.input[0]) == _FLOAT16:
            for idx, t in enumerate(node.input):
                if types.get(t) == _FLOAT16:
                    up = f"{node.name}__ref_in{idx}_fp32"
                    new_nodes.append(helper.make_node("Cast", [t], [up], name=up, to=_FLOAT))
                    node.input[idx] = up
            orig = node.output[0]
            node.output[0] = f"{orig}__ref_fp32"
            new_nodes.append(node)
            new_nodes.append(helper.make_node("Cast", [node.output[0]], [orig], name=f"{node.name}__out_fp16", to=_FLOAT16))
        else:
            new_nodes.append(node)
    model.graph.ClearField("node")
    model.graph.node.extend(new_nodes)
    for vi in list(model.graph.value_info):
        model.graph.value_info.remove(vi)
    return with_reference_ops(annotate_plugin_shapes(model))


# --- the accuracy report -------------------------------------------------------------------------------


@dataclass
class CameraAccuracy:
    camera: str
    agreement: float  # argmax agreement over all pixels
    agreement_margin: float  # over pixels whose FP32 top1-top2 margin > MARGIN_FRACTION of the logit range
    margin_pixels: float  # share of pixels that pass the margin filter
    max_abs_err: float
    mean_abs_err: float
    miou: float | None = None  # prepared graph vs labels
    miou_reference: float | None = None  # FP32 reference vs labels


@dataclass
class PrecisionAccuracy:
    precision: str
    cameras: list[CameraAccuracy] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class AccuracyReport:
    variant: str
    reference: str
    pairs: list[str]
    input_size: tuple[int, int]
    margin_fraction: float = MARGIN_FRACTION
    precisions: list[PrecisionAccuracy] = field(default_factory=list)
    calibration: dict[str, Any] = field(default_factory=dict)

    def get(self, precision: str) -> PrecisionAccuracy:
        return next(p for p in self.precisions if p.precision == precision)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        head = (f"{'precision':<9} {'camera':<6} {'agree all':>10} {'agree margin':>13} {'margin px':>10} "
                f"{'max |err|':>10} {'mean |err|':>10} {'mIoU':>7} {'mIoU fp32':>9}")
        lines = [f"accuracy vs {self.reference} on {len(self.pairs)} pair(s) at {self.input_size[0]}x{self.input_size[1]} "
                 f"({self.variant}; margin filter: top1-top2 > {100 * self.margin_fraction:.0f}% of the logit range)"
                 + (f"; int8 computes its other layers in {self.calibration['high_precision']}"
                    if self.calibration.get("high_precision") and any(p.precision == "int8" for p in self.precisions)
                    else ""),
                 head, "-" * len(head)]
        for p in self.precisions:
            for c in p.cameras:
                miou = "-" if c.miou is None else f"{100 * c.miou:.2f}"
                mref = "-" if c.miou_reference is None else f"{100 * c.miou_reference:.2f}"
                margin = "no pixels" if c.agreement_margin != c.agreement_margin else f"{100 * c.agreement_margin:.3f}%"
                lines.append(f"{p.precision:<9} {c.camera:<6} {100 * c.agreement:>9.3f}% {margin:>13} "
                             f"{100 * c.margin_pixels:>9.1f}% {c.max_abs_err:>10.3e} {c.mean_abs_err:>10.3e} {miou:>7} {mref:>9}")
        return "\n".join(lines)

    __str__ = table


def margin_mask(ref: np.ndarray, fraction: float = MARGIN_FRACTION) -> np.ndarray:
    """(B, C, H, W) logits -> (B, H, W) bool: top-1 minus top-2 logit > ``fraction`` of this output's range."""
    top2 = np.partition(ref, -2, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    return margin > fraction * float(ref.max() - ref.min())


def _confusion(pred: np.ndarray, label: np.ndarray, n: int) -> np.ndarray:
    ok = (label >= 0) & (label < n)
    return np.bincount(n * label[ok].astype(np.int64) + pred[ok], minlength=n * n).reshape(n, n)


def _miou(conf: np.ndarray) -> float:
    inter = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - inter
    present = union > 0
    return float((inter[present] / union[present]).mean()) if present.any() else float("nan")


def label_paths(pair: Any) -> dict[str, Path] | None:
    """The label PNGs of a pair (``labels/`` beside or above the pairs folder), or None."""
    folder = pair.path120.parent
    for cand in (folder / "labels", folder.parent / "labels"):
        p120, p60 = cand / f"fov120_{pair.key}.png", cand / f"fov60_{pair.key}.png"
        if p120.is_file() and p60.is_file():
            return {"120": p120, "60": p60}
    return None


@dataclass
class _Accumulator:
    n: int = 0
    agree: float = 0.0
    agree_m: float = 0.0
    m_pixels: float = 0.0
    m_count: float = 0.0
    max_err: float = 0.0
    sum_err: float = 0.0
    numel: int = 0
    conf: Any = None
    conf_ref: Any = None

    def add(self, ref: np.ndarray, out: np.ndarray, label: np.ndarray | None, classes: int) -> None:
        err = np.abs(ref.astype(np.float64) - out.astype(np.float64))
        am_ref, am_out = ref.argmax(1), out.argmax(1)
        mask = margin_mask(ref)
        same = am_ref == am_out
        self.n += am_ref.size
        self.agree += float(same.sum())
        self.agree_m += float(same[mask].sum())
        self.m_count += float(mask.sum())
        self.max_err = max(self.max_err, float(np.nan_to_num(err, nan=np.inf).max()))
        self.sum_err += float(err.sum())
        self.numel += err.size
        if label is not None:
            c = _confusion(am_out.reshape(-1), label.reshape(-1), classes)
            r = _confusion(am_ref.reshape(-1), label.reshape(-1), classes)
            self.conf = c if self.conf is None else self.conf + c
            self.conf_ref = r if self.conf_ref is None else self.conf_ref + r

    def result(self, camera: str) -> CameraAccuracy:
        return CameraAccuracy(
            camera, self.agree / max(self.n, 1), self.agree_m / self.m_count if self.m_count else float("nan"),
            self.m_count / max(self.n, 1),
            self.max_err, self.sum_err / max(self.numel, 1),
            None if self.conf is None else _miou(self.conf), None if self.conf_ref is None else _miou(self.conf_ref),
        )


def accuracy_report(models: dict[str, Any], pairs: Sequence[Any], reference: Callable[[Any, Any], tuple[Any, Any]],
                    input_size: tuple[int, int], variant: str = "", reference_name: str = "FP32 PyTorch",
                    num_classes: int = 6, log: Callable[[str], None] | None = None) -> AccuracyReport:
    """Run each prepared graph (``precision -> ModelProto``) in ONNX Runtime CPU on ``pairs`` and compare it
    with ``reference(img120, img60) -> (seg120, seg60)`` (NumPy logits)."""
    from semshare.data import load_label, load_pair

    report = AccuracyReport(variant, reference_name, [p.key for p in pairs], input_size)
    from semshare.export.verify import cpu_session

    sessions = {name: cpu_session(ort_runnable(m)) for name, m in models.items()}
    acc = {name: {"120": _Accumulator(), "60": _Accumulator()} for name in models}
    seconds = dict.fromkeys(models, 0.0)
    for pair in pairs:
        img120, img60 = load_pair(pair.path120, input_size, pair.path60)
        ref120, ref60 = (np.asarray(r, np.float32) for r in reference(img120, img60))
        labels = label_paths(pair)
        lab = {cam: load_label(p, input_size)[None] for cam, p in labels.items()} if labels else {}
        for name, sess in sessions.items():
            names = [i.name for i in sess.get_inputs()]
            feed = dict(zip(names[:2], (img120.numpy(), img60.numpy()), strict=True))
            t0 = time.perf_counter()
            out120, out60 = sess.run(None, feed)[:2]
            seconds[name] += time.perf_counter() - t0
            acc[name]["120"].add(ref120, out120, lab.get("120"), num_classes)
            acc[name]["60"].add(ref60, out60, lab.get("60"), num_classes)
        if log:
            log(f"  pair {pair.key}: compared {', '.join(models)}")
    for name in models:
        report.precisions.append(PrecisionAccuracy(name, [acc[name][c].result(c) for c in ("120", "60")],
                                                   round(seconds[name], 2)))
    return report


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
    from semshare.infer import torch_predictor
    from semshare.models import create_model, load_checkpoint

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
                     "opset": _default_opset(prepared),
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
