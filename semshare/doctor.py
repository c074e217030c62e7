"""``semshare doctor``: what is installed and usable here, each line with a fix hint. It reports; it never fails.

Every probe is a small function returning a :class:`Check`; probes that import heavy packages do it inside
themselves, and any exception becomes a line of the report instead of a crash.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

NV_TEGRA_RELEASE = Path("/etc/nv_tegra_release")
DEVICE_TREE_MODEL = Path("/proc/device-tree/model")

#: L4T (R<major>.<minor>) -> JetPack, for the releases semshare targets (NVIDIA's JetPack archive pages).
L4T_TO_JETPACK = {"35.4": "5.1.2", "35.5": "5.1.3", "35.6": "5.1.4", "36.3": "6.0", "36.4": "6.1/6.2", "38.2": "7.0"}


@dataclass
class Check:
    name: str
    ok: bool | None  # True fine, False problem, None not applicable here
    detail: str
    hint: str = ""


def _python() -> Check:
    ok = sys.version_info >= (3, 10)
    return Check("python", ok, f"{platform.python_version()} ({sys.executable})",
                 "" if ok else "semshare needs Python >= 3.10")


def _torch() -> Check:
    try:
        import torch
    except ImportError as exc:
        return Check("torch", False, f"not importable ({exc})", "pip install -e . (torch is a core dependency)")
    if torch.cuda.is_available():
        return Check("torch", True, f"{torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}")
    cuda = torch.version.cuda
    return Check("torch", True, f"{torch.__version__}, " + (f"built for CUDA {cuda} but no GPU visible" if cuda else "CPU build"),
                 "for --device cuda install a CUDA torch (on Jetson: NVIDIA's JetPack torch wheel)")


def _onnxruntime() -> Check:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        return Check("onnxruntime", False, f"not importable ({exc})", "pip install onnxruntime (or onnxruntime-gpu)")
    providers = ort.get_available_providers()
    gpu = [p for p in providers if p in ("CUDAExecutionProvider", "TensorrtExecutionProvider")]
    return Check("onnxruntime", True, f"{ort.__version__}: {', '.join(providers)}",
                 "" if gpu else "for the cuda/tensorrt backends: pip install semshare[gpu] (onnxruntime-gpu)")


def _tensorrt() -> Check:
    try:
        import tensorrt as trt
    except ImportError as exc:
        return Check("tensorrt", False, f"not importable ({exc.__class__.__name__})",
                     "pip install semshare[trt]; on Jetson it comes with JetPack (python3-libnvinfer)")
    major = int(trt.__version__.split(".")[0])
    hint = "" if major >= 10 else "semshare needs TensorRT >= 10.3 (IPluginV3, strongly typed networks)"
    return Check("tensorrt", major >= 10, trt.__version__, hint)


def _plugins() -> Check:
    from semshare.engine.plugins import find_plugin_library, load_plugins
    from semshare.errors import SemshareError

    try:
        path = find_plugin_library()
    except SemshareError as exc:
        return Check("plugin library", False, "not found", str(exc).split("; ", 1)[-1])
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return Check("plugin library", None, f"{path} (not loaded: no TensorRT here)", "")
    try:
        load_plugins(library=path)
    except SemshareError as exc:
        return Check("plugin library", False, f"{path}: {exc}", "rebuild it with `make plugins` on this machine")
    return Check("plugin library", True, f"{path} (SpatialCorrelation, HomographyWarp registered)")


def _cuda_binding_and_gpu() -> list[Check]:
    from semshare.engine.runner import cuda_backend
    from semshare.errors import SemshareError

    try:
        backend = cuda_backend()
    except SemshareError as exc:
        return [Check("cuda binding", False, "none usable", str(exc).rsplit("; ", 1)[-1]),
                Check("gpu", None, "unknown (no CUDA binding)", "")]
    try:
        info = backend.device_info(0)
    except Exception as exc:  # no driver or no GPU behind the binding
        return [Check("cuda binding", True, backend.name),
                Check("gpu", False, f"none usable ({str(exc).splitlines()[0][:300]})", "check the NVIDIA driver (nvidia-smi)")]
    return [Check("cuda binding", True, f"{backend.name} (CUDA runtime {info['cuda_runtime']}, driver {info['cuda_driver']})"),
            Check("gpu", True, f"{info['name']}, compute capability {info['compute_capability']}, {info['memory_gib']} GiB")]


def parse_tegra_release(text: str) -> str | None:
    """``# R36 (release), REVISION: 4.3, ...`` -> ``"36.4.3"``."""
    import re

    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", text)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def jetpack_for(l4t: str) -> str | None:
    return L4T_TO_JETPACK.get(".".join(l4t.split(".")[:2]))


def _jetson(release: Path = NV_TEGRA_RELEASE, model: Path = DEVICE_TREE_MODEL) -> list[Check]:
    if not release.is_file():
        return [Check("jetson", None, "not a Jetson (no /etc/nv_tegra_release)")]
    l4t = parse_tegra_release(release.read_text(errors="replace"))
    name = model.read_text(errors="replace").strip("\x00\n ") if model.is_file() else "unknown model"
    jp = jetpack_for(l4t) if l4t else None
    detail = f"{name}, L4T {l4t or '?'}" + (f" (JetPack {jp})" if jp else "")
    hint = "" if jp else "semshare targets JetPack 6.1/6.2 (L4T 36.4) on Orin and JetPack 7 on Thor"
    return [Check("jetson", bool(jp), detail, hint), _power_mode()]


def _power_mode() -> Check:
    if shutil.which("nvpmodel") is None:
        return Check("power mode", None, "nvpmodel not found", "")
    try:
        out = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return Check("power mode", False, f"nvpmodel -q failed ({exc})", "run as root: sudo nvpmodel -q")
    mode = " ".join(line.strip() for line in out.splitlines() if line.strip())
    return Check("power mode", True, mode or "unknown",
                 "for benchmarks: sudo nvpmodel -m 0 && sudo jetson_clocks (record the mode with every result)")


PROBES: tuple[Callable[[], Check | list[Check]], ...] = (_python, _torch, _onnxruntime, _tensorrt, _plugins,
                                                         _cuda_binding_and_gpu, _jetson)


def run_checks() -> list[Check]:
    checks: list[Check] = []
    for probe in PROBES:
        try:
            result = probe()
        except Exception as exc:  # a probe must never take the report down
            result = Check(probe.__name__.strip("_"), False, f"probe failed: {exc.__class__.__name__}: {exc}", "")
        checks.extend(result if isinstance(result, list) else [result])
    return checks


def format_checks(checks: list[Check]) -> str:
    mark = {True: "ok ", False: "!! ", None: "-- "}
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{mark[c.ok]} {c.name:<{width}}  {c.detail}")
        if c.hint and c.ok is not True:
            lines.append(f"    {'':<{width}}  fix: {c.hint}")
        elif c.hint:
            lines.append(f"    {'':<{width}}  note: {c.hint}")
    return "\n".join(lines)
