"""Checks that run before any work: what a command will write, what it reads, and whether the run fits.

Every command calls these first, so a bad path or an impossible size ends in one line within a second, not
after minutes of export or benchmarking (and the results of a long run are never lost to a late write error).
Nothing here creates anything: a refused command leaves the filesystem as it was.

- :func:`check_output_file` / :func:`check_output_dir`: the parent exists or can be made, no folder/file in the
  way, the folder is writable (probed with a temp file, so it is right for root and read-only mounts too);
- :func:`check_input_file`: exists, is a file (not a folder), is not empty;
- :func:`check_size` and :func:`check_memory`: sane bounds, and an estimate of the memory a run needs against
  what the machine has (``MemAvailable``; the GPU's free memory for CUDA runs), naming the largest size that fits;
- :func:`check_variant`: an artefact (ONNX, engine, checkpoint) of another variant than ``-m`` is refused.
"""

from __future__ import annotations

import functools
import math
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from semshare.errors import SemshareError

STDOUT = "-"


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def _check_folder_writable(folder: Path, option: str) -> None:
    """``folder`` (existing or to be created) can receive files; raises SemshareError naming the obstacle."""
    base = _nearest_existing(folder)
    if not base.is_dir():
        raise SemshareError(f"{option}: cannot create folder {folder}: {base} is a file; pass a path in a writable folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".semshare-probe.", dir=base)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        what = f"folder {base}" if base == folder else f"folder {base} (to create {folder} in)"
        raise SemshareError(f"{option}: cannot write to {what} ({exc.strerror}); pass a path in a writable folder") from None


def check_output_file(path: str | Path, option: str = "--output", suffixes: Iterable[str] = (),
                      companions: Iterable[str | Path] = ()) -> Path:
    """``path`` can be written as a file (with its ``companions``, e.g. a manifest); ``-`` (stdout) passes.

    ``suffixes``: the allowed extensions (lower case, with the dot); empty: any.
    """
    path = Path(path)
    if str(path) == STDOUT:
        return path
    allowed = tuple(suffixes)
    for p in (path, *map(Path, companions)):
        if p.is_dir():
            hint = f"; pass a file path such as {option} {p / ('model' + allowed[0])}" if p == path and allowed else \
                   "; remove it or choose another output name"
            raise SemshareError(f"{option}: {p} is a folder, but a file of that name is to be written{hint}")
    if allowed and path.suffix.lower() not in allowed:
        raise SemshareError(f"{option} {path} must end in {' or '.join(allowed)}; pass e.g. {option} "
                            f"{path.with_suffix(allowed[0])}")
    _check_folder_writable(path.parent, option)
    return path


def check_output_dir(path: str | Path, option: str = "--output") -> Path:
    """``path`` is (or can be made) a writable folder."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SemshareError(f"{option} {path} is a file, but a folder is to be written there; pass a folder path")
    _check_folder_writable(path, option)
    return path


def check_input_file(path: str | Path, what: str, hint: str = "",
                     error: type[SemshareError] = SemshareError) -> Path:
    """``path`` exists, is a file (not a folder), is readable and not empty; ``what`` names it in the message."""
    path = Path(path)
    hint = f"; {hint}" if hint else ""
    if path.is_dir():
        raise error(f"{what} {path} is a folder, not a file{hint}")
    if not path.exists():
        raise error(f"{what} {path} does not exist{hint}")
    try:
        with open(path, "rb") as f:
            empty = not f.read(1)
    except OSError as exc:
        raise error(f"cannot read {what} {path} ({exc.strerror}){hint}") from None
    if empty:
        raise error(f"{what} {path} is empty (0 bytes){hint}")
    return path


def check_source(path: str | Path, option: str) -> Path:
    """An image or folder of pairs to read exists (the pairs themselves are checked as they are read)."""
    path = Path(path)
    if not path.exists():
        raise SemshareError(f"{option} {path} does not exist; pass a fov120_NNNNN image, a folder of pairs or a tree")
    return path


def check_positive(option: str, value: int | float | None, minimum: int = 1) -> None:
    if value is not None and value < minimum:
        raise SemshareError(f"{option} must be >= {minimum}, got {value}")


# --- sizes and memory -------------------------------------------------------------------------------------

#: The largest side accepted at all (8K frames); memory decides below that.
MAX_SIDE = 8192
#: Input sizes are multiples of this (the backbone's output stride); the largest fitting size is rounded to it.
SIZE_STEP = 32

#: Peak resident memory of a run, bytes = BASE + PER_PIXEL * H * W * batch, per task. Measured on the CPU with
#: torch 2.13 / ONNX Runtime, one thread, worst variant (benchmarks/memory_estimate.py prints the table; recorded in
#: benchmarks/README.md): infer 1.10 GiB at 1216x1920 and 0.61 GiB at 784x800 (0.91 GiB at batch 2); export
#: (trace + ONNX Runtime verification) 2.77 GiB and 1.20 GiB. The constants lie 15-80 % above every measurement,
#: so a run that is refused would not have fit. bench exports an ONNX for the run and holds one backend at a time:
#: export's figure.
_BASE = {"infer": 450 * 2**20, "export": 700 * 2**20, "bench": 700 * 2**20}
_PER_PIXEL = {"infer": 550.0, "export": 1200.0, "bench": 1200.0}
#: CUDA runs: the activations only (weights are a few MB), taken as the CPU infer slope (fp32; not measured on a GPU).
_PER_PIXEL_GPU = 550.0


def check_size(height: int, width: int, option: str = "--height/--width") -> None:
    from semshare.models.lraspp import MIN_INPUT_HEIGHT, MIN_INPUT_WIDTH

    if height < MIN_INPUT_HEIGHT or width < MIN_INPUT_WIDTH:
        raise SemshareError(
            f"input size {height}x{width} is too small: the LR-ASPP head pools 49x49 at stride 16, so {option} "
            f"must be >= {MIN_INPUT_HEIGHT}x{MIN_INPUT_WIDTH}; use the default 1216x1920")
    if height > MAX_SIDE or width > MAX_SIDE:
        raise SemshareError(f"input size {height}x{width} is beyond the {MAX_SIDE} px per side semshare accepts; the "
                            "networks were trained at 1216x1920: pass a size up to that order")


def estimate_bytes(task: str, height: int, width: int, batch: int = 1, device: str = "cpu") -> int:
    """Estimated peak memory (bytes) of ``task`` (infer, export, bench) at ``height`` x ``width`` x ``batch``."""
    per_pixel = _PER_PIXEL_GPU if device.startswith("cuda") else _PER_PIXEL[task]
    base = 0 if device.startswith("cuda") else _BASE[task]
    return int(base + per_pixel * height * width * batch)


def available_bytes(device: str = "cpu") -> int | None:
    """What the machine can give: ``MemAvailable`` (Linux), or the GPU's free memory; None when unknown."""
    if device.startswith("cuda"):
        try:
            import torch

            if torch.cuda.is_available():
                return int(torch.cuda.mem_get_info(torch.device(device))[0])
        except Exception:  # no driver, no such device: the run itself reports it
            return None
        return None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def largest_fitting(task: str, height: int, width: int, batch: int, budget: int, device: str = "cpu") -> tuple[int, int]:
    """The largest (H, W) of the same aspect ratio (multiples of SIZE_STEP) whose estimate fits ``budget``."""
    need = estimate_bytes(task, height, width, batch, device)
    fixed = estimate_bytes(task, 0, 0, batch, device)
    scale = math.sqrt(max(budget - fixed, 0) / max(need - fixed, 1))
    return (int(height * scale) // SIZE_STEP * SIZE_STEP, int(width * scale) // SIZE_STEP * SIZE_STEP)


def check_memory(task: str, height: int, width: int, batch: int = 1, device: str = "cpu",
                 available: int | None = None) -> int:
    """Refuse a run whose estimated memory exceeds what the machine has; returns the estimate (bytes)."""
    check_size(height, width)
    need = estimate_bytes(task, height, width, batch, device)
    have = available if available is not None else available_bytes(device)
    if have is not None and need > have:
        where = "GPU memory free" if device.startswith("cuda") else "memory available (MemAvailable)"
        h, w = largest_fitting(task, height, width, batch, have, device)
        from semshare.models.lraspp import MIN_INPUT_HEIGHT, MIN_INPUT_WIDTH

        fits = (f"the largest size of this aspect ratio that fits is --height {h} --width {w}"
                if h >= MIN_INPUT_HEIGHT and w >= MIN_INPUT_WIDTH else "not even the smallest input (784x784) fits")
        raise SemshareError(f"{task} at {height}x{width}, batch {batch} needs about {need / 2**30:.1f} GiB but this "
                            f"machine has {have / 2**30:.1f} GiB {where}; {fits}"
                            + (f" (or a smaller --batch than {batch})" if batch > 1 else ""))
    return need


# --- artefacts of the right variant -------------------------------------------------------------------------


def check_variant(variant: str | None, found: str | None, artefact: str | Path, kind: str) -> None:
    """``-m variant`` and the variant an artefact (its manifest or its weights) was made from agree."""
    if variant and found and variant != found:
        raise SemshareError(f"{kind} {artefact} is a {found} model but -m {variant} was given; pass -m {found} or "
                            f"a {kind} of {variant}")


@functools.cache
def _variant_keys() -> dict[str, frozenset[str]]:
    from semshare.models import create_model, list_models

    return {name: frozenset(create_model(name).state_dict()) for name in list_models()}


def checkpoint_variant(path: str | Path) -> str | None:
    """The variant whose state-dict keys a checkpoint holds exactly (None: none of them; a mismatch then shows
    when it is loaded). Reads the file (raising CheckpointError on a damaged one)."""
    from semshare.models.checkpoint import read_checkpoint

    keys = frozenset(read_checkpoint(path))
    return next((name for name, own in _variant_keys().items() if own == keys), None)


@dataclass
class Artefacts:
    """What the given artefacts say, after :func:`check_artefacts` found them consistent."""

    variant: str | None = None
    size: tuple[int, int] | None = None  # the fixed (H, W) of the ONNX / engine
    onnx_manifest: dict | None = None
    engine_manifest: object | None = None  # semshare.engine.manifest.EngineManifest


def check_artefacts(variant: str | None = None, onnx: Path | None = None, engine: Path | None = None,
                    checkpoint: Path | None = None, height: int | None = None, width: int | None = None) -> Artefacts:
    """Read the manifests of an ONNX / engine (hash-checked) and the checkpoint's keys, and refuse any that disagree
    with ``-m variant``, with each other, or with an explicit ``--height/--width`` (an artefact's size is fixed)."""
    from semshare.engine.manifest import read_engine_manifest, read_export_manifest
    from semshare.runtime.backends import manifest_size

    art = Artefacts(variant=variant)
    found: list[tuple[str, Path, str]] = []  # (variant, artefact, kind)
    if onnx is not None:
        art.onnx_manifest = read_export_manifest(onnx)
        found.append((str(art.onnx_manifest.get("variant") or ""), Path(onnx), "ONNX"))
        art.size = manifest_size(art.onnx_manifest)
    if engine is not None:
        art.engine_manifest = manifest = read_engine_manifest(engine)
        found.append((manifest.variant, Path(engine), "engine"))  # type: ignore[attr-defined]
        art.size = art.size or manifest_size(manifest.export_manifest or {})  # type: ignore[attr-defined]
    if checkpoint is not None:
        check_input_file(checkpoint, "checkpoint", "pass the path of a .pth file")
        if variant or found:
            found.append((checkpoint_variant(checkpoint) or "", Path(checkpoint), "checkpoint"))
    for name, path, kind in found:
        if name:
            check_variant(art.variant, name, path, kind)
            art.variant = art.variant or name
    if art.size is not None and (height, width) != (None, None) and (height or art.size[0], width or art.size[1]) != art.size:
        raise SemshareError(f"--height/--width {height or art.size[0]}x{width or art.size[1]} differ from the "
                            f"{art.size[0]}x{art.size[1]} the {'ONNX' if onnx else 'engine'} was exported for (its "
                            "size is fixed); drop --height/--width, or re-export at that size")
    return art


# --- one check per command, called first by semshare.cli --------------------------------------------------


def check_export(variant: str, output: Path, height: int, width: int, batch: int = 1, dynamic_batch: bool = False,
                 checkpoint: Path | None = None, verify_pair: Path | None = None) -> None:
    from semshare.engine.manifest import manifest_path

    check_output_file(output, "--output", (".onnx",), [manifest_path(output)])
    check_memory("export", height, width, 2 if dynamic_batch else batch)
    if verify_pair is not None:
        check_input_file(verify_pair, "--verify-pair image", "pass a fov120_N image with its fov60_N partner beside it")
    if checkpoint is not None:
        check_artefacts(variant, checkpoint=checkpoint)


def check_infer(source: Path | None, output: Path, variant: str | None, torch_backend: bool, onnx: Path | None,
                engine: Path | None, checkpoint: Path | None, height: int | None, width: int | None,
                device: str = "cpu", rig: Path | None = None,
                videos: tuple[Path | None, Path | None] = (None, None)) -> tuple[str, tuple[int, int]]:
    """Returns the variant and the input size to run at."""
    if not torch_backend:
        for value, option in ((checkpoint, "--checkpoint"), (rig, "--rig")):
            if value is not None:
                raise SemshareError(f"{option} is for the torch backend; an ONNX / engine has its weights and rig "
                                    f"built in: drop {option}, or export with it")
    if source is not None:
        check_source(source, "source")
    for video, option in zip(videos, ("--video120", "--video60"), strict=True):
        if video is not None:
            check_input_file(video, option)
    check_output_dir(output, "--output")
    art = check_artefacts(variant, None if torch_backend else onnx, None if torch_backend else engine,
                          checkpoint if torch_backend else None, height, width)
    size = run_size(height, width, art)
    check_memory("infer", *size, 1, device)
    return art.variant or "mobilenetv3_tightly", size


def check_bench(json_out: Path | None, csv_out: Path | None, pairs: Path | None, variant: str | None,
                onnx: Path | None, engine: Path | None, checkpoint: Path | None, height: int | None,
                width: int | None, batch: int = 1, device: str = "cpu") -> tuple[int, int]:
    """Returns the input size to run at."""
    for path, option in ((json_out, "--json"), (csv_out, "--csv")):
        if path is not None:
            check_output_file(path, option)
    if pairs is not None:
        check_source(pairs, "--pairs")
    size = run_size(height, width, check_artefacts(variant, onnx, engine, checkpoint, height, width))
    check_memory("bench", *size, max(batch, 1), device)
    return size


def check_build_engine(onnx: Path, output: Path, precision: str, report: Path | None,
                       timing_cache: Path | None) -> None:
    from semshare.engine.manifest import engine_manifest_path

    check_output_file(output, "--output", companions=[engine_manifest_path(output)])
    for path, option in ((report, "--report"), (timing_cache, "--timing-cache")):
        if path is not None:
            check_output_file(path, option)
    if report is not None and precision != "int8":
        raise SemshareError(f"--report measures accuracy on the int8 calibration pairs; for --precision {precision} "
                            f"run `semshare quantize {onnx} -p {precision} --report {report}` (CPU, no engine)")
    check_artefacts(onnx=onnx)


def check_quantize(onnx: Path, output: Path, report: Path | None, checkpoint: Path | None, calib_count: int) -> None:
    from semshare.engine.manifest import manifest_path

    check_positive("--calib-count", calib_count)
    check_output_file(output, "--output", (".onnx",), [manifest_path(output)])
    if report is not None:
        check_output_file(report, "--report")
    check_artefacts(onnx=onnx, checkpoint=checkpoint)


def check_demo(output: Path, pairs: Path | None, checkpoint: Path | None, height: int, width: int, warmup: int,
               iterations: int) -> None:
    from semshare.bench.timing import check_counts
    from semshare.data import find_pairs
    from semshare.demo import VARIANT, checkpoint_from_env

    check_counts(warmup, iterations, None)
    check_output_dir(output, "--output")
    check_memory("export", height, width)
    check_artefacts(VARIANT, checkpoint=checkpoint_from_env(checkpoint))
    if pairs is not None and not find_pairs(pairs)[0]:
        raise SemshareError(f"no fov120_N / fov60_N image pairs found under {pairs}; pass a folder of pairs")


def run_size(height: int | None, width: int | None, artefacts: Artefacts | None = None) -> tuple[int, int]:
    """The input size of a run: the artefact's (ONNX / engine), else --height/--width, else 1216x1920."""
    from semshare.data import DEFAULT_SIZE

    if artefacts is not None and artefacts.size is not None:
        return artefacts.size
    return (height or DEFAULT_SIZE[0], width or DEFAULT_SIZE[1])
