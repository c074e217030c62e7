"""Peak memory while a backend loads and runs.

Host: the process's resident set size, sampled every ``interval`` seconds by a thread (``/proc/self/statm``)
between ``start()`` and ``stop()``; the process-lifetime peak (``getrusage`` ``ru_maxrss``) cannot be reset,
so it is reported separately. GPU: ``torch.cuda.max_memory_allocated`` for torch (exact, its allocator
only), otherwise the device-wide memory in use (``cudaMemGetInfo`` through torch or cuda-python) sampled by
the same thread, minus the value before the backend loaded.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from collections.abc import Callable


def rss_bytes() -> int | None:
    """Current resident set size of this process, or None where /proc is absent."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def max_rss_bytes() -> int:
    """The process's lifetime peak RSS (ru_maxrss: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def device_used_bytes_probe() -> tuple[Callable[[], int] | None, str | None]:
    """A function returning device-wide GPU memory in use, or (None, reason)."""
    try:
        import torch

        if torch.cuda.is_available():
            def used() -> int:
                free, total = torch.cuda.mem_get_info()
                return int(total - free)
            return used, None
    except ImportError:
        pass
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            return None, "no CUDA GPU visible to torch and cuda-python is not installed"
    err, free, total = cudart.cudaMemGetInfo()
    if int(err) != 0:
        return None, f"cudaMemGetInfo failed ({err})"

    def used_cudart() -> int:
        e, f, t = cudart.cudaMemGetInfo()
        return int(t - f)
    return used_cudart, None


class MemorySampler:
    """``with MemorySampler(gpu=True) as m: ...`` then ``m.host_peak`` (bytes), ``m.gpu_peak_delta``."""

    def __init__(self, gpu: bool = False, interval: float = 0.005) -> None:
        self.interval = interval
        self.host_base = self.host_peak = None
        self.gpu_probe, self.gpu_reason = device_used_bytes_probe() if gpu else (None, "not a GPU backend")
        self.gpu_base = self.gpu_peak = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        r = rss_bytes()
        if r is not None:
            self.host_peak = r if self.host_peak is None else max(self.host_peak, r)
        if self.gpu_probe is not None:
            try:
                g = self.gpu_probe()
                self.gpu_peak = g if self.gpu_peak is None else max(self.gpu_peak, g)
            except Exception as exc:  # a failing driver call must not kill the benchmark
                self.gpu_probe, self.gpu_reason = None, f"GPU memory query failed: {exc}"

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> MemorySampler:
        self.host_base = rss_bytes()
        if self.gpu_probe is not None:
            try:
                self.gpu_base = self.gpu_probe()
            except Exception as exc:
                self.gpu_probe, self.gpu_reason = None, f"GPU memory query failed: {exc}"
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def host_delta(self) -> int | None:
        if self.host_peak is None or self.host_base is None:
            return None
        return self.host_peak - self.host_base

    @property
    def gpu_peak_delta(self) -> int | None:
        if self.gpu_peak is None or self.gpu_base is None:
            return None
        return self.gpu_peak - self.gpu_base
