"""The LR-ASPP segmentation head (``head.*``)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

#: The head's global-context pooling (kernel 49, stride (16, 20)) needs a 49-row feature map: H >= 16 * 49.
POOL_KERNEL = 49
MIN_INPUT_HEIGHT = 16 * POOL_KERNEL  # 784
MIN_INPUT_WIDTH = 16 * POOL_KERNEL


class LRASPPHead(nn.Module):
    """c4 (B, 960, h, w) -> logits (B, num_classes, h, w)."""

    def __init__(self, num_classes: int, in_channels: int = 960, inter: int = 128) -> None:
        super().__init__()
        self.lr_aspp = _LRASPP(in_channels, inter)
        self.project = nn.Conv2d(inter, num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.project(self.lr_aspp(x))


class _LRASPP(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.b0 = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU())
        self.b1 = nn.Sequential(
            nn.AvgPool2d(kernel_size=(POOL_KERNEL, POOL_KERNEL), stride=(16, 20)),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        feat2 = F.interpolate(self.b1(x), x.shape[-2:], mode="bilinear", align_corners=True)
        return self.b0(x) * feat2
