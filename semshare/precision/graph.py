"""ONNX graph helpers shared by the precision passes: node names, producers/consumers, weight aliases, dead
nodes, element types, the grid region that stays float32, topological order."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from semshare.errors import SemshareError

#: Q/DQ nodes take float16 scales and data from this opset on.
QDQ_FP16_OPSET = 19

FLOAT = 1  # onnx.TensorProto.FLOAT
FLOAT16 = 10  # onnx.TensorProto.FLOAT16
SAMPLING_OPS = {"GridSample"}
#: Inputs that stay float32 whatever the node's precision (op_type -> input indices).
FIXED_FP32_INPUTS = {"Resize": {1, 2}, "HomographyWarp": {1}, "GridSample": {1}}
#: Ops where the backward walk from a sampling grid stops: learned compute (their outputs are cast up).
_COMPUTE_OPS = {"Conv", "ConvTranspose", "Gemm", "SpatialCorrelation", "HomographyWarp", "GridSample"}
#: Ops whose outputs carry shapes, not data: data-dependence does not flow through them.
_SHAPE_OPS = {"Shape", "Size"}




def name_nodes(model: Any) -> None:
    """Give every unnamed node a unique name (the int8 transfer matches nodes by name)."""
    seen: set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}" if not node.name else f"{node.name}_{i}"
        seen.add(node.name)


def producers(model: Any) -> dict[str, Any]:
    return {o: n for n in model.graph.node for o in n.output}


def consumers(model: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for n in model.graph.node:
        for i in n.input:
            out.setdefault(i, []).append(n)
    return out


def fold_weight_aliases(model: Any) -> Any:
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


def drop_dead_nodes(model: Any) -> Any:
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


def default_opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def elem_types(model: Any) -> dict[str, int]:
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


def grid_region(model: Any) -> set[str]:
    """Names of the nodes that compute a sampling grid: walked back from each GridSample's grid input,
    through everything but learned compute (Conv, plugins, sampling) and shape reads (``Shape(x)`` takes only
    the size of ``x``: the nodes making ``x`` are not grid math)."""
    prod = producers(model)
    region: set[str] = set()
    stack = [n.input[1] for n in model.graph.node if n.op_type in SAMPLING_OPS and len(n.input) > 1]
    while stack:
        t = stack.pop()
        node = prod.get(t)
        if node is None or node.name in region or node.op_type in _COMPUTE_OPS | _SHAPE_OPS:
            continue
        region.add(node.name)
        stack.extend(i for i in node.input if i)
    return region


def data_nodes(model: Any) -> set[str]:
    """Nodes that depend on a float graph input through data (not only through Shape): the compute."""
    inits = {t.name for t in model.graph.initializer}
    live = {i.name for i in model.graph.input if i.name not in inits and i.type.tensor_type.elem_type == FLOAT}
    out: set[str] = set()
    for n in model.graph.node:  # graph order is topological
        if n.op_type in _SHAPE_OPS:
            continue
        if any(i in live for i in n.input):
            out.add(n.name)
            live.update(n.output)
    return out


def toposort(nodes: Sequence[Any], available: set[str]) -> list[Any]:
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

