"""ONNX graph work after the exporter: plugin-node shapes, the contract check, and the in-memory reference.

- :func:`annotate_plugin_shapes`: ONNX shape inference cannot see through custom-domain nodes, so their
  outputs get value_info computed from the contract (symbolic batch included), and inference runs on.
- :func:`plugin_nodes`: the ``semshare`` nodes of a graph.
- :func:`with_reference_ops`: a copy in which every plugin node is replaced by its standard-op
  decomposition (:mod:`semshare.export.lowering`), for running the ``tensorrt`` flavour in ONNX Runtime.
  Only for verification: never written to disk.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx
from onnx import helper, numpy_helper, shape_inference

from semshare.export.lowering import DECOMPOSITIONS
from semshare.ops.contracts import CONTRACTS, DOMAIN


def plugin_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.domain == DOMAIN]


def node_attributes(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _decoded(attrs: dict) -> dict:
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}


def _shape_of(vi: onnx.ValueInfoProto) -> list | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


def _plugin_output_shape(node: onnx.NodeProto, in_shape: list) -> list:
    attrs = _decoded(node_attributes(node))
    if node.op_type == "SpatialCorrelation":
        p = int(attrs.get("patch_size", CONTRACTS["SpatialCorrelation"].defaults()["patch_size"]))
        return [in_shape[0], p * p, in_shape[2], in_shape[3]]
    if node.op_type == "HomographyWarp":
        return [in_shape[0], in_shape[1], int(attrs["out_height"]), int(attrs["out_width"])]
    raise ValueError(f"unknown semshare op {node.op_type!r}")


def annotate_plugin_shapes(model: onnx.ModelProto, batch: str | int | None = None) -> onnx.ModelProto:
    """Shape-infer ``model``, giving each plugin node's output its type and shape from the contract.

    Plugin outputs have the dtype of their first input; ``batch`` (the graph's batch symbol or size) is
    their dimension 0 when given, since inference may have lost the symbol upstream (a Resize whose sizes
    come from Shape ops yields fresh ``unk__`` symbols). Nodes are handled in graph (topological) order,
    re-running inference after each so the next plugin node sees its inputs' shapes.
    """
    graph = model.graph
    plugin_outputs = {n.output[0] for n in plugin_nodes(model)}
    keep = [vi for vi in graph.value_info if vi.name not in plugin_outputs]
    del graph.value_info[:]
    graph.value_info.extend(keep)
    model = shape_inference.infer_shapes(model, data_prop=True)
    for node in plugin_nodes(model):
        known = {vi.name: vi for vi in (*model.graph.value_info, *model.graph.input, *model.graph.output)}
        src = known.get(node.input[0])
        in_shape = _shape_of(src) if src is not None else None
        if in_shape is None or len(in_shape) != 4:
            raise ValueError(f"no 4-D shape known for input {node.input[0]!r} of {node.op_type} node {node.name!r}")
        shape = _plugin_output_shape(node, in_shape)
        if batch is not None:
            shape[0] = batch
        dtype = src.type.tensor_type.elem_type
        if node.output[0] not in {o.name for o in model.graph.output}:  # graph outputs are typed already
            model.graph.value_info.append(helper.make_tensor_value_info(node.output[0], dtype, shape))
        model = shape_inference.infer_shapes(model, data_prop=True)
    return model


class ProtoEmitter:
    """``op``/``const`` as ONNX NodeProtos with unique names under ``prefix``."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self._n = 0

    def _name(self, op_type: str) -> str:
        self._n += 1
        return f"{self.prefix}/{op_type}_{self._n}"

    def op(self, op_type: str, *inputs: str, **attrs) -> str:
        name = self._name(op_type)
        self.nodes.append(helper.make_node(op_type, list(inputs), [name + "_out"], name=name, **attrs))
        return name + "_out"

    def const(self, array: np.ndarray) -> str:
        name = self._name("Constant")
        tensor = numpy_helper.from_array(np.ascontiguousarray(array), name + "_value")
        self.nodes.append(helper.make_node("Constant", [], [name + "_out"], name=name, value=tensor))
        return name + "_out"


def with_reference_ops(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` whose ``semshare`` nodes are replaced by standard-op decompositions.

    Needs the value_info of :func:`annotate_plugin_shapes` (the correlation's channel count). The
    decomposition's final node writes the plugin node's output name, so the rest of the graph is unchanged.
    """
    model = copy.deepcopy(model)
    shapes = {vi.name: _shape_of(vi) for vi in (*model.graph.value_info, *model.graph.input)}
    new_nodes: list[onnx.NodeProto] = []
    for node in model.graph.node:
        if node.domain != DOMAIN:
            new_nodes.append(node)
            continue
        attrs = {k: v for k, v in _decoded(node_attributes(node)).items()
                 if k not in ("plugin_namespace", "plugin_version")}
        shape = shapes.get(node.input[0])
        if node.op_type == "SpatialCorrelation" and shape and isinstance(shape[1], int):
            attrs["channels"] = shape[1]
        e = ProtoEmitter(f"{node.name or node.output[0]}/reference")
        out = DECOMPOSITIONS[node.op_type](e, *node.input, **attrs)
        e.nodes[-1].output[0] = node.output[0]
        assert out.endswith("_out")
        new_nodes.extend(e.nodes)
    del model.graph.node[:]
    model.graph.node.extend(new_nodes)
    kept = [o for o in model.opset_import if o.domain != DOMAIN]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    return model


def set_batch_dim(model: onnx.ModelProto, names: list[str], dim: str | int) -> None:
    """Give dimension 0 of the named graph inputs/outputs ``dim`` (a symbol such as ``"batch"`` or a size)."""
    for vi in (*model.graph.input, *model.graph.output):
        if vi.name in names:
            d = vi.type.tensor_type.shape.dim[0]
            if isinstance(dim, str):
                d.dim_param = dim
            else:
                d.dim_value = dim

