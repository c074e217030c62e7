"""The three published variants: ``mobilenetv3``, ``mobilenetv3_loosely``, ``mobilenetv3_tightly``.

Every model is called ``model(img120, img60) -> (seg120, seg60)``: inputs (B, 3, H, W) float32 normalised
with ImageNet mean/std, outputs (B, num_classes, H, W) logits. The training-time conventions of the
authors' code are reproduced (corner-aligned sampling, ``linspace(-1, 1)`` warp grids) together with each
quirk of ``ORIGINAL_ARCHITECTURE.md``; sizes follow the input and the rig, and equal the authors' hard-coded
ones at 1216 x 1920.

The shared-semantics variants take two optional inputs, ``h120_from_60`` and ``h60_from_120``
((B or 1, 3, 3) normalised homographies, see :mod:`semshare.rig`): given, they replace the rig's (one
exported graph serving several rigs); omitted, the model uses its rig's, held as non-persistent buffers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from semshare.errors import SemshareError
from semshare.models.backbone import MobileNetV3Large
from semshare.models.fusion import FeatureFusionRes, FeatureFusionRes131
from semshare.models.lraspp import MIN_INPUT_HEIGHT, MIN_INPUT_WIDTH, LRASPPHead
from semshare.models.pwcnet import PWCNetFeatures, PWCNetImages, base_grid, normalized_flow, remap, scale_flow
from semshare.models.registry import register_model
from semshare.ops import HomographyWarp
from semshare.rig import Rig

DEFAULT_INPUT_SIZE = (1216, 1920)  # the authors' resize of the 1920x1208 camera frames
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _interp(x: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(x, size, mode="bilinear", align_corners=True)


class SegmentationModel(nn.Module):
    """Common parts: the backbone (``pretrained``), the head, input checks."""

    variant = ""

    def __init__(self, num_classes: int = 6) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.pretrained = MobileNetV3Large()

    def check_inputs(self, img120: Tensor, img60: Tensor) -> tuple[int, int]:
        if img120.dim() != 4 or img120.shape[1] != 3:
            raise SemshareError(f"{self.variant}: inputs must be (B, 3, H, W) images, got {tuple(img120.shape)}")
        if img120.shape != img60.shape:
            raise SemshareError(
                f"{self.variant}: the 120 and 60 images must have the same shape, got {tuple(img120.shape)} and "
                f"{tuple(img60.shape)}; resize both to the model size"
            )
        h, w = int(img120.shape[-2]), int(img120.shape[-1])
        if h < MIN_INPUT_HEIGHT or w < MIN_INPUT_WIDTH:
            raise SemshareError(
                f"{self.variant}: input {h}x{w} is too small: the LR-ASPP head pools 49x49 at stride 16, so H and W "
                f"must be >= {MIN_INPUT_HEIGHT}; use the default {DEFAULT_INPUT_SIZE[0]}x{DEFAULT_INPUT_SIZE[1]}"
            )
        return h, w


@register_model("mobilenetv3")
class MobileNetV3Seg(SegmentationModel):
    """Two independent MobileNetV3 LR-ASPP passes with shared weights (no cross-view interaction)."""

    variant = "mobilenetv3"

    def __init__(self, num_classes: int = 6, rig: Rig | None = None, **_: object) -> None:
        super().__init__(num_classes)
        self.head = LRASPPHead(num_classes)

    def _segment(self, x: Tensor) -> Tensor:
        return _interp(self.head(self.pretrained(x)[4]), x.shape[-2:])

    def forward(self, img120: Tensor, img60: Tensor) -> tuple[Tensor, Tensor]:
        self.check_inputs(img120, img60)
        return self._segment(img120), self._segment(img60)


class _SharedSemantics(SegmentationModel):
    """Shared by loosely and tightly: rig, scale, homography buffers."""

    def __init__(self, num_classes: int = 6, rig: Rig | None = None, scale: float = 0.4,
                 input_size: tuple[int, int] = DEFAULT_INPUT_SIZE) -> None:
        super().__init__(num_classes)
        self.rig = rig or Rig.default()
        self.scale = float(scale)
        self.input_size = (int(input_size[0]), int(input_size[1]))
        # Registration order = the authors' state-dict key order: flow_Network, (warps), head, FFM_120, FFM_60.
        self.flow_Network = self.flow_network_cls()
        a, b = self.rig_homographies(*self.input_size)
        self._add_warps(a, b)
        self.head = LRASPPHead(num_classes)
        self.FFM_120 = FeatureFusionRes131(num_classes)
        self.FFM_60 = FeatureFusionRes(num_classes)
        self.register_buffer("h120_from_60", a, persistent=False)
        self.register_buffer("h60_from_120", b, persistent=False)

    flow_network_cls: type[nn.Module]

    def _add_warps(self, h120_from_60: Tensor, h60_from_120: Tensor) -> None:
        """The variant's HomographyWarp modules (they hold no state-dict keys)."""
        raise NotImplementedError

    def scale_size(self, h: int, w: int) -> tuple[int, int]:
        return int(h * self.scale), int(w * self.scale)

    def homography_frame(self, h: int, w: int) -> tuple[float, float]:
        """The (width, height) frame the normalised homographies refer to."""
        raise NotImplementedError

    def rig_homographies(self, h: int, w: int) -> tuple[Tensor, Tensor]:
        """(120_from_60, 60_from_120), each (1, 3, 3) float32, computed in float64 as the authors do."""
        hom = self.rig.homographies(self.homography_frame(h, w))
        return (torch.tensor(hom["120_from_60"], dtype=torch.float32).unsqueeze(0),
                torch.tensor(hom["60_from_120"], dtype=torch.float32).unsqueeze(0))

    def _homographies(self, h: int, w: int, h120_from_60: Tensor | None, h60_from_120: Tensor | None,
                      like: Tensor) -> tuple[Tensor, Tensor]:
        if (h, w) == self.input_size:
            a, b = self.h120_from_60, self.h60_from_120
        else:
            a, b = (t.to(like.device) for t in self.rig_homographies(h, w))
        return (a if h120_from_60 is None else h120_from_60), (b if h60_from_120 is None else h60_from_120)


@register_model("mobilenetv3_loosely")
class MobileNetV3SegLoosely(_SharedSemantics):
    """120 logits shared with the 60 view through homography + image-level PWC-Net flow (5 levels)."""

    variant = "mobilenetv3_loosely"
    flow_network_cls = PWCNetImages

    def __init__(self, num_classes: int = 6, rig: Rig | None = None, scale: float = 0.4,
                 input_size: tuple[int, int] = DEFAULT_INPUT_SIZE) -> None:
        super().__init__(num_classes, rig, scale, input_size)
        self.register_buffer("mean255", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std255", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _add_warps(self, h120_from_60: Tensor, h60_from_120: Tensor) -> None:
        size = self.scale_size(*self.input_size)
        self.warp_120_60 = HomographyWarp(h120_from_60, size)
        self.warp_60_120 = HomographyWarp(h60_from_120, size)

    def homography_frame(self, h: int, w: int) -> tuple[float, float]:
        # The authors rebuild the homography per call from the scaled tensor (int(s*H) x int(s*W)) with K
        # scaled by s: in frame terms that is (int(s*W)/s, int(s*H)/s), e.g. 1920 x 1215 at 1216x1920.
        sh, sw = self.scale_size(h, w)
        return sw / self.scale, sh / self.scale

    def _warp(self, module: HomographyWarp, x: Tensor, hom: Tensor) -> Tensor:
        # warp_kornia works on x / 255 and multiplies back.
        return 255.0 * module(x / 255.0, hom, x.shape[-2:])

    def forward(self, img120: Tensor, img60: Tensor, h120_from_60: Tensor | None = None,
                h60_from_120: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h, w = self.check_inputs(img120, img60)
        size = self.scale_size(h, w)
        hom_a, hom_b = self._homographies(h, w, h120_from_60, h60_from_120, img120)

        f120 = _interp(self.head(self.pretrained(img120)[4]), size)  # F_120_8_scale, 6 ch
        f60 = _interp(self.pretrained.forward_c1(img60), size)  # F_60_8_scale, 40 ch (only c1 is used)

        # Flow between the homography-aligned images, de-normalised to 0..255.
        i120 = self._warp(self.warp_120_60, _interp(img120, size), hom_a)
        i60 = _interp(img60, size)
        flow = self.flow_Network((i120 * self.std255 + self.mean255) * 255,
                                 (i60 * self.std255 + self.mean255) * 255)
        fh, fw = flow.shape[-2:]
        if (fh, fw) != size:
            flow = F.interpolate(flow, size, mode="bilinear", align_corners=False)
            flow = scale_flow(flow, float(size[0]) / float(fh), float(size[1]) / float(fw))  # x by height ratio
        grid = base_grid(size[0], size[1], flow)
        offset = normalized_flow(flow)

        f120_60 = remap(self._warp(self.warp_120_60, f120, hom_a), grid - offset)
        seg60 = self.FFM_60(f120_60, f60)  # [6 warped logits, 40 features]
        back = self._warp(self.warp_60_120, remap(seg60, grid + offset), hom_b)
        seg120 = self.FFM_120(f120, back)
        return _interp(seg120, (h, w)), _interp(seg60, (h, w))


# The authors' (scale_h, scale_w) of the tightly warps for a 1216x1920 input, over the 1920x1208 rig frame.
# Their truncation to 6 digits makes two outputs a row short (151 and 303): reproduced, scaled with the input.
TIGHTLY_WARP_SCALES = {
    "warp_1_16": (0.062914, 0.0625),
    "warp_1_8": (0.125827, 0.125),
    "warp_1_4": (0.251655, 0.25),
    "warp_2_5": (0.402649, 0.4),
    "warp_2_5_60_120": (0.402649, 0.4),
}


@register_model("mobilenetv3_tightly")
class MobileNetV3SegTightly(_SharedSemantics):
    """120 backbone features (1/16, 1/8, 1/4) warped into the 60 view feed the flow; logits fused both ways."""

    variant = "mobilenetv3_tightly"
    flow_network_cls = PWCNetFeatures

    def _add_warps(self, h120_from_60: Tensor, h60_from_120: Tensor) -> None:
        sizes = self.warp_sizes(*self.input_size)
        for name in TIGHTLY_WARP_SCALES:
            setattr(self, name, HomographyWarp(h60_from_120 if name.endswith("60_120") else h120_from_60, sizes[name]))

    def homography_frame(self, h: int, w: int) -> tuple[float, float]:
        return float(self.rig.frame_width), float(self.rig.frame_height)

    def warp_sizes(self, h: int, w: int) -> dict[str, tuple[int, int]]:
        ref_h, ref_w = DEFAULT_INPUT_SIZE
        fw, fh = self.rig.frame_width, self.rig.frame_height
        return {name: (int(fh * (sh * (h / ref_h))), int(fw * (sw * (w / ref_w))))
                for name, (sh, sw) in TIGHTLY_WARP_SCALES.items()}

    def forward(self, img120: Tensor, img60: Tensor, h120_from_60: Tensor | None = None,
                h60_from_120: Tensor | None = None) -> tuple[Tensor, Tensor]:
        h, w = self.check_inputs(img120, img60)
        size = self.scale_size(h, w)
        hom_a, hom_b = self._homographies(h, w, h120_from_60, h60_from_120, img120)
        sizes = self.warp_sizes(h, w)

        c0, c1, c2, _, c4 = self.pretrained(img120)
        f120_8 = _interp(self.head(c4), c1.shape[-2:])
        f120_scale = _interp(f120_8, size)
        c1_60 = self.pretrained.forward_c1(img60)

        warped = [self.warp_1_16(c2, hom_a, sizes["warp_1_16"]), self.warp_1_8(c1, hom_a, sizes["warp_1_8"]),
                  self.warp_1_4(c0, hom_a, sizes["warp_1_4"])]
        x1 = [_interp(x, s) for x, s in zip(warped, self.flow_Network.pyramid_sizes(*size), strict=True)]
        flow = self.flow_Network(x1, _interp(img60, size))
        grid = base_grid(size[0], size[1], flow)
        offset = normalized_flow(flow)

        f120_60 = remap(self.warp_2_5(f120_scale, hom_a, sizes["warp_2_5"]), grid - offset)
        seg60_8 = self.FFM_60(c1_60, _interp(f120_60, c1.shape[-2:]))  # [40 features, 6 logits]
        back = self.warp_2_5_60_120(remap(_interp(seg60_8, size), grid + offset), hom_b, sizes["warp_2_5_60_120"])
        seg120_8 = self.FFM_120(f120_8, _interp(back, c1.shape[-2:]))
        return _interp(seg120_8, (h, w)), _interp(seg60_8, (h, w))
