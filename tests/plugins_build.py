"""Build helpers for tests/test_plugins.py: TensorRT headers, the plugin library + harness, the host kernel math.

Nothing here needs a GPU or the TensorRT runtime. The TensorRT C++ headers (Apache-2.0) come from a registry
package that ships them (``kernel-lens==2.0.1`` holds TensorRT 10.14's), downloaded at test time into the
gitignored ``.cache/`` and never committed.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "plugins"
CACHE = ROOT / ".cache"
HEADERS_PACKAGE = "kernel-lens==2.0.1"
HEADERS_CACHE = CACHE / "trt-headers"
TEST_ARCH = "80-real"  # one architecture keeps the CI build short; `make plugins` builds them all


class Unavailable(Exception):
    """A prerequisite of the build is missing (the message says which)."""


def cuda_home() -> Path:
    for candidate in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if candidate and (Path(candidate) / "include" / "cuda_fp16.h").is_file():
            return Path(candidate)
    nvcc = shutil.which("nvcc")
    if nvcc and (Path(nvcc).resolve().parents[1] / "include" / "cuda_fp16.h").is_file():
        return Path(nvcc).resolve().parents[1]
    raise Unavailable("the CUDA toolkit (nvcc, cuda_fp16.h) is not installed (set CUDA_HOME)")


def tensorrt_headers() -> Path:
    """Directory holding NvInferRuntime.h (TensorRT 10.14), downloaded once into .cache/trt-headers."""
    include = HEADERS_CACHE / "kernel_lens" / "include" / "tensorrt"
    if (include / "NvInferRuntime.h").is_file():
        return include
    HEADERS_CACHE.mkdir(parents=True, exist_ok=True)
    wheels = sorted(HEADERS_CACHE.glob("kernel_lens-*.whl"))
    if not wheels:
        result = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", HEADERS_PACKAGE, "-d", str(HEADERS_CACHE)],
            capture_output=True, text=True, timeout=300,
        )
        wheels = sorted(HEADERS_CACHE.glob("kernel_lens-*.whl"))
        if result.returncode != 0 or not wheels:
            raise Unavailable(f"could not download {HEADERS_PACKAGE} for the TensorRT headers: {result.stderr.strip()[-300:]}")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        members = [n for n in wheel.namelist() if n.startswith("kernel_lens/include/tensorrt/")]
        wheel.extractall(HEADERS_CACHE, members)
    if not (include / "NvInferRuntime.h").is_file():
        raise Unavailable(f"{wheels[-1].name} holds no kernel_lens/include/tensorrt/NvInferRuntime.h")
    return include


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({' '.join(cmd)}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")


def build_plugins(build_dir: Path = CACHE / "build-plugins-test") -> Path:
    """Configure and build libsemshare_plugins.so and plugin_harness with CMake (incremental); returns build_dir."""
    home = cuda_home()
    headers = tensorrt_headers()
    cmake = shutil.which("cmake")
    if cmake is None:
        raise Unavailable("cmake is not installed")
    _run([cmake, "-S", str(PLUGINS), "-B", str(build_dir), f"-DTENSORRT_INCLUDE_DIR={headers}",
          f"-DCMAKE_CUDA_COMPILER={home / 'bin' / 'nvcc'}", f"-DCMAKE_CUDA_ARCHITECTURES={TEST_ARCH}",
          "-DSEMSHARE_PLUGIN_TESTS=ON"], "cmake configure")
    _run([cmake, "--build", str(build_dir), "-j2"], "cmake build")
    return build_dir


def build_host_kernels(out_dir: Path = CACHE / "build-kernels-host") -> Path:
    """g++ build of plugins/tests/kernels_host.cpp (the kernels' per-element math on the CPU); returns the .so."""
    home = cuda_home()
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        raise Unavailable("no C++ compiler (g++) found")
    out_dir.mkdir(parents=True, exist_ok=True)
    library = out_dir / "libsemshare_kernels_host.so"
    sources = [PLUGINS / "tests" / "kernels_host.cpp", *PLUGINS.glob("common/host_device.h"),
               *PLUGINS.glob("*/*_math.h")]
    if not library.exists() or library.stat().st_mtime < max(p.stat().st_mtime for p in sources):
        _run([cxx, "-std=c++17", "-O2", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror", f"-I{PLUGINS}",
              "-isystem", str(home / "include"), str(sources[0]), "-o", str(library)], "host kernel build")
    return library


# One process per scenario: what a library's constructor did cannot be undone in-process.
_REGISTRATION_SCRIPT = r"""
import ctypes, json, os, sys
fake_path, plugin_path, steps = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
fake, results = None, []
for step in steps:
    if step == "tensorrt":          # as `import tensorrt` brings libnvinfer in: ctypes.CDLL, RTLD_LOCAL
        fake = ctypes.CDLL(fake_path, mode=os.RTLD_LOCAL)
    elif step == "tensorrt_global":  # as trtexec has it: linked, in the global scope
        fake = ctypes.CDLL(fake_path, mode=os.RTLD_GLOBAL)
    elif step == "ctypes":           # polygraphy --plugins (LoadPlugins: ctypes.CDLL) / trtexec --staticPlugins (dlopen)
        ctypes.CDLL(plugin_path)
    elif step == "load_library":     # IPluginRegistry::loadLibrary
        fake.semshare_fake_load_library.restype = ctypes.c_void_p
        results.append(fake.semshare_fake_load_library(plugin_path.encode()) is not None)
    else:
        raise SystemExit(f"unknown step {step}")
if fake is None:                     # nothing held TensorRT: read the (untouched) registry afterwards
    fake = ctypes.CDLL(fake_path, mode=os.RTLD_LOCAL)
fake.semshare_fake_report.restype = ctypes.c_char_p
print(json.dumps({"load_library": results, **json.loads(fake.semshare_fake_report())}))
"""


def registration_scenario(build_dir: Path, steps: list[str], other_major: bool = False) -> dict:
    """Run ``steps`` (tensorrt, tensorrt_global, ctypes, load_library) in a fresh Python process against the
    stand-in ``libnvinfer.so.N`` (plugins/tests/fake_nvinfer.cpp; ``other_major``: under the next major's soname)
    and the plugin library; returns the loadLibrary results and the stand-in registry's report (events in call
    order, registered creators) and the process's stderr."""
    folder = "fake_nvinfer_other" if other_major else "fake_nvinfer"
    fake = next((build_dir / folder).glob("libnvinfer.so.*"))
    result = subprocess.run([sys.executable, "-c", _REGISTRATION_SCRIPT, str(fake),
                             str(build_dir / "libsemshare_plugins.so"), ",".join(steps)],
                            capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"registration scenario {steps} failed: {result.stderr[-3000:]}")
    return {**json.loads(result.stdout.splitlines()[-1]), "stderr": result.stderr}


class Harness:
    """Runs plugins/tests/plugin_harness.cpp against the built library and parses its JSON."""

    def __init__(self, build_dir: Path) -> None:
        self.executable = build_dir / "plugin_harness"
        self.library = build_dir / "libsemshare_plugins.so"

    def _call(self, *args: str) -> dict:
        result = subprocess.run([str(self.executable), str(self.library), *args], capture_output=True, text=True,
                                timeout=60)
        if result.returncode != 0:
            raise RuntimeError(f"plugin_harness {' '.join(args)} failed: {result.stderr}")
        return json.loads(result.stdout)

    def creators(self) -> dict:
        return self._call("creators")

    def check(self, plugin: str, fields: dict | None = None, shapes: list | None = None, phase: str = "build",
              raw_fields: list[str] | None = None) -> dict:
        """fields: name -> int (kINT32), float (kFLOAT32) or str (kCHAR); raw_fields: 'name:TYPE:value' specs."""
        args = [plugin, "--phase", phase]
        for name, value in (fields or {}).items():
            kind = "s" if isinstance(value, str) else "f" if isinstance(value, float) else "i"
            args += ["--field", f"{name}:{kind}:{value}"]
        for spec in raw_fields or []:
            args += ["--field", spec]
        for i, shape in enumerate(shapes or []):
            args += ["--shape", f"{i}=" + ",".join(str(e) for e in shape)]
        return self._call("check", *args)


def onnx_plugin_fields(model, listed: dict[str, list[str]]) -> list[tuple[str, dict]]:
    """(op_type, fields) for every plugin node of an ONNX model, as TensorRT's ONNX parser would pass them.

    The parser looks a node up by op_type and passes only the attributes whose names the creator lists
    (``listed``: plugin name -> field names): INT -> kINT32, FLOAT -> kFLOAT32, STRING -> kCHAR.
    """
    import onnx

    nodes = []
    for node in model.graph.node:
        if node.op_type not in listed:
            continue
        fields: dict = {}
        for attr in node.attribute:
            if attr.name not in listed[node.op_type]:
                continue
            if attr.type == onnx.AttributeProto.INT:
                fields[attr.name] = int(attr.i)
            elif attr.type == onnx.AttributeProto.FLOAT:
                fields[attr.name] = float(attr.f)
            elif attr.type == onnx.AttributeProto.STRING:
                fields[attr.name] = attr.s.decode()
            else:
                raise ValueError(f"{node.op_type}.{attr.name}: attribute type {attr.type} is not INT/FLOAT/STRING")
        nodes.append((node.op_type, fields))
    return nodes


def load_host_kernels(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    p, i = ctypes.c_void_p, ctypes.c_int
    lib.semshare_correlation_direct.argtypes = [i, p, p, p] + [i] * 7
    lib.semshare_correlation_tiled.argtypes = [i, p, p, p] + [i] * 8
    lib.semshare_correlation_plan.argtypes = [i] * 7 + [ctypes.POINTER(ctypes.c_longlong)]
    lib.semshare_correlation_plan.restype = None
    lib.semshare_homography_warp.argtypes = [i, p, p, p] + [i] * 8 + [ctypes.c_longlong]
    lib.semshare_homography_warp_plan.argtypes = [i] * 3 + [ctypes.POINTER(ctypes.c_longlong)]
    lib.semshare_homography_warp_plan.restype = None
    return lib
