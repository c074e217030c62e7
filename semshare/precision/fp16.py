"""The fp16 pass: semshare's own float16 conversion (see :mod:`semshare.precision`)."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

import numpy as np

from semshare.errors import SemshareError
from semshare.precision.graph import (
    FIXED_FP32_INPUTS,
    FLOAT,
    FLOAT16,
    QDQ_FP16_OPSET,
    SAMPLING_OPS,
    consumers,
    data_nodes,
    default_opset,
    drop_dead_nodes,
    elem_types,
    fold_weight_aliases,
    grid_region,
    name_nodes,
    producers,
    toposort,
)

#: The smallest normal float16 (2**-14, 6.1e-5): a Q/DQ scale below it (or 0) would be flushed or lose its
#: precision in float16, and TensorRT's parser rejects a zero scale ("Scale coefficients must all be positive").
FP16_MIN_SCALE = 2.0 ** -14


def raise_fp16_scales(model: Any) -> list[str]:
    """Raise every Q/DQ scale below :data:`FP16_MIN_SCALE` (or 0, or NaN) to it, in place, before the scales
    become float16. A weight's ``DequantizeLinear`` (constant int8 input) gets the channels concerned
    re-quantized with the raised scale, so the dequantized weights stay what they were (to half a step of the
    new scale). Returns the names of the scales raised."""
    from onnx import numpy_helper

    g = model.graph
    inits = {t.name: t for t in g.initializer}
    raised: dict[str, np.ndarray] = {}
    requantized: set[str] = set()
    for n in g.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear") or len(n.input) < 2 or n.input[1] not in inits:
            continue
        stored = numpy_helper.to_array(inits[n.input[1]])
        scale = stored.astype(np.float32)
        low = ~(scale >= FP16_MIN_SCALE)
        if not low.any():
            continue
        new = np.where(low, np.float32(FP16_MIN_SCALE), scale)
        if n.op_type == "DequantizeLinear" and n.input[0] in inits and n.input[0] not in requantized:  # a weight
            q = numpy_helper.to_array(inits[n.input[0]])
            axis = next((a.i for a in n.attribute if a.name == "axis"), 1) % max(q.ndim, 1)
            shape = [-1 if i == axis else 1 for i in range(q.ndim)] if scale.ndim == 1 else []
            old_s, new_s = np.nan_to_num(scale).reshape(shape), new.reshape(shape)
            info = np.iinfo(q.dtype)
            requant = np.clip(np.round(q.astype(np.float32) * old_s / new_s), info.min + (info.min < 0), info.max)
            inits[n.input[0]].CopyFrom(numpy_helper.from_array(requant.astype(q.dtype), n.input[0]))
            requantized.add(n.input[0])
        raised[n.input[1]] = new.astype(stored.dtype)
    for name, new in raised.items():
        inits[name].CopyFrom(numpy_helper.from_array(new, name))
    return sorted(raised)



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
            and default_opset(model) < QDQ_FP16_OPSET:
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
    model = fold_weight_aliases(model)
    name_nodes(model)
    raise_fp16_scales(model)
    g = model.graph
    types = elem_types(model)
    keep = set(keep_fp32_ops)
    fp32_nodes = grid_region(model) | {n.name for n in g.node if n.op_type in SAMPLING_OPS | keep}
    data = data_nodes(model)
    fp16_nodes = {n.name for n in g.node if n.name in data and n.name not in fp32_nodes}
    inits = {t.name: t for t in g.initializer}
    prod = producers(model)
    cons = consumers(model)
    # Weight DequantizeLinear nodes (constant, so not data) feeding float16 compute dequantize straight to float16.
    fp16_nodes |= {n.name for n in g.node if n.op_type == "DequantizeLinear" and n.name not in fp32_nodes
                   and cons.get(n.output[0]) and all(c.name in fp16_nodes for c in cons[n.output[0]])}

    def is_fp16_input(node: Any, idx: int) -> bool:
        return node.name in fp16_nodes and idx not in FIXED_FP32_INPUTS.get(node.op_type, set())

    new_inits: list[Any] = []
    cast_nodes: list[Any] = []
    converted: dict[tuple[str, int], str] = {}  # (tensor, to) -> name of the converted tensor

    def convert(tensor: str, to: int) -> str:
        key = (tensor, to)
        if key in converted:
            return converted[key]
        suffix = "fp16" if to == FLOAT16 else "fp32"
        name = f"{tensor}__{suffix}"
        src_init = inits.get(tensor)
        const = prod.get(tensor)
        if src_init is not None:
            arr = numpy_helper.to_array(src_init).astype(np.float16 if to == FLOAT16 else np.float32)
            new_inits.append(numpy_helper.from_array(arr, name))
        elif const is not None and const.op_type == "Constant" and const.name not in data:
            value = next(a.t for a in const.attribute if a.name == "value")
            arr = numpy_helper.to_array(value).astype(np.float16 if to == FLOAT16 else np.float32)
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
            src_half = src is not None and src.name in fp16_nodes and ttype in (FLOAT, FLOAT16)
            want_half = is_fp16_input(node, idx)
            if want_half and ttype == FLOAT and not src_half:
                node.input[idx] = convert(t, FLOAT16)
            elif not want_half and src_half:
                node.input[idx] = convert(renamed_outputs.get(t, t), FLOAT)
        if half:
            if node.op_type == "Cast":
                for a in node.attribute:
                    if a.name == "to" and a.i == FLOAT:
                        a.i = FLOAT16
            for oi, o in enumerate(node.output):
                if o in out_names and types.get(o) == FLOAT:  # a graph output: compute as o__fp16, cast back
                    node.output[oi] = f"{o}__fp16"
                    renamed_outputs[o] = node.output[oi]
                    cast_nodes.append(helper.make_node("Cast", [node.output[oi]], [o], name=f"{o}__cast_out", to=FLOAT))
    # Consumers of a renamed graph output inside the graph read the fp16 tensor (or its fp32 twin).
    for node in g.node:
        for idx, t in enumerate(node.input):
            if t in renamed_outputs and node.name in fp16_nodes:
                node.input[idx] = renamed_outputs[t]
    # Cast nodes must come right after their producer: rebuild the node list in topological order.
    nodes = list(g.node) + cast_nodes
    g.ClearField("node")
    g.node.extend(toposort(nodes, {i.name for i in g.input} | set(inits) | {t.name for t in new_inits}))
    g.initializer.extend(new_inits)
    drop_dead_nodes(model)  # the float32 Constants now copied into float16 initializers, and what only they read
    # value_info is stale now: drop it for the converted tensors (TensorRT and ORT infer types themselves).
    stale = [vi for vi in g.value_info if types.get(vi.name) == FLOAT]
    for vi in stale:
        g.value_info.remove(vi)
    onnx.checker.check_model(model)
    return model

