"""The two feature-fusion modules (``FFM_60.*`` and ``FFM_120.*``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ConvBlock(nn.Module):
    """Conv (no bias) -> BN -> ReLU; keys ``conv1.weight``, ``bn.*``."""

    def __init__(self, cin: int, cout: int, k: int = 3, padding: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, k, 1, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv1(x)))


class FeatureFusionRes(nn.Module):
    """'FFM_res': cat([a, b]) (46 channels) -> conv-BN-ReLU -> conv-BN -> ReLU(+ skip) -> 1x1 conv."""

    def __init__(self, num_classes: int, channels: int = 46) -> None:
        super().__init__()
        self.convblock = ConvBlock(channels, channels)
        self.conv3 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, num_classes, 1)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        feature = torch.cat((a, b), dim=1)
        x = self.bn(self.conv3(self.convblock(feature)))
        return self.conv1(F.relu(x + feature))


class Residual131(nn.Module):
    def __init__(self, channels: int, mid: int) -> None:
        super().__init__()
        self.convblock_in = ConvBlock(channels, mid, k=1, padding=0)
        self.convblock_mid = ConvBlock(mid, mid)
        self.conv1_out = nn.Conv2d(mid, channels, 1)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn(self.conv1_out(self.convblock_mid(self.convblock_in(x))))
        return F.relu(y + x)


class FeatureFusionRes131(nn.Module):
    """'FFM_res131_120': ReLU(residual131(a + b) + (a + b)): the 120 logits end in a ReLU (non-negative)."""

    def __init__(self, num_classes: int, mid: int = 32) -> None:
        super().__init__()
        self.residual131 = Residual131(num_classes, mid)

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        return self.residual131(a + b)
