"""Atomic file output: every artefact semshare writes goes through a temp file in the same folder and a rename,
so a failure (or a Ctrl-C) never leaves a half-written file, and files written together appear together.

Guarantees of :func:`write_atomic` (tested in tests/test_bad_inputs.py):

- a target is only ever replaced by a complete file (temp file, ``fsync``, ``os.replace``);
- when any file of the set cannot be written, every target is left exactly as it was before the call: files
  that existed are restored from a hard-link backup taken before the first rename, files that did not exist
  are removed (only those: nothing it did not create is ever deleted), folders it created are removed again;
- two semshare processes writing the same set at once serialise their renames (``flock`` on the folder), so
  the set on disk is always wholly one writer's;
- new files get the permissions the umask gives (``0o666 & ~umask``), a replaced file keeps its own;
- a SIGKILL can leave a hidden ``.NAME.*.tmp`` (or ``.bak``) beside the target, never a partial NAME.

Errors are :class:`~semshare.io.OutputError` (a SemshareError) naming the file that could not be written.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from semshare.errors import SemshareError


class OutputError(SemshareError):
    """An output file that cannot be written (folder missing and not creatable, read-only, a folder in the way)."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"cannot write {path} ({reason}); pass an output path in a writable folder with free space")
        self.path = path


def umask() -> int:
    """The process umask, without changing it (read from /proc on Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but only at output time)
    os.umask(mask)
    return mask


def _reason(exc: OSError) -> str:
    if isinstance(exc, IsADirectoryError) or exc.errno == 21:
        return "a folder of that name is in the way"
    return exc.strerror or type(exc).__name__


def _make_parents(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; returns the folders created, outermost first."""
    missing = []
    p = folder
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir()
    return list(reversed(missing))


@contextlib.contextmanager
def _locked(folders: list[Path]) -> Iterator[None]:
    """An exclusive ``flock`` on each folder (sorted, so two writers never deadlock); a no-op without fcntl."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fds = []
    try:
        for folder in sorted(set(folders)):
            fd = os.open(folder, os.O_RDONLY)
            fds.append(fd)
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        for fd in reversed(fds):
            os.close(fd)  # closing releases the lock


def _backup(path: Path) -> Path | None:
    """A hard link (or, where links are not supported, a copy) of an existing ``path``, for the rollback."""
    if not path.exists() or path.is_dir():
        return None
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.bak")
    try:
        os.link(path, tmp)
    except OSError:
        shutil.copy2(path, tmp)
    return tmp


def write_atomic(files: dict[Path, bytes | memoryview]) -> None:
    """Write every file through a temp file in its folder, then rename all; on failure all stay as they were."""
    files = {Path(p): d for p, d in files.items()}
    created: list[Path] = []
    temps: dict[Path, Path] = {}
    backups: dict[Path, Path | None] = {}
    renamed: list[Path] = []
    current = next(iter(files), Path("."))
    mode_new = 0o666 & ~umask()
    try:
        for path, data in files.items():
            current = path
            if path.is_dir():
                raise IsADirectoryError(21, "a folder of that name is in the way", str(path))
            created += _make_parents(path.parent)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            temps[path] = Path(tmp)
            with os.fdopen(fd, "wb") as f:
                try:
                    os.fchmod(f.fileno(), stat.S_IMODE(path.stat().st_mode) if path.exists() else mode_new)
                except OSError:  # a filesystem without modes (FAT): keep what it gives
                    pass
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        with _deferred_sigint(), _locked([p.parent for p in files]):
            try:
                for path in files:
                    current = path
                    backups[path] = _backup(path)
                for path, tmp in temps.items():
                    current = path
                    renamed.append(path)  # first: a Ctrl-C right after the rename must still undo it
                    os.replace(tmp, path)
            except BaseException:
                for path in reversed(renamed):  # undo: the previous file back, or the new one away (only ours)
                    if temps[path].exists():  # this rename did not happen: path is untouched
                        continue
                    backup = backups.get(path)
                    if backup is not None:
                        os.replace(backup, path)
                    else:
                        path.unlink(missing_ok=True)
                raise
            for b in backups.values():
                if b is not None:
                    b.unlink(missing_ok=True)
    except BaseException as exc:
        for tmp in (*temps.values(), *(b for b in backups.values() if b is not None)):
            tmp.unlink(missing_ok=True)
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(exc, OSError):
            raise OutputError(current, _reason(exc)) from None
        raise


@contextlib.contextmanager
def _deferred_sigint():
    """Hold a Ctrl-C until the renames, their undo and the backups' removal are done, then deliver it: a
    KeyboardInterrupt between two of those steps would leave a backup behind. Python runs signal handlers in the
    main thread only, so elsewhere there is nothing to hold."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield  # None: a handler installed outside Python, which cannot be put back
        return
    caught: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            signal.raise_signal(signal.SIGINT)


def json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, default=str) + "\n").encode()  # Paths and the like as strings


def atomic_write_bytes(path: str | Path, data: bytes | memoryview) -> Path:
    path = Path(path)
    write_atomic({path: data})
    return path


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    return atomic_write_bytes(path, json_bytes(obj))


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())
