"""semshare's custom ops, pure PyTorch: the reference every export and plugin is checked against."""

from semshare.ops.correlation import SpatialCorrelation, spatial_correlation
from semshare.ops.homography_warp import HomographyWarp, homography_warp

__all__ = ["HomographyWarp", "SpatialCorrelation", "homography_warp", "spatial_correlation"]
