"""Timing: the warm-up / timed-iteration loop and the latency statistics.

Convention: one *iteration* is one synchronous call of a backend on one batch (``batch`` camera pairs), the
way an application calls it: inputs start on the host and outputs end on the host. Warm-up iterations run
first and are never part of the statistics. Percentiles use linear interpolation between order statistics
(NumPy's default, "type 7"): p50 of [1, 2, 3, 4] is 2.5.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from semshare.errors import SemshareError

#: The statistics reported for every latency series, in this order.
STAT_KEYS = ("min", "median", "mean", "p90", "p99", "max")


@dataclass(frozen=True)
class LatencyStats:
    """Latency statistics of N timed iterations, in milliseconds, and the derived throughput."""

    n: int
    min: float
    median: float
    mean: float
    p90: float
    p99: float
    max: float
    std: float
    fps: float  # camera pairs per second: batch * n / sum(latencies)

    def to_dict(self) -> dict:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), linear interpolation between order statistics."""
    if not len(values):
        raise ValueError("percentile of an empty series")
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def summarize(seconds: Sequence[float], batch: int = 1) -> LatencyStats:
    """Statistics of per-iteration latencies given in seconds (reported in ms); ``batch`` pairs per iteration."""
    t = np.asarray(seconds, dtype=np.float64)
    if t.size == 0:
        raise ValueError("no timed iterations to summarise")
    ms = t * 1e3
    return LatencyStats(
        n=int(t.size), min=float(ms.min()), median=percentile(ms, 50), mean=float(ms.mean()),
        p90=percentile(ms, 90), p99=percentile(ms, 99), max=float(ms.max()), std=float(ms.std()),
        fps=float(batch * t.size / t.sum()) if t.sum() > 0 else float("inf"),
    )


def check_counts(warmup: int, iterations: int | None, duration: float | None) -> None:
    if warmup < 0:
        raise SemshareError(f"--warmup must be >= 0, got {warmup}")
    if duration is None and (iterations is None or iterations <= 0):
        raise SemshareError(f"--iterations must be >= 1, got {iterations}; pass a positive count or --duration SECONDS")
    if duration is not None and duration <= 0:
        raise SemshareError(f"--duration must be > 0 seconds, got {duration}")


@dataclass
class Series:
    """What :func:`measure` returns: per-iteration times in seconds, and any extra series the step returned."""

    seconds: list[float]
    extra: dict[str, list[float]]
    warmup: int


def measure(step: Callable[[], dict[str, float] | None], warmup: int, iterations: int | None = None,
            duration: float | None = None, progress: Callable[[int], object] | None = None,
            clock: Callable[[], float] = time.perf_counter) -> Series:
    """Run ``step`` ``warmup`` times untimed, then time it ``iterations`` times (or until ``duration`` s).

    ``step`` may return a dict of extra per-iteration measurements in seconds (e.g. ``{"gpu": 0.012}`` from
    CUDA events); they are collected for the timed iterations only. ``progress(1)`` is called after every
    iteration, warm-up included.
    """
    check_counts(warmup, iterations, duration)
    for _ in range(warmup):
        step()
        if progress:
            progress(1)
    seconds: list[float] = []
    extra: dict[str, list[float]] = {}
    start = clock()
    while True:
        t0 = clock()
        out = step()
        seconds.append(clock() - t0)
        for k, v in (out or {}).items():
            extra.setdefault(k, []).append(float(v))
        if progress:
            progress(1)
        if duration is not None:
            if clock() - start >= duration:
                break
        elif len(seconds) >= iterations:
            break
    return Series(seconds, extra, warmup)
