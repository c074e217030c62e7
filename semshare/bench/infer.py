"""``semshare infer --backend onnxruntime|tensorrt``: the bench backends as ``predict(img120, img60)`` callables."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from semshare.bench.backends import BackendSpec, Source, make_backend
from semshare.bench.run import _manifest_size, preflight
from semshare.errors import SemshareError


@contextmanager
def backend_predictor(backend: str, onnx: Path | None = None, engine: Path | None = None,
                      device: str | None = None, plugin_library: Path | None = None,
                      ) -> Iterator[tuple[object, tuple[int, int] | None]]:
    """``with backend_predictor("onnxruntime", onnx=p) as (predict, size): predict(img120, img60)``.

    ``size`` is the (H, W) the artefact was exported for (inputs must be resized to it), or None if unknown.
    Batch 1 artefacts only take one pair per call, which is what ``run_infer`` sends.
    """
    from semshare.engine.manifest import read_engine_manifest, read_export_manifest

    spec = BackendSpec.parse(backend, device)
    if spec.kind == "torch":
        raise SemshareError("use the torch path of semshare.infer for the torch backend")
    preflight([spec])
    src = Source(batch=1, plugin_library=plugin_library)
    size = None
    if spec.kind == "onnxruntime":
        if onnx is None:
            raise SemshareError("--backend onnxruntime needs --onnx MODEL.onnx (from `semshare export`)")
        src.onnx, src.onnx_manifest = Path(onnx), read_export_manifest(onnx)
        size = _manifest_size(src.onnx_manifest)
    else:
        if engine is None:
            raise SemshareError("--backend tensorrt needs --engine MODEL.engine (from `semshare build-engine`)")
        src.engine, src.engine_manifest = Path(engine), read_engine_manifest(engine)
        size = _manifest_size(src.engine_manifest.export_manifest or {})
    if size:
        src.size = size
    with make_backend(spec, src) as b:
        yield b.predictor(), size
