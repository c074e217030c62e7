"""``semshare infer``: image pairs or two synchronised videos -> coloured masks (and overlays) per camera.

The model runs through :class:`semshare.runtime.Segmenter`; :meth:`Segmenter.stream` overlaps reading and
preprocessing the next pair, the model, and writing the last pair's files. Runs are resumable: a pair whose
outputs all exist is skipped unless ``overwrite``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from semshare.data import (
    PairProblem,
    colorize,
    find_pairs,
    indexed_mask,
    overlay,
    read_pair,
    save_image_atomic,
)
from semshare.errors import SemshareError
from semshare.runtime import Segmentation, Segmenter

Progress = Callable[[int], object]


@dataclass
class InferResult:
    written: list[Path] = field(default_factory=list)
    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # outputs already there
    problems: list[PairProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the pairs that ran (reading, model, writing)
    model_seconds: float | None = None  # the model's median time per pair over this run

    @property
    def pairs_per_second(self) -> float | None:
        return len(self.done) / self.seconds if self.done and self.seconds > 0 else None

    def summary(self, output: str | Path) -> str:
        """One line: counts, then the pipeline's throughput against the model's own latency."""
        text = f"{len(self.done)} pair(s) -> {len(self.written)} file(s) in {output}"
        if self.skipped:
            text += f"; {len(self.skipped)} skipped (outputs exist; --overwrite to redo them)"
        rate = self.pairs_per_second
        if rate and self.model_seconds:
            model_rate = 1.0 / self.model_seconds
            text += (f"; {rate:.2f} pairs/s end to end, model {self.model_seconds * 1e3:.0f} ms/pair median "
                     f"({model_rate:.2f} pairs/s): the pipeline runs at {100 * rate / model_rate:.0f} % of the model's rate")
        return text


def run_infer(source: str | Path, output_dir: str | Path, segmenter: Segmenter, overlays: bool = True,
              overwrite: bool = False, progress: Progress | None = None,
              on_pairs: Callable[[int], object] | None = None) -> InferResult:
    """Segment every pair under ``source``; write ``<key>_fov{120,60}_mask.png`` (+ ``_overlay.png``).

    A mask PNG is a palette image: its pixel values are the class indices, its colours the authors' palette.

    Outputs keep the pair's folder structure below ``source``. A pair that fails (unreadable image, size
    mismatch) is reported in ``problems`` and the rest go on; nothing half-written is left.
    """
    source, output_dir = Path(source), Path(output_dir)
    pairs, problems = find_pairs(source)
    result = InferResult(problems=list(problems))
    if not pairs:
        hint = "; ".join(f"{p.path}: {p.reason}" for p in problems[:3])
        raise SemshareError(f"no fov120_N / fov60_N image pairs found under {source}" + (f" ({hint})" if hint else ""))
    base = source if source.is_dir() else source.parent
    todo = []
    for pair in pairs:
        out = output_dir / pair.path120.parent.relative_to(base)
        if not overwrite and all(p.is_file() for p in _outputs(out, pair.key, overlays)):
            result.skipped.append(pair.key)
        else:
            todo.append((pair, out))
    if on_pairs:
        on_pairs(len(todo))

    def write(item, images, seg):
        pair, out = item
        return pair.key, _write_pair(out, pair.key, images, seg, overlays)

    def failed(item, exc):
        result.problems.append(PairProblem(item[0].path120, str(exc)))

    _run(segmenter, todo, lambda item: read_pair(item[0].path120, item[0].path60, segmenter.size), write, failed, result, progress)
    return result


def run_infer_video(video120: str | Path, video60: str | Path, output_dir: str | Path, segmenter: Segmenter,
                    overlays: bool = True, overwrite: bool = False, frames: bool = False,
                    progress: Progress | None = None, on_pairs: Callable[[int], object] | None = None) -> InferResult:
    """Segment two frame-synchronised videos (frame i of one with frame i of the other, up to the shorter).

    ``frames=False``: mask videos ``fov120_mask.mp4`` / ``fov60_mask.mp4`` (+ ``_overlay.mp4``) at the first
    video's frame rate, skipped as a whole when they exist; ``frames=True``: PNGs ``NNNNNN_fov{120,60}_mask.png``
    (+ overlays) per frame pair, each skipped when it exists (the videos are still decoded up to it).
    """
    from semshare.runtime.video import VideoReader, VideoWriter

    output_dir = Path(output_dir)
    result = InferResult()
    r120, r60 = VideoReader(video120), VideoReader(video60)
    try:
        counts = [r.frames for r in (r120, r60) if r.frames is not None]
        names = [f"fov{cam}_{kind}.mp4" for kind in ("mask", "overlay")[: 2 if overlays else 1] for cam in ("120", "60")]
        if not frames and not overwrite and all((output_dir / n).is_file() for n in names):
            result.skipped.append("video")
            result.notes.append(f"{', '.join(names)} exist in {output_dir}; pass --overwrite to redo them")
            return result
        if on_pairs:
            on_pairs(min(counts) if len(counts) == 2 else None)
        writers = {n: VideoWriter(output_dir / n, r120.fps) for n in names} if not frames else {}

        def items() -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
            for i, (a, b) in enumerate(_synchronised(r120, r60, result.notes)):
                key = f"{i:06d}"
                if frames and not overwrite and all(p.is_file() for p in _outputs(output_dir, key, overlays)):
                    result.skipped.append(key)
                    if progress:
                        progress(1)
                    continue
                yield key, a, b

        def write(item, images, seg):
            key = item[0]
            if frames:
                return key, _write_pair(output_dir, key, images, seg, overlays)
            for cam, mask, image in (("120", seg.fov120, images[0]), ("60", seg.fov60, images[1])):
                writers[f"fov{cam}_mask.mp4"].append(np.asarray(colorize(mask)))
                if overlays:
                    writers[f"fov{cam}_overlay.mp4"].append(np.asarray(overlay(Image.fromarray(image), mask)))
            return key, []

        def failed(item, exc):
            raise exc

        try:
            _run(segmenter, items(), lambda item: item[1:], write, failed, result, progress)
        except BaseException:
            for w in writers.values():
                w.abort()
            raise
        result.written += [w.path for w in writers.values() if w.close()]
    finally:
        r120.close()
        r60.close()
    return result


def _synchronised(r120, r60, notes: list[str]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Frame pairs up to the shorter video; a note says which one was longer."""
    it120, it60 = iter(r120), iter(r60)
    n = 0
    while True:
        a, b = next(it120, None), next(it60, None)
        if a is None or b is None:
            if a is not None or b is not None:
                longer, shorter = (r120, r60) if a is not None else (r60, r120)
                notes.append(f"{longer.path.name} has more frames than {shorter.path.name}: stopped at the shorter, "
                             f"after {n} frame pairs")
            return
        n += 1
        yield a, b


def _run(segmenter: Segmenter, items, load, write, failed, result: InferResult, progress: Progress | None) -> None:
    """Stream ``items`` through the segmenter; ``write(item, images, seg) -> (key, paths)`` runs in its
    post-processing thread."""
    calls = len(segmenter.model_calls)
    t0 = time.perf_counter()
    for item, _, written in segmenter.stream(items, load, write):
        if isinstance(written, SemshareError):
            failed(item, written)
        else:
            key, paths = written
            result.written += paths
            result.done.append(key)
        if progress:
            progress(1)
    result.seconds = time.perf_counter() - t0
    result.model_seconds = segmenter.model_seconds_per_pair(since=calls)


def _outputs(out: Path, key: str, overlays: bool) -> list[Path]:
    kinds = ("mask", "overlay") if overlays else ("mask",)
    return [out / f"{key}_fov{cam}_{kind}.png" for cam in ("120", "60") for kind in kinds]


def _write_pair(out: Path, key: str, images: tuple[Any, Any], seg: Segmentation, overlays: bool) -> list[Path]:
    written = []
    for cam, mask, image in (("120", seg.fov120, images[0]), ("60", seg.fov60, images[1])):
        p = out / f"{key}_fov{cam}_mask.png"
        save_image_atomic(indexed_mask(mask), p)
        written.append(p)
        if overlays:
            p = out / f"{key}_fov{cam}_overlay.png"
            base = image if isinstance(image, Image.Image) else Image.fromarray(image)
            save_image_atomic(overlay(base, mask), p, compress_level=1)  # fast: it is a picture to look at
            written.append(p)
    return written
