"""``Segmenter``: load a model once (``.pth``, exported ``.onnx`` or TensorRT ``.engine``), call it on image pairs.

    from semshare.runtime import Segmenter
    seg = Segmenter.load("tightly.onnx")
    mask120, mask60 = seg(img120, img60)        # uint8 class indices at the images' own size

Preprocessing (resize to the model size, ImageNet normalisation), the rig's homography inputs (from the export
manifest, or the rig given to a ``.pth``), batching (in chunks the artefact accepts) and the backend choice
live here and nowhere else. :meth:`Segmenter.stream` overlaps decoding/preprocessing of the next pairs and
the post-processing of the last with the model's compute (bounded queues, worker threads).
"""

from __future__ import annotations

import queue
import statistics
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semshare.data import DEFAULT_SIZE
from semshare.errors import SemshareError
from semshare.runtime.backends import (
    RANDOM_WEIGHTS_WARNING,
    Backend,
    BackendSpec,
    Source,
    engine_max_batch,
    make_backend,
    manifest_size,
    preflight,
)
from semshare.runtime.preprocess import argmax_classes, as_images, prepare_image, resize_logits, resize_mask

#: What each artefact runs on when no backend is named.
DEFAULT_BACKENDS = {".pth": "torch", ".pt": "torch", ".onnx": "onnxruntime", ".engine": "tensorrt", ".plan": "tensorrt"}
#: What each backend runs.
ARTEFACTS = {"torch": "a .pth checkpoint (--checkpoint)", "onnxruntime": "an .onnx from `semshare export` (--onnx)",
             "tensorrt": "an .engine from `semshare build-engine` (--engine)"}


@dataclass
class Segmentation:
    """Class masks per camera (``uint8`` indices) at the images' size: ``(H, W)`` for one pair, ``(N, H, W)``
    for a batch of equally sized pairs (a list of ``(H, W)`` when the sizes differ). ``logits120``/``logits60``
    (float32, ``(classes, H, W)`` per pair, laid out the same way) when asked for. Unpacks as ``mask120, mask60``.

    The masks are the argmax at the model's size, nearest-resized; the logits are bilinearly resized, so where
    the sizes differ a mask can differ from the argmax of its logits along class boundaries."""

    fov120: Any
    fov60: Any
    logits120: Any = None
    logits60: Any = None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.fov120, self.fov60))


@dataclass
class Prepared:
    """Model inputs of a batch of pairs, and each pair's image sizes (to resize the outputs back to)."""

    img120: np.ndarray  # (N, 3, h, w) float32
    img60: np.ndarray
    sizes: list[tuple[tuple[int, int], tuple[int, int]]]  # per pair: ((H, W) of fov120, (H, W) of fov60)
    batch: bool


class Segmenter:
    """A loaded model: ``segmenter(img120, img60)`` -> :class:`Segmentation`. Build it with :meth:`load`."""

    def __init__(self, backend: Backend, size: tuple[int, int], variant: str | None, max_batch: int | None,
                 exact_batch: bool = False) -> None:
        self.backend = backend
        self.size = size
        self.variant = variant
        self.max_batch = max_batch  # pairs per model call at most (None: any)
        self.exact_batch = exact_batch  # every call must hold exactly max_batch pairs (a fixed-batch ONNX)
        #: seconds of each model call (inputs in, outputs out, per chunk) and the pairs in it, since load
        self.model_calls: list[tuple[float, int]] = []

    # ------------------------------------------------------------------------------------------ loading

    @classmethod
    def load(cls, path: str | Path | None, variant: str | None = None, backend: str | None = None,
             device: str | None = None, *, size: tuple[int, int] | None = None, rig=None, threads: int | None = None,
             plugin_library: str | Path | None = None, spinning: bool = False) -> Segmenter:
        """Load ``path``: a ``.pth`` checkpoint (``variant`` needed; None = random weights, with a warning), an
        exported ``.onnx`` (its manifest gives variant and size) or a TensorRT ``.engine``.

        ``backend`` is a spec string (``torch[:cpu|cuda][:fp16]``, ``onnxruntime[:cpu|cuda|tensorrt]``,
        ``tensorrt[:graphs]``), by default the one the file's type runs on; ``device`` the default device
        (``cpu``/``cuda``). ``size`` (H, W) is the model input size of a ``.pth`` (default 1216x1920); an
        export's own size is used, and a different ``size`` is an error. A ``--target tensorrt`` ONNX runs
        in ONNX Runtime CPU/CUDA with its plugin nodes replaced by their reference decompositions.
        ``spinning``: ONNX Runtime CPU's idle intra-op threads spin (``semshare bench``'s setting: the lowest
        latency when nothing else runs) or, by default here, sleep, so that other work in the process (the
        reading and writing of :meth:`stream`) gets the cores instead of stalling the model's threads.
        """
        from semshare.engine.manifest import read_engine_manifest, read_export_manifest

        path = Path(path) if path is not None else None
        suffix = path.suffix.lower() if path is not None else ".pth"
        if suffix not in DEFAULT_BACKENDS:
            raise SemshareError(f"{path}: unknown model file type {path.suffix!r}; pass a .pth checkpoint, an .onnx "
                                "from `semshare export` or an .engine from `semshare build-engine`")
        spec = BackendSpec.parse(backend or DEFAULT_BACKENDS[suffix], device)
        wanted = DEFAULT_BACKENDS[suffix]
        if spec.kind != wanted:
            raise SemshareError(f"backend {spec.label} runs {ARTEFACTS.get(spec.kind, 'another artefact')}, not "
                                f"{path or 'random torch weights'} (a {suffix} runs on the {wanted} backend)")
        preflight([spec])
        src = Source(variant=variant, rig=rig, threads=threads, reference_ops=True, spinning=spinning,
                     plugin_library=Path(plugin_library) if plugin_library else None)
        max_batch: int | None = None
        exact = False
        fixed = None
        if wanted == "torch":
            if not variant:
                raise SemshareError("a .pth checkpoint needs its variant: pass variant= (mobilenetv3, "
                                    "mobilenetv3_loosely or mobilenetv3_tightly)")
            if path is None:
                warnings.warn(RANDOM_WEIGHTS_WARNING, stacklevel=2)
            elif not path.is_file():
                raise SemshareError(f"checkpoint {path} does not exist; pass the path of a .pth file")
            src.checkpoint = path
        elif wanted == "onnxruntime":
            src.onnx, src.onnx_manifest = path, read_export_manifest(path)
            fixed = manifest_size(src.onnx_manifest)
            b = src.onnx_manifest.get("batch")
            max_batch = b if isinstance(b, int) else None
            exact = max_batch is not None
            src.batch = max_batch or 1
        else:
            src.engine, src.engine_manifest = path, read_engine_manifest(path)
            fixed = manifest_size(src.engine_manifest.export_manifest or {})
            max_batch = engine_max_batch(src.engine_manifest)
        manifest_variant = (src.onnx_manifest or {}).get("variant") or getattr(src.engine_manifest, "variant", None)
        if variant and manifest_variant and variant != manifest_variant:
            raise SemshareError(f"{path} holds {manifest_variant}, not {variant}; drop the variant or pass the "
                                "matching artefact")
        if fixed and size and tuple(size) != fixed:
            raise SemshareError(f"{path} was exported for {fixed[0]}x{fixed[1]}, not {size[0]}x{size[1]}; inputs of "
                                "any size are resized to the export's size, so leave the size out")
        src.size = fixed or tuple(size or DEFAULT_SIZE)
        src.variant = variant or manifest_variant
        b = make_backend(spec, src)
        b.load()
        return cls(b, src.size, src.variant, max_batch, exact)

    def close(self) -> None:
        """Free the model (also on leaving a ``with`` block)."""
        self.backend.close()

    def __enter__(self) -> Segmenter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def label(self) -> str:
        """The backend, e.g. ``onnxruntime:cpu:fp32``."""
        return self.backend.label

    @property
    def info(self) -> dict[str, Any]:
        """What the backend reports about itself (providers, threads, precision, ...)."""
        return self.backend.info

    # ----------------------------------------------------------------------------------------- inference

    def __call__(self, img120: Any, img60: Any, logits: bool = False) -> Segmentation:
        """Masks for one pair (two images) or a batch (two ``(N, H, W, 3)`` arrays or lists of images)."""
        prepared = self.prepare(img120, img60)
        return self.finish(prepared, self.compute(prepared), logits)

    def prepare(self, img120: Any, img60: Any) -> Prepared:
        """Check and preprocess a pair or a batch (CPU work only: safe in a worker thread)."""
        a, batch_a = as_images(img120, "img120")
        b, batch_b = as_images(img60, "img60")
        if len(a) != len(b) or batch_a != batch_b:
            raise SemshareError(f"img120 has {len(a)} image(s) and img60 {len(b)}: pass one image per camera, or two "
                                "batches of the same length")
        x120 = np.stack([prepare_image(im, self.size) for im in a])
        x60 = np.stack([prepare_image(im, self.size) for im in b])
        return Prepared(x120, x60, [(p.shape[:2], q.shape[:2]) for p, q in zip(a, b, strict=True)], batch_a)

    def compute(self, prepared: Prepared) -> tuple[np.ndarray, np.ndarray]:
        """Model logits ``(N, classes, h, w)`` per camera at the model size, in chunks the artefact accepts."""
        n = len(prepared.img120)
        step = self.max_batch or n
        out120, out60 = [], []
        for i in range(0, n, step):
            a, b = prepared.img120[i:i + step], prepared.img60[i:i + step]
            real = len(a)
            if self.exact_batch and real < step:  # fill the last chunk, drop the extra outputs
                a, b = (np.concatenate([x, np.repeat(x[-1:], step - real, 0)]) for x in (a, b))
            t0 = time.perf_counter()
            self.backend.set_inputs(a, b)
            self.backend.step()
            s120, s60 = self.backend.outputs()
            keep = np.array if self.backend.reuses_outputs else np.asarray
            out120.append(keep(s120[:real], np.float32))
            out60.append(keep(s60[:real], np.float32))
            self.model_calls.append((time.perf_counter() - t0, real))
        if len(out120) == 1:
            return out120[0], out60[0]
        return np.concatenate(out120), np.concatenate(out60)

    def finish(self, prepared: Prepared, outputs: tuple[np.ndarray, np.ndarray], logits: bool = False) -> Segmentation:
        """Model-size logits -> masks (argmax at the model size, nearest-resized) and, when asked for, logits
        (bilinearly resized) at each image's own size."""
        per_cam: list[list[np.ndarray]] = [[], [], [], []]
        for j, (size120, size60) in enumerate(prepared.sizes):
            for cam, (out, size) in enumerate(((outputs[0][j], size120), (outputs[1][j], size60))):
                per_cam[cam].append(resize_mask(argmax_classes(out), size))
                if logits:
                    per_cam[2 + cam].append(resize_logits(out, size))
        packed = [_pack(x, prepared.batch) if x else None for x in per_cam]
        return Segmentation(*packed)

    # ------------------------------------------------------------------------------------------ pipeline

    def stream(self, items: Iterable[Any], load: Callable[[Any], tuple[Any, Any]],
               handle: Callable[[Any, Any, Segmentation], Any] | None = None, depth: int = 2,
               logits: bool = False) -> Iterator[tuple[Any, Any, Any]]:
        """``(item, images, result)`` for every item, in order, with the work overlapped.

        Three threads and bounded queues (``depth`` each): a loader runs ``load(item) -> (img120, img60)``
        and the preprocessing, the model thread runs the model, and a post-processing thread makes the masks
        and, when given, calls ``handle(item, images, segmentation)`` (e.g. writes files); ``result`` is what
        ``handle`` returned, else the :class:`Segmentation`. So the next pair is read and the last one written
        while the model computes (on ONNX Runtime CPU, the :meth:`load` default ``spinning=False`` lets these
        threads use the cores the model's idle threads would otherwise spin on).
        A ``SemshareError`` from ``load``, the preprocessing or ``handle`` is yielded in place of the result
        (the other items go on); any other exception stops the stream and is raised here.
        """
        stop = threading.Event()
        queues = [queue.Queue(depth) for _ in range(3)]

        def loaded() -> Iterator[Any]:
            for item in items:
                try:
                    images = load(item)
                    yield item, images, self.prepare(*images)
                except SemshareError as exc:
                    yield item, None, exc

        def computed(value: tuple) -> tuple:
            item, images, prepared = value
            return item, images, (prepared, self.compute(prepared))

        def finished(value: tuple) -> tuple:
            item, images, (prepared, outputs) = value
            seg = self.finish(prepared, outputs, logits)
            try:
                return item, images, handle(item, images, seg) if handle else seg
            except SemshareError as exc:
                return item, images, exc

        stages = [threading.Thread(target=_stage, args=(loaded(), None, queues[0], stop), daemon=True),
                  threading.Thread(target=_stage, args=(queues[0], computed, queues[1], stop), daemon=True),
                  threading.Thread(target=_stage, args=(queues[1], finished, queues[2], stop), daemon=True)]
        for t in stages:
            t.start()
        try:
            while (value := _get(queues[2], stop)) is not _DONE:
                if isinstance(value, _Failure):
                    raise value.exc
                yield value
        finally:
            stop.set()
            for t in stages:
                t.join()

    def model_seconds_per_pair(self, since: int = 0) -> float | None:
        """The median model time per pair (inputs in, outputs out) over the calls from ``model_calls[since]``
        on, or None when there were none."""
        calls = self.model_calls[since:]
        return statistics.median(s / n for s, n in calls) if calls else None


@dataclass
class _Failure:
    exc: BaseException


_DONE = object()


def _get(q: queue.Queue, stop: threading.Event) -> Any:
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return _DONE


def _put(q: queue.Queue, value: Any, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(value, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _stage(source: Iterable[Any] | queue.Queue, work: Callable[[tuple], tuple] | None, out: queue.Queue,
           stop: threading.Event) -> None:
    """One pipeline thread: values from an iterable or the previous queue, through ``work``, into ``out``.
    Values whose third element is a SemshareError, and failures, pass through untouched; the end is _DONE."""
    try:
        values = source if not isinstance(source, queue.Queue) else iter(lambda: _get(source, stop), _DONE)
        for value in values:
            if work is not None and not isinstance(value, _Failure) and not isinstance(value[2], SemshareError):
                value = work(value)
            if not _put(out, value, stop):
                return
        _put(out, _DONE, stop)
    except BaseException as exc:  # handed to the caller's thread and raised there
        _put(out, _Failure(exc), stop)


def _pack(arrays: list[np.ndarray], batch: bool) -> Any:
    if not batch:
        return arrays[0]
    if all(a.shape == arrays[0].shape for a in arrays):
        return np.stack(arrays)
    return arrays
