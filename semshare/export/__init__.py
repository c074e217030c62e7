"""ONNX export: ``export_onnx(variant, output, target="tensorrt"|"onnx", ...)`` -> a verified .onnx + manifest.

See :mod:`semshare.export.onnx` (the entry), :mod:`semshare.export.lowering` (plugin node or decomposition,
chosen from the target), :mod:`semshare.export.graph` (shapes, in-memory reference) and
:mod:`semshare.export.verify` (checks against PyTorch).
"""

from semshare.export.onnx import DEFAULT_OPSET, ExportResult, check_opset, export_onnx

__all__ = ["DEFAULT_OPSET", "ExportResult", "check_opset", "export_onnx"]
