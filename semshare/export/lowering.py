"""How semshare's custom ops become ONNX: a plugin node (target ``tensorrt``) or standard ops (target ``onnx``).

:func:`lower_ops` is the one place where that choice is made: it returns a copy of the model whose
``SpatialCorrelation`` / ``HomographyWarp`` modules are swapped for export modules of the asked target.
Their ``forward`` still runs the PyTorch reference (so tracing sees real values and shapes); only their
ONNX ``symbolic`` differs:

- ``tensorrt``: one node per call, ``domain="semshare"``, ``op_type`` = contract name, STRING attributes
  ``plugin_namespace="semshare"`` and ``plugin_version="1"`` plus the contract's attributes, emitted from
  :mod:`semshare.ops.contracts`.
- ``onnx``: the decomposition below (standard ops only).

The decompositions are written once against a tiny emitter interface (``op``/``const``), so the same code
builds the ``onnx`` target inside the TorchScript exporter and, in memory only, the reference that
verification substitutes for plugin nodes (:mod:`semshare.export.graph`).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from semshare.ops import HomographyWarp, SpatialCorrelation, homography_warp, spatial_correlation
from semshare.ops.contracts import (
    DOMAIN,
    HOMOGRAPHY_WARP,
    PLUGIN_NAMESPACE,
    PLUGIN_VERSION,
    SPATIAL_CORRELATION,
    OpContract,
)
from semshare.ops.homography_warp import Z_EPS

TARGETS = ("tensorrt", "onnx")
_INT64_MAX = np.iinfo(np.int64).max


# --- the decompositions (standard ONNX ops, opset 16-19) ----------------------------------------------


def emit_spatial_correlation(e, x1, x2, *, patch_size: int, dilation_patch: int = 1, normalize: int = 1,
                             channels: int | None = None, **_ignored):
    """Pad + P*P x (Slice, Mul, ReduceSum) + Concat (+ Div by C): ``(B, C, H, W) x2 -> (B, P*P, H, W)``.

    Slices use static starts and negative ends relative to the padded size, so they work for any batch
    (and any H, W). ``channels``: C when known statically; otherwise it is read from ``Shape(x1)``.
    """
    r = (patch_size // 2) * dilation_patch
    x2p = e.op("Pad", x2, e.const(np.array([0, 0, r, r, 0, 0, r, r], np.int64)))
    axes = e.const(np.array([2, 3], np.int64))
    channel_axis = e.const(np.array([1], np.int64))
    planes = []
    for i in range(patch_size):
        dy = i * dilation_patch
        for j in range(patch_size):
            dx = j * dilation_patch
            ends = [dy - 2 * r if dy < 2 * r else _INT64_MAX, dx - 2 * r if dx < 2 * r else _INT64_MAX]
            shifted = e.op("Slice", x2p, e.const(np.array([dy, dx], np.int64)), e.const(np.array(ends, np.int64)), axes)
            planes.append(e.op("ReduceSum", e.op("Mul", x1, shifted), channel_axis, keepdims=1))
    out = e.op("Concat", *planes, axis=1)
    if normalize:
        if channels is None:
            c = e.op("Slice", e.op("Shape", x1), e.const(np.array([1], np.int64)), e.const(np.array([2], np.int64)))
            c = e.op("Cast", c, to=1)  # TensorProto.FLOAT
        else:
            c = e.const(np.array(float(channels), np.float32))
        out = e.op("Div", out, c)
    return out


def destination_points(out_height: int, out_width: int, align_corners: int = 1) -> np.ndarray:
    """(1, Hd*Wd, 3) float32 homogeneous destination points, exactly those of ``homography_grid``."""
    if align_corners:
        xs = torch.linspace(-1.0, 1.0, out_width, dtype=torch.float32)
        ys = torch.linspace(-1.0, 1.0, out_height, dtype=torch.float32)
    else:
        xs = (torch.arange(out_width, dtype=torch.float32) * 2 + 1) / out_width - 1
        ys = (torch.arange(out_height, dtype=torch.float32) * 2 + 1) / out_height - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx, gy, torch.ones_like(gx)], -1).reshape(1, -1, 3).numpy()


def emit_homography_warp(e, src, src_from_dst, *, out_height: int, out_width: int, align_corners: int = 1,
                         padding_mode: str = "zeros", **_ignored):
    """Grid math + GridSample: ``q = p @ H^T``, ``grid = q.xy / q.z`` (undivided where ``|q.z| <= 1e-8``)."""
    pts = e.const(destination_points(out_height, out_width, align_corners))
    q = e.op("MatMul", pts, e.op("Transpose", src_from_dst, perm=[0, 2, 1]))  # (Bh, N, 3)
    last = e.const(np.array([2], np.int64))
    xy = e.op("Slice", q, e.const(np.array([0], np.int64)), e.const(np.array([2], np.int64)), last)
    z = e.op("Slice", q, e.const(np.array([2], np.int64)), e.const(np.array([3], np.int64)), last)
    one = e.const(np.array(1.0, np.float32))
    scale = e.op("Where", e.op("Greater", e.op("Abs", z), e.const(np.array(Z_EPS, np.float32))),
                 e.op("Div", one, z), one)
    grid = e.op("Reshape", e.op("Mul", xy, scale), e.const(np.array([-1, out_height, out_width, 2], np.int64)))
    batch = e.op("Slice", e.op("Shape", src), e.const(np.array([0], np.int64)), e.const(np.array([1], np.int64)))
    grid = e.op("Expand", grid, e.op("Concat", batch, e.const(np.array([1, 1, 1], np.int64)), axis=0))
    return e.op("GridSample", src, grid, mode="bilinear", padding_mode=padding_mode, align_corners=int(align_corners))


DECOMPOSITIONS = {SPATIAL_CORRELATION.name: emit_spatial_correlation, HOMOGRAPHY_WARP.name: emit_homography_warp}


# --- emitters: the TorchScript exporter's graph ---------------------------------------------------------


class TorchGraphEmitter:
    """``op``/``const`` onto a TorchScript ONNX graph (``g.op`` with typed attribute suffixes)."""

    def __init__(self, g) -> None:
        self.g = g

    def op(self, op_type: str, *inputs, **attrs):
        kw = {}
        for k, v in attrs.items():
            if isinstance(v, str):
                kw[f"{k}_s"] = v
            elif isinstance(v, float):
                kw[f"{k}_f"] = v
            else:  # int or list of ints
                kw[f"{k}_i"] = v
        return self.g.op(op_type, *inputs, **kw)

    def const(self, array: np.ndarray):
        return self.g.op("Constant", value_t=torch.from_numpy(np.ascontiguousarray(array)))


def plugin_attributes(contract: OpContract, values: dict) -> dict:
    """The node attributes of a plugin node, in contract order, typed as the contract says."""
    attrs: dict = {"plugin_namespace": PLUGIN_NAMESPACE, "plugin_version": PLUGIN_VERSION}
    for a in contract.attributes:
        v = values.get(a.name, a.default)
        if v is None:
            raise ValueError(f"{contract.name}: attribute {a.name} has no value and no default")
        attrs[a.name] = {"INT": int, "FLOAT": float, "STRING": str}[a.type](v)
    return attrs


def _symbolic(g, contract: OpContract, target: str, inputs: tuple, values: dict, out_sizes: list[int | None]):
    if target == "tensorrt":
        kw = {}
        for k, v in plugin_attributes(contract, values).items():
            kw[k + {str: "_s", float: "_f", int: "_i"}[type(v)]] = v
        out = g.op(f"{DOMAIN}::{contract.name}", *inputs, **kw)
        out.setType(inputs[0].type().with_sizes(out_sizes))
        return out
    return DECOMPOSITIONS[contract.name](TorchGraphEmitter(g), *inputs, **values)


def _sizes(value) -> list[int | None]:
    try:
        return list(value.type().varyingSizes())
    except RuntimeError:
        return [None] * 4


# --- export modules -------------------------------------------------------------------------------------


class _CorrelationFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x1, x2, target, patch_size, kernel_size, stride, dilation_patch, normalize):
        return spatial_correlation(x1, x2, patch_size, kernel_size, stride, dilation_patch, bool(normalize))

    @staticmethod
    def symbolic(g, x1, x2, target, patch_size, kernel_size, stride, dilation_patch, normalize):
        s = _sizes(x1)
        values = {"patch_size": patch_size, "kernel_size": kernel_size, "stride": stride,
                  "dilation_patch": dilation_patch, "normalize": normalize, "channels": s[1]}
        attrs = {k: v for k, v in values.items() if k != "channels"} if target == "tensorrt" else values
        return _symbolic(g, SPATIAL_CORRELATION, target, (x1, x2), attrs, [s[0], patch_size * patch_size, s[2], s[3]])


class _WarpFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, src, src_from_dst, target, out_height, out_width, align_corners, padding_mode):
        return homography_warp(src, src_from_dst, (out_height, out_width), bool(align_corners))

    @staticmethod
    def symbolic(g, src, src_from_dst, target, out_height, out_width, align_corners, padding_mode):
        s = _sizes(src)
        values = {"out_height": out_height, "out_width": out_width, "align_corners": align_corners,
                  "padding_mode": padding_mode}
        return _symbolic(g, HOMOGRAPHY_WARP, target, (src, src_from_dst), values, [s[0], s[1], out_height, out_width])


class ExportSpatialCorrelation(nn.Module):
    """Stands in for a :class:`SpatialCorrelation` during export; ``target`` picks the ONNX it becomes."""

    def __init__(self, op: SpatialCorrelation, target: str) -> None:
        super().__init__()
        self.target = target
        self.attrs = op.attributes()

    def forward(self, x1, x2):
        a = self.attrs
        return _CorrelationFn.apply(x1, x2, self.target, a["patch_size"], a["kernel_size"], a["stride"],
                                    a["dilation_patch"], a["normalize"])


class ExportHomographyWarp(nn.Module):
    """Stands in for a :class:`HomographyWarp` during export; same ``forward(src, src_from_dst, out_size)``."""

    def __init__(self, op: HomographyWarp, target: str) -> None:
        super().__init__()
        self.target = target
        self.register_buffer("src_from_dst", op.src_from_dst.clone(), persistent=False)
        self.out_size = op.out_size
        self.align_corners = op.align_corners

    def forward(self, src, src_from_dst=None, out_size=None):
        hom = self.src_from_dst if src_from_dst is None else src_from_dst
        hd, wd = (int(s) for s in (out_size or self.out_size))
        if hom.dim() == 2:
            hom = hom.unsqueeze(0)
        return _WarpFn.apply(src, hom.float(), self.target, hd, wd, int(self.align_corners),
                             HOMOGRAPHY_WARP.defaults()["padding_mode"])


def lower_ops(model: nn.Module, target: str) -> nn.Module:
    """A copy of ``model`` whose custom-op modules become export modules of ``target``.

    ``target="tensorrt"``: each call exports as one ``semshare`` plugin node; ``target="onnx"``: as standard
    ops. The original model is left untouched; the exported graph's node counts are checked afterwards.
    """
    if target not in TARGETS:
        raise ValueError(f"unknown export target {target!r}; choose one of: {', '.join(TARGETS)}")
    lowered = copy.deepcopy(model).eval()
    swaps = {SpatialCorrelation: ExportSpatialCorrelation, HomographyWarp: ExportHomographyWarp}
    for parent in list(lowered.modules()):
        for name, child in list(parent.named_children()):
            new = swaps.get(type(child))
            if new is not None:
                setattr(parent, name, new(child, target))
    return lowered
