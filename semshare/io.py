"""Atomic file output: every artefact semshare writes goes through a temp file in the same folder and a rename,
so a failure (or a Ctrl-C) never leaves a half-written file, and files written together appear together."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def write_atomic(files: dict[Path, bytes | memoryview]) -> None:
    """Write every file through a temp file in its folder, then rename all; on failure none remains."""
    temps: dict[Path, Path] = {}
    done: list[Path] = []
    try:
        for path, data in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            temps[path] = Path(tmp)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        for path, tmp in temps.items():
            os.replace(tmp, path)
            done.append(path)
    except BaseException:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
        for path in done:
            path.unlink(missing_ok=True)
        raise


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, default=str) + "\n").encode()  # Paths and the like as strings


def atomic_write_bytes(path: str | Path, data: bytes | memoryview) -> Path:
    path = Path(path)
    write_atomic({path: data})
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_bytes(path, json_bytes(obj))
