"""Run conditions recorded with every result: machine, versions, threads, load, and on Jetson the power mode,
clocks and temperatures.

Every probe returns a value or ``None`` plus a reason in ``unavailable``; nothing is guessed.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

#: Temperatures (deg C) at or above which a Jetson/desktop part is likely to throttle.
THROTTLE_TEMP_C = 85.0


def _read(path: str | Path) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def cpu_model() -> str | None:
    """The CPU model name (``lscpu``'s "Model name", /proc/cpuinfo, or platform)."""
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model name", "Hardware") and value.strip():
            return value.strip()
    if shutil.which("lscpu"):
        try:
            out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=5).stdout
            for line in out.splitlines():
                if line.startswith("Model name:"):
                    return line.split(":", 1)[1].strip()
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or None


def package_version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions() -> tuple[dict[str, str | None], dict[str, str]]:
    """Versions of semshare, Python, torch (+ its CUDA), onnx, ONNX Runtime, TensorRT, cuda-python, CUDA driver."""
    from semshare import __version__

    v: dict[str, str | None] = {"semshare": __version__, "python": platform.python_version()}
    why: dict[str, str] = {}
    v["torch"] = package_version("torch")
    v["torch_cuda"] = None
    if v["torch"]:
        import torch

        v["torch_cuda"] = torch.version.cuda
        if torch.version.cuda is None:
            why["torch_cuda"] = "this torch build has no CUDA"
    v["onnx"] = package_version("onnx")
    v["onnxruntime"] = package_version("onnxruntime") or package_version("onnxruntime-gpu")
    v["tensorrt"] = None
    try:
        import tensorrt

        v["tensorrt"] = tensorrt.__version__
    except ImportError:
        why["tensorrt"] = "tensorrt is not installed (pip install semshare[trt])"
    v["cuda_python"] = package_version("cuda-python")
    if v["cuda_python"] is None:
        why["cuda_python"] = "cuda-python is not installed"
    v["cuda_driver"] = None
    gpu = nvidia_smi("driver_version")
    if gpu:
        v["cuda_driver"] = gpu[0]
    else:
        why["cuda_driver"] = "no NVIDIA driver found (nvidia-smi absent or failing)"
    for key in ("torch", "onnx", "onnxruntime"):
        if v[key] is None:
            why[key] = f"{key} is not installed"
    return v, why


def nvidia_smi(field: str) -> list[str] | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", f"--query-gpu={field}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [s.strip() for s in out.stdout.splitlines() if s.strip()]
    return lines if out.returncode == 0 and lines else None


def gpu_name() -> tuple[str | None, str | None]:
    """(name, reason-if-none) of GPU 0."""
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0), None
    except ImportError:
        pass
    names = nvidia_smi("name")
    if names:
        return names[0], None
    if is_jetson():
        model = _read("/proc/device-tree/model")
        return (model.replace("\x00", "") if model else "Jetson (integrated GPU)"), None
    return None, "no CUDA GPU visible (torch.cuda and nvidia-smi found none)"


def is_jetson() -> bool:
    return Path("/etc/nv_tegra_release").exists() or Path("/sys/devices/gpu.0").exists()


def temperatures() -> dict[str, float]:
    """Thermal zones in deg C by zone type (Linux sysfs), e.g. {"cpu-thermal": 51.2, "gpu-thermal": 49.8}."""
    temps: dict[str, float] = {}
    for zone in sorted(Path("/sys/class/thermal").glob("thermal_zone*")):
        kind, raw = _read(zone / "type"), _read(zone / "temp")
        try:
            if kind and raw:
                temps[kind] = int(raw) / 1000.0
        except ValueError:
            continue
    return temps


def jetson_power() -> tuple[dict, dict[str, str]]:
    """nvpmodel mode and whether clocks are locked (jetson_clocks pins min == max frequency)."""
    info: dict = {"nvpmodel": None, "clocks_locked": None}
    why: dict[str, str] = {}
    if shutil.which("nvpmodel"):
        try:
            out = subprocess.run(["nvpmodel", "-q"], capture_output=True, text=True, timeout=10)
            lines = [s.strip() for s in out.stdout.splitlines() if s.strip()]
            info["nvpmodel"] = " / ".join(lines[:2]) if lines else None
            if not lines:
                why["nvpmodel"] = f"nvpmodel -q printed nothing ({out.stderr.strip()[:80]})"
        except (OSError, subprocess.SubprocessError) as exc:
            why["nvpmodel"] = f"nvpmodel -q failed: {exc}"
    else:
        why["nvpmodel"] = "nvpmodel not found"
    locked = []
    for cpu in sorted(Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq")):
        lo, hi = _read(cpu / "scaling_min_freq"), _read(cpu / "scaling_max_freq")
        if lo and hi:
            locked.append(lo == hi)
    for dev in Path("/sys/class/devfreq").glob("*"):
        if "gpu" in dev.name or "ga10b" in dev.name or "gv11b" in dev.name or "gp10b" in dev.name:
            lo, hi = _read(dev / "min_freq"), _read(dev / "max_freq")
            if lo and hi:
                locked.append(lo == hi)
    if locked:
        info["clocks_locked"] = all(locked)
    else:
        why["clocks_locked"] = "no cpufreq/devfreq min/max readable"
    return info, why


def collect(threads: int | None = None) -> dict:
    """All run conditions as a JSON-ready dict, with ``unavailable`` giving the reason for every null."""
    v, why = versions()
    name, gpu_why = gpu_name()
    cond: dict = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()}",
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "load_average_before": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "gpu": name,
        "versions": v,
        "jetson": is_jetson(),
        "temperatures_before": temperatures() or None,
    }
    unavailable = {f"versions.{k}": r for k, r in why.items()}
    if gpu_why:
        unavailable["gpu"] = gpu_why
    if cond["temperatures_before"] is None:
        unavailable["temperatures_before"] = unavailable["temperatures_after"] = (
            "no readable /sys/class/thermal zones on this machine")
    if cond["jetson"]:
        power, pwhy = jetson_power()
        cond.update(power)
        unavailable.update(pwhy)
    else:
        cond["nvpmodel"] = cond["clocks_locked"] = None
        unavailable["nvpmodel"] = unavailable["clocks_locked"] = "not a Jetson"
    cond["unavailable"] = unavailable
    return cond


def finish(cond: dict) -> list[str]:
    """Record the after-run temperatures and load; return warnings (throttling risk, a loaded machine)."""
    warnings: list[str] = []
    after = temperatures() or None
    cond["temperatures_after"] = after
    cond["load_average_after"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    if after:
        hot = {k: t for k, t in after.items() if t >= THROTTLE_TEMP_C}
        if hot:
            zones = ", ".join(f"{k} {t:.0f} C" for k, t in hot.items())
            warnings.append(f"temperatures at or above {THROTTLE_TEMP_C:.0f} C after the run ({zones}): the clocks may "
                            "have throttled; let the device cool, check the fan and rerun")
    if cond.get("jetson") and cond.get("clocks_locked") is False:
        warnings.append("clocks are not locked: run `sudo nvpmodel -m 0 && sudo jetson_clocks` for stable numbers")
    load = cond.get("load_average_after")
    ncpu = cond.get("cpu_count") or 0
    if load and ncpu and load[0] > 1.25 * ncpu:
        warnings.append(f"the machine was busy (1-min load {load[0]:.1f} on {ncpu} CPUs): other jobs shared the CPU "
                        "while measuring, so latencies are pessimistic")
    return warnings
