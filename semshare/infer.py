"""``semshare infer``: image pairs -> coloured masks and overlays per camera."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from semshare.data import (
    DEFAULT_SIZE,
    Pair,
    PairProblem,
    colorize,
    find_pairs,
    load_pair,
    overlay,
    read_image,
    save_image_atomic,
)
from semshare.errors import SemshareError

RANDOM_WEIGHTS_WARNING = (
    "no checkpoint given: the model has RANDOM weights and its masks are meaningless; "
    "pass --checkpoint PATH.pth (the authors' released .pth files load as they are)"
)


@dataclass
class InferResult:
    written: list[Path] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    problems: list[PairProblem] = field(default_factory=list)


def build_torch_model(variant: str, checkpoint: str | Path | None, device: str = "cpu", rig=None):
    """A model in eval mode on ``device``; random weights (with a warning) when no checkpoint is given."""
    import torch

    from semshare.models import create_model, load_checkpoint

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SemshareError("--device cuda asked for, but torch sees no CUDA GPU; use --device cpu")
    model = create_model(variant, rig=rig)
    if checkpoint is None:
        warnings.warn(RANDOM_WEIGHTS_WARNING, stacklevel=2)
    else:
        load_checkpoint(model, checkpoint)
    return model.to(device).eval()


def torch_predictor(model, device: str = "cpu") -> Callable:
    """(img120, img60) tensors -> (seg120, seg60) logits as NumPy arrays."""
    import torch

    def predict(img120, img60):
        with torch.inference_mode():
            a, b = model(img120.to(device), img60.to(device))
        return a.float().cpu().numpy(), b.float().cpu().numpy()

    return predict


def run_infer(
    source: str | Path,
    output_dir: str | Path,
    predict: Callable,
    size: tuple[int, int] = DEFAULT_SIZE,
    overlays: bool = True,
    progress: Callable[[int], object] | None = None,
    on_pairs: Callable[[int], object] | None = None,
) -> InferResult:
    """Predict every pair under ``source`` and write ``<key>_fov{120,60}_mask.png`` (+ ``_overlay.png``).

    Outputs keep the pair's folder structure below ``source``. A pair that fails (unreadable image, size
    mismatch) is reported in ``problems`` and the rest go on; nothing half-written is left.
    """
    source, output_dir = Path(source), Path(output_dir)
    pairs, problems = find_pairs(source)
    result = InferResult(problems=list(problems))
    if not pairs:
        hint = "; ".join(f"{p.path}: {p.reason}" for p in problems[:3])
        raise SemshareError(f"no fov120_N / fov60_N image pairs found under {source}" + (f" ({hint})" if hint else ""))
    if on_pairs:
        on_pairs(len(pairs))
    base = source if source.is_dir() else source.parent
    for pair in pairs:
        try:
            result.written += _infer_pair(pair, output_dir / pair.path120.parent.relative_to(base), predict, size, overlays)
            result.done.append(pair.key)
        except SemshareError as exc:
            result.problems.append(PairProblem(pair.path120, str(exc)))
        if progress:
            progress(1)
    return result


def _infer_pair(pair: Pair, out: Path, predict: Callable, size: tuple[int, int], overlays: bool) -> list[Path]:
    img120, img60 = load_pair(pair.path120, size, pair.path60)
    seg120, seg60 = predict(img120, img60)
    written = []
    for cam, seg, src in (("120", seg120, pair.path120), ("60", seg60, pair.path60)):
        mask = np.asarray(seg[0]).argmax(0).astype(np.uint8)
        p = out / f"{pair.key}_fov{cam}_mask.png"
        save_image_atomic(colorize(mask), p)
        written.append(p)
        if overlays:
            p = out / f"{pair.key}_fov{cam}_overlay.png"
            save_image_atomic(overlay(read_image(src), mask), p)
            written.append(p)
    return written
