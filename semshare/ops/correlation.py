"""SpatialCorrelation: the PWC-Net cost volume (semantics of the ``spatial-correlation-sampler`` package).

Function first (the math), module second (stores the configuration).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semshare.ops.contracts import SPATIAL_CORRELATION

_DEFAULTS = SPATIAL_CORRELATION.defaults()


def check_correlation_args(patch_size: int, kernel_size: int, stride: int, dilation_patch: int) -> None:
    """Raise ValueError for arguments that version 1 of the op does not support."""
    if not isinstance(patch_size, int) or patch_size < 1 or patch_size % 2 == 0:
        raise ValueError(f"spatial_correlation: patch_size must be a positive odd int, got {patch_size!r}")
    if kernel_size != 1:
        raise ValueError(f"spatial_correlation: only kernel_size=1 is supported, got {kernel_size!r}")
    if stride != 1:
        raise ValueError(f"spatial_correlation: only stride=1 is supported, got {stride!r}")
    if not isinstance(dilation_patch, int) or dilation_patch < 1:
        raise ValueError(f"spatial_correlation: dilation_patch must be an int >= 1, got {dilation_patch!r}")


def spatial_correlation(
    x1: Tensor,
    x2: Tensor,
    patch_size: int = _DEFAULTS["patch_size"],
    kernel_size: int = _DEFAULTS["kernel_size"],
    stride: int = _DEFAULTS["stride"],
    dilation_patch: int = _DEFAULTS["dilation_patch"],
    normalize: bool = bool(_DEFAULTS["normalize"]),
) -> Tensor:
    """Correlate each pixel of ``x1`` with a P x P neighbourhood of ``x2``.

    Args:
        x1, x2: (B, C, H, W), same shape and dtype (float32 or float16; float64 for gradcheck).
        patch_size: P, odd. dilation_patch: d, the step between displacements.
        kernel_size, stride: must be 1 (version 1 of the op).
        normalize: divide by C (a mean over channels), as the authors' models do after the package call.

    Returns:
        (B, P*P, H, W) in the dtype of ``x1``:
        ``out[b, i*P + j, y, x] = s * sum_c x1[b,c,y,x] * x2[b,c, y+(i-P//2)*d, x+(j-P//2)*d]``,
        zero where x2 is read outside the image, s = 1/C if normalize else 1.
        Float16 inputs are accumulated in float32.
    """
    check_correlation_args(patch_size, kernel_size, stride, dilation_patch)
    if x1.dim() != 4 or x1.shape != x2.shape:
        raise ValueError(
            f"spatial_correlation: x1 and x2 must be (B, C, H, W) of the same shape, got "
            f"{tuple(x1.shape)} and {tuple(x2.shape)}"
        )
    out_dtype = x1.dtype
    if x1.dtype in (torch.float16, torch.bfloat16):
        x1, x2 = x1.float(), x2.float()
    _, c, h, w = x1.shape
    r = (patch_size // 2) * dilation_patch
    x2p = F.pad(x2, (r, r, r, r))
    planes = []
    for i in range(patch_size):
        dy = i * dilation_patch
        for j in range(patch_size):
            dx = j * dilation_patch
            planes.append((x1 * x2p[:, :, dy : dy + h, dx : dx + w]).sum(1))
    out = torch.stack(planes, 1)
    if normalize:
        out = out / c  # a division, as the authors' ``corr /= C``
    return out.to(out_dtype)


class SpatialCorrelation(nn.Module):
    """Module form of :func:`spatial_correlation`; ``forward(x1, x2)`` is one call."""

    def __init__(
        self,
        patch_size: int = _DEFAULTS["patch_size"],
        kernel_size: int = _DEFAULTS["kernel_size"],
        stride: int = _DEFAULTS["stride"],
        dilation_patch: int = _DEFAULTS["dilation_patch"],
        normalize: bool = bool(_DEFAULTS["normalize"]),
    ) -> None:
        super().__init__()
        check_correlation_args(patch_size, kernel_size, stride, dilation_patch)
        self.patch_size = patch_size
        self.kernel_size = kernel_size
        self.stride = stride
        self.dilation_patch = dilation_patch
        self.normalize = normalize

    def attributes(self) -> dict[str, int]:
        """The op's attributes as the contract names them (ONNX node / plugin fields)."""
        return {
            "patch_size": self.patch_size,
            "kernel_size": self.kernel_size,
            "stride": self.stride,
            "dilation_patch": self.dilation_patch,
            "normalize": int(self.normalize),
        }

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return spatial_correlation(x1, x2, self.patch_size, self.kernel_size, self.stride,
                                   self.dilation_patch, self.normalize)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.attributes().items())
