"""PWC-Net pieces of the shared-semantics models (``flow_Network.*``).

Flow convention (the authors'): ``flow`` is (B, 2, H, W) in pixels of its own map, channel 0 along x,
channel 1 along y. Warping by a flow samples ``x`` at ``linspace(-1, 1) grid + flow / ((N - 1) / 2)`` with
corner-aligned ``grid_sample`` (the PyTorch 1.2 behaviour the checkpoints were trained with).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semshare.ops import SpatialCorrelation

SEARCH_RANGE = 4
PATCH = 2 * SEARCH_RANGE + 1


def conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """Conv3x3 (+bias) -> LeakyReLU(0.1); key ``0.weight``."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=True), nn.LeakyReLU(0.1))


class FeaturePyramidExtractor(nn.Module):
    """Stride-2 levels ``Feature(Lv{l})``; returns the pyramid coarsest first."""

    def __init__(self, channels: tuple[int, ...]) -> None:
        super().__init__()
        self.levels = len(channels) - 1
        for lvl, (cin, cout) in enumerate(zip(channels[:-1], channels[1:], strict=True)):
            self.add_module(f"Feature(Lv{lvl})", nn.Sequential(conv(cin, cout, 2), conv(cout, cout)))

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for lvl in range(self.levels):
            x = self._modules[f"Feature(Lv{lvl})"](x)
            out.append(x)
        return out[::-1]


class OpticalFlowEstimator(nn.Module):
    def __init__(self, cin: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(conv(cin, 128), conv(128, 128), conv(128, 96), conv(96, 64), conv(64, 32),
                                   nn.Conv2d(32, 2, 3, 1, 1, bias=True))

    def forward(self, x: Tensor) -> Tensor:
        return self.convs(x)


def base_grid(height: int, width: int, like: Tensor) -> Tensor:
    """(1, 2, H, W): channel 0 = linspace(-1, 1, W) along x, channel 1 = linspace(-1, 1, H) along y."""
    xs = torch.linspace(-1.0, 1.0, width, dtype=like.dtype, device=like.device)
    ys = torch.linspace(-1.0, 1.0, height, dtype=like.dtype, device=like.device)
    return torch.stack([xs.view(1, width).expand(height, width), ys.view(height, 1).expand(height, width)]).unsqueeze(0)


def normalized_flow(flow: Tensor) -> Tensor:
    """Pixels -> grid units: ``[fx / ((W-1)/2), fy / ((H-1)/2)]``."""
    h, w = flow.shape[-2:]
    return torch.stack([flow[:, 0] / ((w - 1.0) / 2.0), flow[:, 1] / ((h - 1.0) / 2.0)], 1)


def remap(x: Tensor, grid_nchw: Tensor) -> Tensor:
    """Corner-aligned bilinear ``grid_sample`` with a (B, 2, H, W) grid (the authors' ``remap``/warping)."""
    return F.grid_sample(x, grid_nchw.permute(0, 2, 3, 1), mode="bilinear", padding_mode="zeros", align_corners=True)


def warp_by_flow(x: Tensor, flow: Tensor) -> Tensor:
    """The authors' ``WarpingLayer``: sample ``x`` at grid + flow (flow in pixels of x's size)."""
    h, w = x.shape[-2:]
    return remap(x, base_grid(h, w, x) + normalized_flow(flow))


def scale_flow(flow: Tensor, sx: float, sy: float) -> Tensor:
    """Multiply channel 0 by ``sx`` and channel 1 by ``sy`` (no in-place slice writes)."""
    return torch.stack([flow[:, 0] * sx, flow[:, 1] * sy], 1)


def _estimate(estimator: nn.Module, corr: nn.Module, x1: Tensor, x2_warped: Tensor, flow: Tensor) -> Tensor:
    cost = corr(x1, x2_warped)
    return estimator(torch.cat([x1, cost, flow], 1)) + flow


class PWCNetImages(nn.Module):
    """The loosely model's PWC-Net: one shared 6-level extractor on two images, levels 0..4 estimated.

    lv_chs [3, 16, 32, 64, 96, 128, 192]; ``FlowEstimator(Lv5/Lv6)`` exist for the checkpoint only.
    """

    CHANNELS = (3, 16, 32, 64, 96, 128, 192)
    OUTPUT_LEVEL = 4

    def __init__(self) -> None:
        super().__init__()
        self.feature_pyramid_extractor = FeaturePyramidExtractor(self.CHANNELS)
        for lvl, ch in enumerate(self.CHANNELS[::-1]):
            self.add_module(f"FlowEstimator(Lv{lvl})", OpticalFlowEstimator(ch + PATCH * PATCH + 2))
        self.corr = SpatialCorrelation(patch_size=PATCH)

    def forward(self, img1: Tensor, img2: Tensor) -> Tensor:
        """Two (B, 3, h, w) images in 0..255 -> flow (B, 2, 4 * h_l4, 4 * w_l4) from level 4, x4 upsampled."""
        pyr1 = self.feature_pyramid_extractor(img1)
        pyr2 = self.feature_pyramid_extractor(img2)
        flow = img1.new_zeros(img1.shape[0], 2, *pyr1[0].shape[-2:])
        for lvl in range(self.OUTPUT_LEVEL + 1):
            x1, x2 = pyr1[lvl], pyr2[lvl]
            if lvl > 0:
                (h0, w0), (h1, w1) = flow.shape[-2:], x1.shape[-2:]
                flow = F.interpolate(flow, (h1, w1), mode="bilinear", align_corners=False)
                # The authors' quirk: x is rescaled by the height ratio, y by the width ratio.
                flow = scale_flow(flow, float(h1) / float(h0), float(w1) / float(w0))
            flow = _estimate(self._modules[f"FlowEstimator(Lv{lvl})"], self.corr, x1, warp_by_flow(x2, flow), flow)
        factor = 2 ** (len(self.CHANNELS) - self.OUTPUT_LEVEL - 1)
        h, w = flow.shape[-2:]
        return F.interpolate(flow, (h * factor, w * factor), mode="bilinear", align_corners=False) * factor


class PWCNetFeatures(nn.Module):
    """The tightly model's PWC-Net: x1 pyramid = warped 120 backbone features, x2 = 60 image pyramid.

    lv_chs [3, 16, 24, 40, 112]; three levels (112, 40, 24 channels at 1/16, 1/8, 1/4 of the padded image).
    """

    CHANNELS = (3, 16, 24, 40, 112)

    def __init__(self) -> None:
        super().__init__()
        self.feature_pyramid_extractor2 = FeaturePyramidExtractor(self.CHANNELS)
        for lvl, ch in enumerate(self.CHANNELS[:1:-1]):
            self.add_module(f"FlowEstimator(Lv{lvl})", OpticalFlowEstimator(ch + PATCH * PATCH + 2))
        self.corr = SpatialCorrelation(patch_size=PATCH)

    @staticmethod
    def padded_size(h: int, w: int) -> tuple[int, int]:
        """The image is resized up to a multiple of 32 before the pyramid."""
        return (h + 31) // 32 * 32, (w + 31) // 32 * 32

    def pyramid_sizes(self, h: int, w: int) -> list[tuple[int, int]]:
        """Sizes of the x1 levels (coarsest first) for an (h, w) second image."""
        ph, pw = self.padded_size(h, w)
        return [(ph // 16, pw // 16), (ph // 8, pw // 8), (ph // 4, pw // 4)]

    def forward(self, x1_pyramid: list[Tensor], img2: Tensor) -> Tensor:
        """x1 pyramid (coarsest first) + (B, 3, h, w) normalised image -> flow (B, 2, h, w) in pixels of h x w."""
        h_raw, w_raw = img2.shape[-2:]
        x2 = F.interpolate(img2, self.padded_size(h_raw, w_raw), mode="bilinear", align_corners=True)
        pyr2 = self.feature_pyramid_extractor2(x2)
        flow = img2.new_zeros(img2.shape[0], 2, *x1_pyramid[0].shape[-2:])
        for lvl, x1 in enumerate(x1_pyramid):
            if lvl > 0:
                h, w = flow.shape[-2:]
                flow = F.interpolate(flow, (2 * h, 2 * w), mode="bilinear", align_corners=True) * 2
            flow = _estimate(self._modules[f"FlowEstimator(Lv{lvl})"], self.corr, x1, warp_by_flow(pyr2[lvl], -flow), flow)
        h, w = flow.shape[-2:]
        flow = F.interpolate(flow, (h_raw, w_raw), mode="bilinear", align_corners=True)
        return scale_flow(flow, float(h_raw) / float(h), float(w_raw) / float(w))
