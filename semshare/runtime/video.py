"""Video files in and out, through ``imageio-ffmpeg`` (a declared dependency that ships its own ffmpeg).

Frames are uint8 RGB ``(H, W, 3)`` arrays. Writing goes to a temporary file beside the target, renamed into
place once the last frame is encoded: an interrupted run leaves no half-written video.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from semshare.errors import MissingDependencyError, SemshareError


def _ffmpeg() -> Any:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise MissingDependencyError("reading and writing videos needs imageio-ffmpeg, which is not installed; "
                                     "install it: pip install imageio-ffmpeg") from None
    return imageio_ffmpeg


class VideoReader:
    """The frames of a video file, in order; ``fps``, ``size`` (W, H) and ``frames`` (ffmpeg's count
    estimate from the header, None when unknown) are known once it is open."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise SemshareError(f"video {self.path} does not exist; pass an .mp4/.mkv/.avi file")
        self._gen = _ffmpeg().read_frames(str(self.path))
        try:
            meta = next(self._gen)
        except (OSError, RuntimeError, StopIteration) as exc:
            raise SemshareError(f"cannot read video {self.path}: {str(exc).strip().splitlines()[-1][:200] if str(exc).strip() else 'no stream'}; "
                                "is it a complete video file?") from None
        self.size: tuple[int, int] = tuple(meta["size"])
        self.fps: float = float(meta.get("fps") or 25.0)
        n = meta.get("duration", 0) * self.fps
        self.frames: int | None = int(round(n)) if n and math.isfinite(n) else None

    def __iter__(self) -> Iterator[np.ndarray]:
        w, h = self.size
        try:
            for buf in self._gen:
                yield np.frombuffer(buf, np.uint8).reshape(h, w, 3)
        except RuntimeError as exc:
            raise SemshareError(f"cannot decode {self.path}: {str(exc).strip().splitlines()[-1][:200]}") from None

    def close(self) -> None:
        self._gen.close()


class VideoWriter:
    """``append(frame)`` RGB frames of one size, then ``close()`` (renames into place) or ``abort()``."""

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self.fps = fps
        self._gen = None

    def append(self, frame: np.ndarray) -> None:
        if self._gen is None:
            h, w = frame.shape[:2]
            self._gen = _ffmpeg().write_frames(str(self.tmp), (w, h), fps=self.fps, codec="libx264", quality=8,
                                               macro_block_size=2, ffmpeg_log_level="error")
            self._gen.send(None)
        self._gen.send(np.ascontiguousarray(frame))

    def close(self) -> bool:
        """Finish the file; False when no frame came (and nothing was written)."""
        if self._gen is None:
            return False
        self._gen.close()
        os.replace(self.tmp, self.path)
        return True

    def abort(self) -> None:
        if self._gen is not None:
            self._gen.close()
        self.tmp.unlink(missing_ok=True)
