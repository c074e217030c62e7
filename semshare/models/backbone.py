"""MobileNetV3-large backbone, dilated (output stride 16), with the authors' module names (``pretrained.*``)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class HSwish(nn.Module):
    """x * ReLU6(x + 3) / 6, in the authors' operation order."""

    def forward(self, x: Tensor) -> Tensor:
        return x * F.relu6(x + 3.0) / 6.0


class HSigmoid(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.relu6(x + 3.0) / 6.0


class ConvBNHSwish(nn.Module):
    """Keys ``conv.weight``, ``bn.*``."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1, padding: int = 0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = HSwish()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class SEModule(nn.Module):
    """Squeeze-excite with Linear layers: keys ``fc.0.weight``, ``fc.2.weight``."""

    def __init__(self, channels: int, reduction: int = 4) -> None:
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channels, channels // reduction, bias=False),
            nn.ReLU(),
            nn.Linear(channels // reduction, channels, bias=False),
            HSigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        w = self.fc(self.avg_pool(x).flatten(1))
        return x * w.unsqueeze(-1).unsqueeze(-1)


class Bottleneck(nn.Module):
    """Inverted residual; ``conv`` indices 0..8 as in the authors' checkpoints (SE at index 5)."""

    def __init__(self, cin: int, cout: int, exp: int, k: int, stride: int, dilation: int, se: bool, act: str) -> None:
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        act_cls = HSwish if act == "HS" else nn.ReLU
        self.conv = nn.Sequential(
            nn.Conv2d(cin, exp, 1, bias=False),
            nn.BatchNorm2d(exp),
            act_cls(),
            nn.Conv2d(exp, exp, k, stride, (k - 1) // 2 * dilation, dilation, groups=exp, bias=False),
            nn.BatchNorm2d(exp),
            SEModule(exp) if se else nn.Identity(),
            act_cls(),
            nn.Conv2d(exp, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


# (kernel, expansion, out, SE, activation, stride) per block, MobileNetV3-large.
_LAYERS = (
    ((3, 16, 16, False, "RE", 1), (3, 64, 24, False, "RE", 2), (3, 72, 24, False, "RE", 1)),
    ((5, 72, 40, True, "RE", 2), (5, 120, 40, True, "RE", 1), (5, 120, 40, True, "RE", 1)),
    ((3, 240, 80, False, "HS", 2), (3, 200, 80, False, "HS", 1), (3, 184, 80, False, "HS", 1),
     (3, 184, 80, False, "HS", 1), (3, 480, 112, True, "HS", 1), (3, 672, 112, True, "HS", 1),
     (5, 672, 112, True, "HS", 1)),
    ((5, 672, 160, True, "HS", 2), (5, 960, 160, True, "HS", 1)),
)


class MobileNetV3Large(nn.Module):
    """The segmentation backbone. ``layer4`` is dilated (stride 1, dilation 2): c2..c4 share stride 16.

    ``classifier`` is never run; it exists so the authors' checkpoints load with ``strict=True``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = ConvBNHSwish(3, 16, 3, 2, 1)
        cin = 16
        for i, setting in enumerate(_LAYERS, start=1):
            dilation = 2 if i == 4 else 1
            blocks = []
            for k, exp, cout, se, act, s in setting:
                blocks.append(Bottleneck(cin, cout, exp, k, s if dilation == 1 else 1, dilation, se, act))
                cin = cout
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.layer5 = ConvBNHSwish(160, 960, 1)
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(960, 1280, 1), HSwish(), nn.Conv2d(1280, 1000, 1))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """(B, 3, H, W) -> c0 (24 @ /4), c1 (40 @ /8), c2 (112 @ /16), c3 (160 @ /16), c4 (960 @ /16)."""
        c0 = self.layer1(self.conv1(x))
        c1 = self.layer2(c0)
        c2 = self.layer3(c1)
        c3 = self.layer4(c2)
        c4 = self.layer5(c3)
        return c0, c1, c2, c3, c4

    def forward_c1(self, x: Tensor) -> Tensor:
        """Only conv1, layer1 and layer2 (the authors' ``base_forward60``): c1, 40 @ /8."""
        return self.layer2(self.layer1(self.conv1(x)))
