"""Artefact manifests: hashes, atomic writes, the semshare-export check and the engine compatibility check.

Everything here is plain Python (no TensorRT), so the checks that guard an engine build or an engine load are
tested on any machine:

- :func:`read_export_manifest` accepts an ONNX file only when the ``OUT.json`` that ``semshare export`` writes
  beside it says it is a semshare export;
- :func:`check_engine_compatible` refuses an engine built by another TensorRT version or for another GPU.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from semshare.errors import SemshareError

ENGINE_MANIFEST_FORMAT = "semshare-engine/1"
EXPORT_MANIFEST_PREFIX = "semshare-export/"
PRODUCER = "semshare"


class IncompatibleEngineError(SemshareError):
    """An engine built by another TensorRT version or for another GPU."""


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha256_files(paths: Iterable[str | Path]) -> str:
    """One hash over several files (names and contents, in the given order): a calibration-set identity."""
    h = hashlib.sha256()
    for p in paths:
        p = Path(p)
        h.update(p.name.encode() + b"\0")
        h.update(bytes.fromhex(sha256_file(p)))
    return h.hexdigest()


def manifest_path(onnx_path: str | Path) -> Path:
    """``model.onnx`` -> ``model.json``: the manifest ``semshare export`` writes beside an ONNX file."""
    return Path(onnx_path).with_suffix(".json")


def engine_manifest_path(engine_path: str | Path) -> Path:
    """``model.engine`` -> ``model.engine.json`` (never the export's ``model.json`` beside ``model.onnx``)."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def read_export_manifest(onnx_path: str | Path) -> dict[str, Any]:
    """The manifest ``semshare export`` wrote beside ``onnx_path``.

    Raises:
        SemshareError: the ONNX file or its manifest is missing, unreadable, or not from semshare.
    """
    from semshare.validate import check_input_file

    onnx_path = Path(onnx_path)
    check_input_file(onnx_path, "ONNX file", f"export one with `semshare export VARIANT -o {onnx_path}`")
    mpath = manifest_path(onnx_path)
    hint = f"re-export it with `semshare export VARIANT -o {onnx_path}` (which writes {mpath.name} beside it)"
    if not mpath.is_file():
        raise SemshareError(f"{onnx_path} is not a semshare export: no manifest {mpath.name} beside it; {hint}")
    try:
        data = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise SemshareError(f"cannot read the manifest {mpath}: {exc}; {hint}") from None
    fmt = data.get("format") if isinstance(data, dict) else None
    if not isinstance(fmt, str) or not fmt.startswith(EXPORT_MANIFEST_PREFIX):
        raise SemshareError(f"{onnx_path} is not a semshare export (its manifest's format is {fmt!r}, expected "
                            f"'{EXPORT_MANIFEST_PREFIX}N'); {hint}")
    for key in ("variant", "inputs", "outputs"):
        if key not in data:
            raise SemshareError(f"manifest {mpath} has no {key!r}: written by an older semshare? {hint}")
    recorded = data.get("model_sha256")
    if recorded is not None and recorded != sha256_file(onnx_path):
        raise SemshareError(f"{onnx_path} does not match its manifest {mpath.name} (sha256 differs: the ONNX is "
                            f"truncated, replaced or the manifest belongs to another file); {hint}")
    return data


@dataclass
class EngineManifest:
    """What an engine was built from and for; written as ``<engine>.json``."""

    precision: str
    preset: str
    tensorrt_version: str
    cuda_version: str
    gpu_name: str
    compute_capability: str
    source_onnx: str
    source_onnx_sha256: str
    prepared_onnx_sha256: str
    plugin_library: str | None
    plugin_library_sha256: str | None
    calibration_sha256: str | None
    calibration_pairs: int
    hardware_compatibility: str
    dla_core: int | None
    high_precision: str | None = None  # int8: what the non-quantized layers compute in
    bindings: list[dict[str, Any]] = field(default_factory=list)
    profiles: list[Any] = field(default_factory=list)
    variant: str = ""
    engine_sha256: str | None = None  # of the engine file itself: a truncated or swapped engine is refused
    export_manifest: dict[str, Any] = field(default_factory=dict)
    build_seconds: float = 0.0
    semshare_version: str = ""
    typing: str = "strong"  # "weak": a DLA build on TensorRT 10.x (docs/tensorrt.md, "DLA")
    layer_devices: dict[str, list[str]] = field(default_factory=dict)  # {"DLA": [...], "GPU": [...]} network layers
    engine_layers: list[dict[str, str]] = field(default_factory=list)  # the engine inspector's layers (name, type)
    timing_cache: str | None = None  # the timing-cache file the build used
    format: str = ENGINE_MANIFEST_FORMAT
    producer: str = PRODUCER

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EngineManifest:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def read_engine_manifest(engine_path: str | Path) -> EngineManifest:
    """The manifest beside an engine; SemshareError when it is missing or not a semshare engine manifest."""
    from semshare.validate import check_input_file

    engine_path = Path(engine_path)
    check_input_file(engine_path, "engine", "build one with `semshare build-engine MODEL.onnx`")
    mpath = engine_manifest_path(engine_path)
    hint = "rebuild the engine with `semshare build-engine` on this machine"
    if not mpath.is_file():
        raise SemshareError(f"engine {engine_path} has no manifest {mpath.name} beside it, so its TensorRT version and GPU are unknown; {hint}")
    try:
        data = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise SemshareError(f"cannot read the engine manifest {mpath}: {exc}; {hint}") from None
    if not isinstance(data, dict) or data.get("format") != ENGINE_MANIFEST_FORMAT:
        raise SemshareError(f"{mpath} is not a semshare engine manifest (format {data.get('format') if isinstance(data, dict) else None!r}); {hint}")
    manifest = EngineManifest.from_dict(data)
    if manifest.engine_sha256 and manifest.engine_sha256 != sha256_file(engine_path):
        raise SemshareError(f"engine {engine_path} does not match its manifest {mpath.name} (sha256 differs: "
                            f"truncated or replaced); {hint}")
    return manifest


def check_engine_compatible(manifest: EngineManifest, tensorrt_version: str, gpu_name: str, compute_capability: str) -> None:
    """Refuse an engine built by another TensorRT release or for another GPU.

    TensorRT engines are tied to the exact TensorRT version that built them (a mismatch fails deep inside
    ``deserialize_cuda_engine``) and, unless built hardware-compatible, to the GPU model. A hardware-compatible
    engine (``AMPERE_PLUS`` / ``SAME_COMPUTE_CAPABILITY``) may run on another GPU of the allowed family.
    """
    fix = "rebuild it here with `semshare build-engine` (engines are not portable across TensorRT versions or GPUs)"
    if manifest.tensorrt_version != tensorrt_version:
        raise IncompatibleEngineError(
            f"engine built with TensorRT {manifest.tensorrt_version} but this machine runs TensorRT {tensorrt_version}; {fix}"
        )
    hw = manifest.hardware_compatibility
    if hw == "AMPERE_PLUS":
        major = int(compute_capability.split(".")[0]) if compute_capability else 0
        if major < 8:
            raise IncompatibleEngineError(
                f"engine built hardware-compatible for Ampere and newer, but this GPU ({gpu_name}, sm {compute_capability}) is older; {fix}"
            )
        return
    if hw == "SAME_COMPUTE_CAPABILITY":
        if manifest.compute_capability != compute_capability:
            raise IncompatibleEngineError(
                f"engine built for compute capability {manifest.compute_capability} but this GPU ({gpu_name}) is "
                f"{compute_capability}; {fix}"
            )
        return
    if manifest.gpu_name != gpu_name or manifest.compute_capability != compute_capability:
        raise IncompatibleEngineError(
            f"engine built for {manifest.gpu_name} (sm {manifest.compute_capability}) but this GPU is {gpu_name} "
            f"(sm {compute_capability}); {fix}"
        )
