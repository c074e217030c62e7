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

