"""The one written contract of semshare's custom ops: names, inputs, attributes and their defaults.

The ONNX exporter emits nodes from this table and the TensorRT plugin creators accept exactly these
fields; tests on both sides read it, so the two cannot drift apart.

A plugin node in an ONNX file looks like
``domain="semshare", op_type=<name>, plugin_namespace="semshare", plugin_version="1"`` plus the op's
attributes below. Attribute types are ONNX INT / FLOAT / STRING only (the TensorRT ONNX parser passes
INT as kINT32, FLOAT as kFLOAT32, STRING as kCHAR).
"""

from __future__ import annotations

from dataclasses import dataclass, field

DOMAIN = "semshare"
PLUGIN_NAMESPACE = "semshare"
PLUGIN_VERSION = "1"


@dataclass(frozen=True)
class Attribute:
    name: str
    type: str  # "INT", "FLOAT" or "STRING"
    default: int | float | str | None  # None: required, no default
    doc: str


@dataclass(frozen=True)
class OpContract:
    name: str  # ONNX op_type == TensorRT plugin name
    python_name: str  # semshare.ops.<python_name>, folder plugins/<python_name>, tests/test_<python_name>.py
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attributes: tuple[Attribute, ...] = field(default_factory=tuple)

    def defaults(self) -> dict[str, int | float | str]:
        return {a.name: a.default for a in self.attributes if a.default is not None}


SPATIAL_CORRELATION = OpContract(
    name="SpatialCorrelation",
    python_name="spatial_correlation",
    inputs=("x1", "x2"),  # (B, C, H, W) each, same shape, float32 or float16
    outputs=("corr",),  # (B, P*P, H, W), dtype of x1
    attributes=(
        Attribute("patch_size", "INT", 9, "odd P >= 1: the P x P displacement window"),
        Attribute("kernel_size", "INT", 1, "must be 1 in version 1"),
        Attribute("stride", "INT", 1, "must be 1 in version 1"),
        Attribute("dilation_patch", "INT", 1, "step between displacements, >= 1"),
        Attribute("normalize", "INT", 1, "1: divide by the channel count C (mean over channels)"),
    ),
)

HOMOGRAPHY_WARP = OpContract(
    name="HomographyWarp",
    python_name="homography_warp",
    # src: (B, C, Hs, Ws) float32 or float16; src_from_dst: (B, 3, 3) or (1, 3, 3), always float32
    inputs=("src", "src_from_dst"),
    outputs=("dst",),  # (B, C, out_height, out_width), dtype of src
    attributes=(
        Attribute("out_height", "INT", None, "output height Hd >= 2"),
        Attribute("out_width", "INT", None, "output width Wd >= 2"),
        Attribute("align_corners", "INT", 1, "grid_sample align_corners (1 = training-time semantics)"),
        Attribute("padding_mode", "STRING", "zeros", "only 'zeros' in version 1"),
    ),
)

CONTRACTS = {c.name: c for c in (SPATIAL_CORRELATION, HOMOGRAPHY_WARP)}
