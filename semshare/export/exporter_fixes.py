"""Corrections to torch.onnx's TorchScript exporter, active only for the duration of one semshare export.

Each fix is a correct symbolic registered with ``torch.onnx.register_custom_op_symbolic`` on entry and
unregistered on exit (:func:`exporter_fixes`), so nothing outside the export changes. Found by verification
against PyTorch (torch 2.13):

- ``aten::floordiv`` / ``aten::floor_divide`` on integers export as a *truncating* Div ("deprecated
  behaviour" in symbolic_opset9), so PWC-Net's round-up ``-(-h // 32) * 32`` becomes a round-down
  (313 -> 288 instead of 320) and the graph fails. torch's own ``_floor_divide`` is correct; it is used here.
- ``aten::linspace`` ignores its ``dtype``: Python-float bounds make the ramp DOUBLE, type promotion then
  casts the flow to double and GridSample gets a double grid (no ONNX Runtime kernel at opset 16-19; no
  double in TensorRT at all). The fix casts the ramp to the requested dtype.
"""

from __future__ import annotations

import contextlib

_OPSET = 9  # the registrations apply to every opset >= 9


def _linspace(g, start, end, steps, dtype, layout, device, pin_memory):
    import torch
    from torch.onnx._internal.torchscript_exporter import _type_utils, symbolic_helper, symbolic_opset9

    out = symbolic_opset9.linspace(g, start, end, steps, dtype, layout, device, pin_memory)
    scalar = None if symbolic_helper._is_none(dtype) else symbolic_helper._maybe_get_const(dtype, "i")
    if isinstance(scalar, int):
        jit_type = _type_utils.JitScalarType(scalar)
    else:
        jit_type = _type_utils.JitScalarType.from_dtype(torch.get_default_dtype())
    return g.op("Cast", out, to_i=jit_type.onnx_type())


def _floor_divide(g, self, other):
    from torch.onnx._internal.torchscript_exporter import symbolic_opset9

    return symbolic_opset9._floor_divide(g, self, other)


FIXES = {"aten::floordiv": _floor_divide, "aten::floor_divide": _floor_divide, "aten::linspace": _linspace}


@contextlib.contextmanager
def exporter_fixes():
    """Register the corrected symbolics for the ``with`` block only."""
    import torch

    done = []
    try:
        for name, fn in FIXES.items():
            torch.onnx.register_custom_op_symbolic(name, fn, _OPSET)
            done.append(name)
        yield
    finally:
        for name in done:
            torch.onnx.unregister_custom_op_symbolic(name, _OPSET)
