"""The model's input and output conventions, in NumPy: images in, class masks out, at any image size.

In: uint8 RGB images (NumPy ``(H, W, 3)`` or PIL), bilinearly resized to the model size (PIL, as the authors'
loader does), then ``(pixel / 255 - mean) / std`` with the ImageNet statistics, channels first, float32.
Out: class = argmax over the channels of the logits ``(classes, h, w)`` at the model size, nearest-resized
to the image size; logits (on request) bilinearly resized to it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from semshare.data import IMAGENET_MEAN, IMAGENET_STD
from semshare.errors import SemshareError

#: (3, 256): ``(v / 255 - mean) / std`` in float32 for every uint8 value v of each channel: a table look-up
#: gives the very same numbers as the formula, several times faster on a whole image.
_NORMALIZED = ((np.arange(256, dtype=np.float32)[:, None] / 255.0 - IMAGENET_MEAN) / IMAGENET_STD).T.copy()


def prepare_image(image: Image.Image | np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One RGB image -> ``(3, H, W)`` float32 model input at ``size`` (H, W)."""
    h, w = size
    if isinstance(image, np.ndarray):
        if image.shape[:2] == (h, w):
            arr = image
        else:
            arr = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
    else:
        image = image.convert("RGB") if image.mode != "RGB" else image
        arr = np.asarray(image if image.size == (w, h) else image.resize((w, h), Image.BILINEAR))
    out = np.empty((3, h, w), np.float32)
    for c in range(3):
        np.take(_NORMALIZED[c], arr[..., c], out=out[c])
    return out


def as_images(x: Any, name: str) -> tuple[list[np.ndarray], bool]:
    """``x`` as a list of ``(H, W, 3)`` uint8 arrays, and whether it was a batch.

    A single image is a PIL image or an ``(H, W, 3)`` array; a batch is an ``(N, H, W, 3)`` array or a
    list/tuple of single images (their sizes may differ).
    """
    if isinstance(x, Image.Image):
        return [np.asarray(x.convert("RGB"))], False
    if isinstance(x, (list, tuple)):
        if not x:
            raise SemshareError(f"{name} is an empty batch; pass at least one image")
        return [_one(im, f"{name}[{i}]") for i, im in enumerate(x)], True
    arr = np.asarray(x)
    if arr.ndim == 4:
        if not len(arr):
            raise SemshareError(f"{name} is an empty batch; pass at least one image")
        return [_one(a, f"{name}[{i}]") for i, a in enumerate(arr)], True
    return [_one(arr, name)], False


def _one(im: Any, name: str) -> np.ndarray:
    if isinstance(im, Image.Image):
        return np.asarray(im.convert("RGB"))
    arr = np.asarray(im)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise SemshareError(f"{name} is a {arr.dtype} array of shape {arr.shape}; pass a uint8 RGB image "
                            "(H, W, 3), an (N, H, W, 3) batch, or PIL images")
    return arr


def resize_mask(mask: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(h, w)`` class indices -> ``(H, W)``, nearest (PIL), unchanged when already that size."""
    h, w = size
    if mask.shape == (h, w):
        return mask
    return np.asarray(Image.fromarray(mask).resize((w, h), Image.NEAREST))


def resize_logits(logits: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``(classes, h, w)`` -> ``(classes, H, W)`` float32, bilinear (PIL), unchanged when already that size."""
    h, w = size
    if logits.shape[1:] == (h, w):
        return logits
    return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(c, np.float32), "F").resize((w, h), Image.BILINEAR))
                     for c in logits])


def argmax_classes(logits: np.ndarray) -> np.ndarray:
    """``(classes, H, W)`` logits -> ``(H, W)`` uint8 class indices (the first of equal maxima, as np.argmax).

    A pass per class over whole planes: several times faster than ``argmax(0)`` on a channels-first array."""
    best = logits[0].copy()
    mask = np.zeros(best.shape, np.uint8)
    for c in range(1, len(logits)):
        better = logits[c] > best
        np.copyto(best, logits[c], where=better)
        mask[better] = c
    return mask
