"""Find ``libsemshare_plugins.so`` and load it into a TensorRT plugin registry.

The library holds the ``SpatialCorrelation`` and ``HomographyWarp`` IPluginV3 creators (version "1", namespace
"semshare"; see ``plugins/`` and ``semshare.ops.contracts``). TensorRT needs it loaded before an ONNX file with
those nodes is parsed and, in every process, before an engine that uses them is deserialised.

Search order: the ``SEMSHARE_PLUGIN_LIB`` environment variable, the repository's ``build/plugins/`` (what
``make plugins`` writes), then the installed package (``semshare/lib/``). TensorRT is imported inside the
functions that need it, so importing this module is free.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from semshare.errors import MissingDependencyError
from semshare.ops.contracts import CONTRACTS, PLUGIN_NAMESPACE, PLUGIN_VERSION

LIBRARY_NAME = "libsemshare_plugins.so"
ENV_VAR = "SEMSHARE_PLUGIN_LIB"
PLUGIN_NAMES: tuple[str, ...] = tuple(CONTRACTS)

_PACKAGE_DIR = Path(__file__).resolve().parents[1]  # .../semshare
_REPO_BUILD_DIR = _PACKAGE_DIR.parent / "build" / "plugins"
_HOW_TO_BUILD = "build it with `make plugins` (needs TensorRT >= 10.3 and CUDA) or set SEMSHARE_PLUGIN_LIB to its path"


def candidate_paths(
    environ: Mapping[str, str] | None = None,
    build_dir: Path | None = None,
    package_dir: Path | None = None,
) -> list[Path]:
    """Where the library is looked for, in order (the environment variable's path first, when set)."""
    environ = os.environ if environ is None else environ
    build_dir = _REPO_BUILD_DIR if build_dir is None else build_dir
    package_dir = _PACKAGE_DIR if package_dir is None else package_dir
    paths = []
    if environ.get(ENV_VAR):
        paths.append(Path(environ[ENV_VAR]).expanduser())
    paths += [build_dir / LIBRARY_NAME, package_dir / "lib" / LIBRARY_NAME]
    return paths


def find_plugin_library(
    environ: Mapping[str, str] | None = None,
    build_dir: Path | None = None,
    package_dir: Path | None = None,
) -> Path:
    """The plugin library's path.

    Raises:
        MissingDependencyError: ``SEMSHARE_PLUGIN_LIB`` names a missing file, or the library is nowhere.
    """
    environ = os.environ if environ is None else environ
    if environ.get(ENV_VAR):
        path = Path(environ[ENV_VAR]).expanduser()
        if not path.is_file():
            raise MissingDependencyError(f"{ENV_VAR}={path} is not a file; {_HOW_TO_BUILD}")
        return path.resolve()
    paths = candidate_paths(environ, build_dir, package_dir)
    for path in paths:
        if path.is_file():
            return path.resolve()
    looked = ", ".join(str(p) for p in paths)
    raise MissingDependencyError(f"TensorRT plugin library {LIBRARY_NAME} not found (looked in {looked}); {_HOW_TO_BUILD}")


def _import_tensorrt() -> Any:
    try:
        import tensorrt
    except ImportError as exc:
        raise MissingDependencyError(
            f"the TensorRT Python package is not installed ({exc}); install it with `pip install semshare[trt]` "
            "(on Jetson: JetPack's python3-libnvinfer)"
        ) from exc
    return tensorrt


def missing_creators(registry: Any) -> list[str]:
    """Names of semshare plugins whose creator the registry lacks."""
    return [n for n in PLUGIN_NAMES if registry.get_creator(n, PLUGIN_VERSION, PLUGIN_NAMESPACE) is None]


def load_plugins(registry: Any = None, library: Path | str | None = None) -> Path:
    """Load the plugin library into ``registry`` (default ``tensorrt.get_plugin_registry()``) and check it.

    Idempotent: when both creators are already registered, nothing is loaded again (TensorRT refuses to load
    a library whose creators are registered).

    Returns:
        The library's path.

    Raises:
        MissingDependencyError: TensorRT or the library is missing, TensorRT cannot load it, or a creator is
        still missing after loading.
    """
    path = Path(library) if library is not None else find_plugin_library()
    if registry is None:
        registry = _import_tensorrt().get_plugin_registry()
    if not missing_creators(registry):
        return path
    handle = registry.load_library(str(path))
    if handle is None:
        raise MissingDependencyError(
            f"TensorRT could not load {path} (built for another TensorRT or CUDA version?); "
            "rebuild it with `make plugins` on this machine"
        )
    missing = missing_creators(registry)
    if missing:
        raise MissingDependencyError(
            f"{path} loaded but TensorRT has no creator for {', '.join(missing)} "
            f"(version {PLUGIN_VERSION}, namespace {PLUGIN_NAMESPACE}); rebuild it with `make plugins`"
        )
    return path
