"""Image pairs: discovery by the authors' naming, preprocessing, the class palette, mask colouring, and a
synthetic pair rendered from the rig for runs that have no camera data.

Pairs are ``fov120_NNNNN.<ext>`` / ``fov60_NNNNN.<ext>`` files in the same folder. Images are resized to the
model size (W x H = 1920 x 1216 by default, PIL bilinear, as the authors' loader does) and normalised with
ImageNet mean/std. Labels are PNGs holding one class index per pixel.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from semshare.errors import SemshareError

DEFAULT_SIZE = (1216, 1920)  # (H, W)
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")

#: The authors' palette (light/utils/visualize.py, 'yuanqu'); names follow the Cityscapes colours it reuses.
CLASS_NAMES = ("background", "road", "person", "car", "pole", "bicycle")
PALETTE = np.array(
    [[0, 0, 0], [128, 64, 128], [220, 20, 60], [0, 0, 142], [153, 153, 153], [119, 11, 32]], dtype=np.uint8
)

_NAME = re.compile(r"^fov(120|60)_(\w+)$")


@dataclass(frozen=True)
class Pair:
    """One camera pair: ``key`` is the NNNNN part shared by both files."""

    key: str
    path120: Path
    path60: Path


@dataclass(frozen=True)
class PairProblem:
    """A file that could not be paired, with the reason."""

    path: Path
    reason: str


def partner_path(path120: Path) -> Path | None:
    """The fov60 file beside a fov120 file (any image extension, the same one preferred)."""
    m = _NAME.match(path120.stem)
    if not m or m.group(1) != "120":
        return None
    stem = f"fov60_{m.group(2)}"
    for ext in (path120.suffix, *IMAGE_EXTENSIONS):
        for cand in (path120.with_name(stem + ext), path120.with_name(stem + ext.upper())):
            if cand.is_file():
                return cand
    return None


def find_pairs(root: str | Path, recursive: bool = True) -> tuple[list[Pair], list[PairProblem]]:
    """Pairs under ``root`` (a fov120 file, a folder, or a tree), and the files that have no partner."""
    root = Path(root)
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(p for p in (root.rglob("*") if recursive else root.iterdir())
                       if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    else:
        raise SemshareError(f"{root} does not exist; pass a fov120_NNNNN image, a folder of pairs or a tree")
    pairs: list[Pair] = []
    problems: list[PairProblem] = []
    seen60: set[Path] = set()
    for f in files:
        m = _NAME.match(f.stem)
        if not m:
            if root.is_file():
                problems.append(PairProblem(f, "name does not follow fov120_NNNNN.<ext>; rename it or pass a pair folder"))
            continue
        if m.group(1) == "60":
            continue
        p60 = partner_path(f)
        if p60 is None:
            problems.append(PairProblem(f, f"no partner fov60_{m.group(2)}.* beside it; add the 60-degree image"))
            continue
        seen60.add(p60.resolve())
        pairs.append(Pair(m.group(2), f, p60))
    for f in files:
        m = _NAME.match(f.stem)
        if m and m.group(1) == "60" and f.resolve() not in seen60 and not root.is_file():
            problems.append(PairProblem(f, f"no partner fov120_{m.group(2)}.* beside it; add the 120-degree image"))
    return pairs, problems


#: An image is refused when the model input is more than this many times larger on a side: the resize would
#: invent the picture (a 1x1 image would become a flat colour field), not show the scene.
MAX_UPSCALE = 4


def read_image(path: str | Path) -> Image.Image:
    """An RGB PIL image, or SemshareError naming the unreadable file."""
    from semshare.validate import check_input_file

    check_input_file(path, "image", "pass a JPEG/PNG camera image")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise SemshareError(f"cannot read image {path}: {exc}; is it a complete JPEG/PNG?") from None


def check_image_size(image: Image.Image, path: str | Path, size: tuple[int, int]) -> None:
    """Refuse an image far smaller than the model input ``size`` (H, W); see :data:`MAX_UPSCALE`."""
    w, h = image.size
    if w * MAX_UPSCALE < size[1] or h * MAX_UPSCALE < size[0]:
        raise SemshareError(
            f"image {path} is {w}x{h} but the model input is {size[1]}x{size[0]}: upscaling it more than "
            f"{MAX_UPSCALE}x would invent the picture; pass camera images of at least "
            f"{-(-size[1] // MAX_UPSCALE)}x{-(-size[0] // MAX_UPSCALE)} (or a model of a smaller --height/--width)")


def preprocess(image: Image.Image, size: tuple[int, int] = DEFAULT_SIZE):
    """PIL image -> (1, 3, H, W) float32 tensor: bilinear resize to ``size`` (H, W), /255, ImageNet mean/std
    (:func:`semshare.runtime.preprocess.prepare_image`)."""
    import torch

    from semshare.runtime.preprocess import prepare_image

    return torch.from_numpy(prepare_image(image, size))[None]


def read_pair(path120: str | Path, path60: str | Path | None = None,
              size: tuple[int, int] | None = None) -> tuple[Image.Image, Image.Image]:
    """The two RGB images of a pair, from a fov120 file and its fov60 partner (found beside it if not given).

    Both images must have the same size on disk (the rig's cameras do); a mismatch is an error.

    With the model input ``size`` (H, W), an image far smaller than it is refused (:func:`check_image_size`).
    """
    path120 = Path(path120)
    p60 = Path(path60) if path60 is not None else partner_path(path120)
    if p60 is None:
        if not path120.is_file():
            raise SemshareError(f"{path120} does not exist; pass a fov120_NNNNN image")
        raise SemshareError(f"{path120}: no fov60 partner found beside it; name the pair fov120_N.* / fov60_N.*")
    im120, im60 = read_image(path120), read_image(p60)
    if im120.size != im60.size:
        raise SemshareError(
            f"{path120.name} is {im120.size[0]}x{im120.size[1]} but {p60.name} is {im60.size[0]}x{im60.size[1]}; "
            "both cameras of a pair must have the same resolution"
        )
    if size is not None:
        check_image_size(im120, path120, size)
    return im120, im60


def load_pair(path120: str | Path, size: tuple[int, int] = DEFAULT_SIZE, path60: str | Path | None = None):
    """``(img120, img60)``, each (1, 3, H, W) tensors, from a fov120 file and its fov60 partner (:func:`read_pair`)."""
    im120, im60 = read_pair(path120, path60, size)
    return preprocess(im120, size), preprocess(im60, size)


def load_label(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """A label PNG (class index per pixel) as (H, W) int64, nearest-resized to ``size`` (H, W) if given."""
    try:
        with Image.open(path) as im:
            lab = im.convert("L") if im.mode not in ("L", "P", "I") else im.copy()
    except (OSError, ValueError) as exc:
        raise SemshareError(f"cannot read label {path}: {exc}") from None
    if size is not None and lab.size != (size[1], size[0]):
        lab = lab.resize((size[1], size[0]), Image.NEAREST)
    return np.asarray(lab, dtype=np.int64)


def colorize(mask: np.ndarray) -> Image.Image:
    """(H, W) class indices -> RGB image in the authors' palette (unknown classes black)."""
    idx = np.where((mask >= 0) & (mask < len(PALETTE)), mask, 0).astype(np.intp)
    return Image.fromarray(PALETTE[idx])


def overlay(image: Image.Image, mask: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """The coloured mask blended over the camera image (resized to the mask)."""
    color = colorize(mask)
    base = image.convert("RGB").resize(color.size, Image.BILINEAR)
    return Image.blend(base, color, alpha)


def indexed_mask(mask: np.ndarray) -> Image.Image:
    """(H, W) class indices -> a palette ("P") image: its pixels are the class indices, shown in the authors'
    colours (unknown classes black). As a PNG it is lossless for the classes and fast to encode."""
    image = Image.fromarray(np.where((mask >= 0) & (mask < len(PALETTE)), mask, 0).astype(np.uint8), "L")
    image.putpalette(PALETTE.tobytes())
    return image


def save_image_atomic(image: Image.Image, path: str | Path, **params) -> None:
    """Encode in memory (``params`` go to PIL's ``save``, e.g. ``compress_level=1``), then write through a temp
    file and a rename: no half-written file on failure."""
    from semshare.io import atomic_write_bytes

    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None:
        raise SemshareError(f"cannot write {path}: unknown image extension {path.suffix!r}; use .png or .jpg")
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    atomic_write_bytes(path, buf.getbuffer())


def synthetic_pair(size: tuple[int, int] = DEFAULT_SIZE, rig=None, seed: int = 0):
    """A rendered road scene seen by both cameras: ``(pil120, pil60)`` at the rig's frame size.

    The 120 image is drawn (sky, road with lane marks, boxes for cars and poles); the 60 image is the same
    scene seen through the rig homography (the 60 view samples the 120 image), so the pair is consistent
    with the calibration the models use.
    """
    import torch

    from semshare.ops import homography_warp
    from semshare.rig import Rig

    rig = rig or Rig.default()
    fw, fh = rig.frame_width, rig.frame_height
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:fh, 0:fw].astype(np.float32)
    horizon = 0.45 * fh
    img = np.zeros((fh, fw, 3), np.float32)
    sky = y < horizon
    img[sky] = np.array([135, 170, 215], np.float32) * (0.8 + 0.2 * (y[sky] / horizon))[:, None]
    img[~sky] = [90, 110, 80]
    # road: a trapezoid widening towards the camera, with dashed lane marks
    t = np.clip((y - horizon) / (fh - horizon), 0, 1)
    half = 40 + t * fw * 0.55
    road = (~sky) & (np.abs(x - fw / 2) < half)
    img[road] = [110, 105, 110]
    lane = road & (np.abs(np.abs(x - fw / 2) - half * 0.33) < 2 + 10 * t) & ((y // 40) % 2 == 0)
    img[lane] = [235, 235, 235]
    for _ in range(5):  # cars
        cy = rng.uniform(horizon + 60, fh - 150)
        s = (cy - horizon) / (fh - horizon)
        cw, ch = 120 + 420 * s, 80 + 260 * s
        cx = fw / 2 + rng.uniform(-0.4, 0.4) * fw * s
        box = (np.abs(x - cx) < cw / 2) & (y > cy - ch) & (y < cy)
        img[box] = rng.uniform(20, 230, 3)
    for px in (0.12, 0.88):  # poles
        img[(np.abs(x - px * fw) < 8) & (y > 0.15 * fh) & (y < 0.75 * fh)] = [150, 150, 150]
    img += rng.normal(0, 4, img.shape).astype(np.float32)
    img120 = np.clip(img, 0, 255).astype(np.uint8)
    src = torch.from_numpy(img120.transpose(2, 0, 1)).float()[None]
    hom = torch.tensor(rig.homographies()["120_from_60"], dtype=torch.float32)[None]
    img60 = homography_warp(src, hom, (fh, fw))[0].permute(1, 2, 0).clamp(0, 255).byte().numpy()
    return Image.fromarray(img120), Image.fromarray(img60)


def write_synthetic_pair(folder: str | Path, key: str = "00000", rig=None, seed: int = 0) -> Pair:
    """Render :func:`synthetic_pair` into ``folder`` as fov120_<key>.png / fov60_<key>.png."""
    folder = Path(folder)
    im120, im60 = synthetic_pair(rig=rig, seed=seed)
    p120, p60 = folder / f"fov120_{key}.png", folder / f"fov60_{key}.png"
    save_image_atomic(im120, p120)
    save_image_atomic(im60, p60)
    return Pair(key, p120, p60)
