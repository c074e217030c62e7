"""GPU check of the plugin kernels without TensorRT: correctness on CUDA and timings against PyTorch.

Needs an NVIDIA GPU, nvcc and a CUDA build of torch. Builds ``plugins/``'s CUDA kernels as a plain shared library
(``plugins/tests/kernels_cuda.cu`` + the two kernel ``.cu`` files, ``-arch=native``), loads it with ctypes, checks
it against ``semshare.ops`` on the same GPU, then times both with CUDA events at the tightly model's three
correlation levels and at the fov60 -> fov120 warp, and prints a table with the card's name and the kernels'
achieved fraction of its DRAM bandwidth (minimum traffic: every input read once, the output written once).
``spatial-correlation-sampler`` is timed too where it is installed.

    python benchmarks/plugins_gpu.py [--iters 200] [--peak-gbs 4800]     # timing table (the default mode)
    python benchmarks/plugins_gpu.py --mode correctness   # fp32/fp16, odd sizes, batch > 1 and > 65535 vs PyTorch
    python benchmarks/plugins_gpu.py --mode sanitize      # a short launch of every kernel path, for compute-sanitizer
    python benchmarks/plugins_gpu.py --mode build --arch sm_80   # only build the library (no GPU needed)

``benchmarks/gpu_day.sh`` runs all of them.
"""

from __future__ import annotations

import argparse
import ctypes
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / "plugins"
SOURCES = [
    PLUGINS / "tests" / "kernels_cuda.cu",
    PLUGINS / "spatial_correlation" / "spatial_correlation_kernel.cu",
    PLUGINS / "homography_warp" / "homography_warp_kernel.cu",
]
HEADERS = [*PLUGINS.glob("common/*.h"), *PLUGINS.glob("*/*_kernel.h"), *PLUGINS.glob("*/*_math.h")]

#: tightly model's correlation levels (B, C, H, W), patch 9
CORRELATION_LEVELS = [(1, 112, 32, 48), (1, 40, 64, 96), (1, 24, 128, 192)]
#: warps: src (B, C, Hs, Ws) -> (Hd, Wd)
WARPS = [((1, 6, 486, 768), (486, 768)), ((1, 3, 486, 768), (486, 768))]


def nvcc_path() -> str:
    for candidate in (shutil.which("nvcc"), "/usr/local/cuda/bin/nvcc"):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit("nvcc not found: install the CUDA toolkit or put nvcc on PATH")


def build_command(nvcc: str, output: Path, arch: str = "native") -> list[str]:
    return [nvcc, "-O3", "-std=c++17", "-shared", "-Xcompiler", "-fPIC", f"-arch={arch}", f"-I{PLUGINS}",
            *map(str, SOURCES), "-o", str(output)]


def build_library(out_dir: Path, arch: str) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    library = out_dir / "libsemshare_kernels_cuda.so"
    newest = max(p.stat().st_mtime for p in SOURCES + HEADERS)
    if not library.exists() or library.stat().st_mtime < newest:
        cmd = build_command(nvcc_path(), library, arch)
        print("building:", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True)
    return library


def load_library(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    p, i = ctypes.c_void_p, ctypes.c_int
    lib.semshare_cuda_correlation.argtypes = [i, p, p, p] + [i] * 7 + [p]
    lib.semshare_cuda_homography_warp.argtypes = [i, p, p, p] + [i] * 8 + [p]
    lib.semshare_cuda_peak_bandwidth_gbs.restype = ctypes.c_double
    lib.semshare_cuda_peak_bandwidth_gbs.argtypes = []
    return lib


def correlation_bytes(shape: tuple[int, int, int, int], patch: int, itemsize: int) -> int:
    b, c, h, w = shape
    return (2 * b * c * h * w + b * patch * patch * h * w) * itemsize


def warp_bytes(src: tuple[int, int, int, int], out: tuple[int, int], itemsize: int) -> int:
    b, c, hs, ws = src
    return (b * c * hs * ws + b * c * out[0] * out[1]) * itemsize + 9 * 4


@dataclass
class Row:
    op: str
    case: str
    dtype: str
    ours_ms: float
    torch_ms: float
    other_ms: float | None
    max_err: float
    bytes_moved: int

    def cells(self, peak_gbs: float) -> list[str]:
        gbs = self.bytes_moved / (self.ours_ms * 1e-3) / 1e9
        frac = f"{gbs / peak_gbs:6.1%}" if peak_gbs > 0 else "   n/a"
        other = f"{self.other_ms:9.4f}" if self.other_ms is not None else "        -"
        return [self.op, self.case, self.dtype, f"{self.ours_ms:8.4f}", f"{self.torch_ms:8.4f}", other,
                f"{self.torch_ms / self.ours_ms:6.1f}x", f"{gbs:7.1f}", frac, f"{self.max_err:.1e}"]


HEADER = ["op", "case", "dtype", "ours ms", "torch ms", "sampler ms", "speedup", "GB/s", "of peak", "max err"]


def format_table(rows: list[Row], peak_gbs: float) -> str:
    cells = [HEADER] + [r.cells(peak_gbs) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(HEADER))]
    lines = [" | ".join(c[i].rjust(widths[i]) for i in range(len(HEADER))) for c in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def time_cuda(fn, iters: int, warmup: int = 10) -> float:
    """Median milliseconds per call, CUDA events around each call."""
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    return times[len(times) // 2]


def _stream():
    import torch

    return ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)


CUDA_ERRORS = {
    1: "cudaErrorInvalidValue",
    35: "cudaErrorInsufficientDriver: the library was built by an nvcc newer than the driver supports; use an nvcc "
        "of the CUDA version nvidia-smi reports, or newer drivers",
    100: "cudaErrorNoDevice",
    209: "cudaErrorNoKernelImageForDevice: built for another GPU architecture; rebuild with --arch native",
    222: "cudaErrorUnsupportedPtxVersion: the driver is older than the nvcc that built the library",
}


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"{what}: CUDA error {status} ({CUDA_ERRORS.get(status, 'see cudaError_t')})")


def _dtype_code_and_tag(dtype) -> tuple[int, str]:
    import torch

    return (0, "fp32") if dtype == torch.float32 else (1, "fp16")


#: (atol, rtol) per op and dtype. fp16: output rounding. fp32 correlation: summation order. fp32 warp: the sample
#: coordinate differs from PyTorch's by float rounding (~1e-4 pixel at 768 wide), times the gradient of a
#: random-noise image (up to ~5 per pixel): ~1e-3; a wrong pixel convention or tap moves values by ~1.
TOLERANCES = {("correlation", "fp32"): (1e-4, 1e-4), ("correlation", "fp16"): (1e-2, 1e-2),
              ("warp", "fp32"): (2e-3, 1e-4), ("warp", "fp16"): (1e-2, 1e-2)}


def _compare(out, ref, op: str, tag: str) -> tuple[float, int]:
    """(max |out - ref|, elements outside atol + rtol * |ref|, NaN -- never written -- included)."""
    atol, rtol = TOLERANCES[(op, tag)]
    diff = (out.float() - ref).abs()
    bad = ~(diff <= atol + rtol * ref.abs())
    return diff.nan_to_num(float("inf")).max().item(), int(bad.sum().item())


def bench_correlation(lib, shape, dtype, iters: int, sampler_cls, failures: list[str]) -> Row:
    """Check and time the correlation kernel (patch 9) at one level against semshare.ops on the same GPU."""
    import torch

    from semshare.ops import spatial_correlation

    code, tag = _dtype_code_and_tag(dtype)
    b, c, h, w = shape
    x1 = torch.randn(shape, device="cuda").to(dtype)
    x2 = torch.randn(shape, device="cuda").to(dtype)
    out = torch.empty(b, 81, h, w, device="cuda", dtype=dtype)

    def ours():
        _check(lib.semshare_cuda_correlation(code, x1.data_ptr(), x2.data_ptr(), out.data_ptr(), b, c, h, w, 9, 1, 1,
                                             _stream()), "correlation")

    ours()
    err, bad = _compare(out, spatial_correlation(x1.float(), x2.float()), "correlation", tag)
    if bad:
        failures.append(f"correlation {shape} {tag}: {bad} elements outside tolerance (max err {err:.2e})")
    other = None
    if sampler_cls is not None:
        sampler = sampler_cls(kernel_size=1, patch_size=9, stride=1, padding=0, dilation_patch=1)
        other = time_cuda(lambda: sampler(x1, x2), iters)
    return Row("SpatialCorrelation", f"{c}@{h}x{w}", tag, time_cuda(ours, iters),
               time_cuda(lambda: spatial_correlation(x1, x2), iters), other, err,
               correlation_bytes(shape, 9, x1.element_size()))


def bench_warp(lib, src_shape, out_size, align: bool, dtype, iters: int, failures: list[str]) -> Row:
    """Check and time the warp kernel against semshare.ops.homography_warp on the same GPU."""
    import torch

    from semshare.ops import homography_warp

    code, tag = _dtype_code_and_tag(dtype)
    b, c, hs, ws = src_shape
    src = torch.randn(src_shape, device="cuda").to(dtype)
    hom = torch.tensor([[[0.9, 0.05, 0.02], [-0.03, 0.92, 0.01], [0.02, -0.01, 1.0]]], device="cuda")
    out = torch.empty(b, c, *out_size, device="cuda", dtype=dtype)

    def ours():
        _check(lib.semshare_cuda_homography_warp(code, src.data_ptr(), hom.data_ptr(), out.data_ptr(), b, c, hs, ws,
                                                 out_size[0], out_size[1], 1, int(align), _stream()), "warp")

    ours()
    err, bad = _compare(out, homography_warp(src.float(), hom, out_size, align_corners=align), "warp", tag)
    if bad:
        failures.append(f"warp {src_shape} align={align} {tag}: {bad} elements outside tolerance (max err {err:.2e})")
    return Row("HomographyWarp", f"{c}@{hs}x{ws}->{out_size[0]}x{out_size[1]} ac={int(align)}", tag,
               time_cuda(ours, iters), time_cuda(lambda: homography_warp(src, hom, out_size, align_corners=align), iters),
               None, err, warp_bytes(src_shape, out_size, src.element_size()))


#: correctness sweep: (B, C, H, W), P, dilation, normalize -- odd sizes, batch > 1, every kernel path (tiled with
#: whole patch / row groups, direct for P = 11, for a halo too large, and for batch x row groups > 65535)
CORRELATION_CHECKS = [
    ((2, 5, 7, 9), 9, 1, True), ((1, 13, 11, 37), 9, 1, True), ((3, 16, 13, 21), 3, 2, True),
    ((3, 4, 5, 6), 7, 1, False), ((2, 9, 17, 33), 5, 3, False), ((1, 6, 9, 8), 11, 1, True),
    ((1, 8, 20, 30), 9, 40, True), ((4, 112, 32, 48), 9, 1, True), ((2, 24, 128, 192), 9, 1, True),
    ((70_000, 1, 2, 3), 3, 1, True),
]
#: src (B, C, Hs, Ws), homography batch, out size, perturbation -- odd sizes, per-sample homographies, batch 70000
WARP_CHECKS = [
    ((1, 3, 16, 24), 1, (16, 24), 0.0), ((2, 4, 15, 23), 2, (19, 13), 0.1), ((3, 2, 9, 31), 1, (8, 33), 0.3),
    ((2, 5, 20, 20), 2, (21, 21), 1.0), ((2, 6, 486, 768), 2, (486, 768), 0.05), ((70_000, 2, 4, 5), 70_000, (3, 4), 0.2),
]


def _random_homographies(n: int, strength: float, device: str):
    import torch

    return (torch.eye(3, device=device).repeat(n, 1, 1) + strength * torch.randn(n, 3, 3, device=device)).contiguous()


def _stream_of(t):
    return _stream() if t.is_cuda else None


def run_correlation(lib, x1, x2, patch: int, dilation: int, normalize: bool):
    import torch

    b, c, h, w = x1.shape
    out = torch.full((b, patch * patch, h, w), float("nan"), device=x1.device, dtype=x1.dtype)
    code = _dtype_code_and_tag(x1.dtype)[0]
    _check(lib.semshare_cuda_correlation(code, x1.data_ptr(), x2.data_ptr(), out.data_ptr(), b, c, h, w, patch,
                                         dilation, int(normalize), _stream_of(x1)), f"correlation {tuple(x1.shape)}")
    return out


def run_warp(lib, src, hom, out_size, align: bool):
    import torch

    b, c, hs, ws = src.shape
    out = torch.full((b, c, *out_size), float("nan"), device=src.device, dtype=src.dtype)
    code = _dtype_code_and_tag(src.dtype)[0]
    _check(lib.semshare_cuda_homography_warp(code, src.data_ptr(), hom.data_ptr(), out.data_ptr(), b, c, hs, ws,
                                             out_size[0], out_size[1], hom.shape[0], int(align), _stream_of(src)),
           f"warp {tuple(src.shape)}")
    return out


def correctness(lib, device: str = "cuda") -> tuple[str, list[str]]:
    """Every CORRELATION_CHECKS / WARP_CHECKS case in fp32 and fp16 against semshare.ops on the same device (fp16:
    the reference sees the same rounded inputs, in float32). Returns the table and the failures. (The tests run it
    on the CPU with the host build of the kernels standing in for ``lib``.)"""
    import torch

    from semshare.ops import homography_warp, spatial_correlation

    lines = ["op | case | dtype | max abs err | outside tol | result", "---|---|---|---:|---:|---"]
    failures = []
    torch.manual_seed(0)
    for dtype in (torch.float32, torch.float16):
        tag = _dtype_code_and_tag(dtype)[1]
        for shape, patch, dilation, normalize in CORRELATION_CHECKS:
            x1, x2 = torch.randn(shape, device=device).to(dtype), torch.randn(shape, device=device).to(dtype)
            ref = spatial_correlation(x1.float(), x2.float(), patch_size=patch, dilation_patch=dilation,
                                      normalize=normalize)
            err, bad = _compare(run_correlation(lib, x1, x2, patch, dilation, normalize), ref, "correlation", tag)
            case = f"{shape} P={patch} d={dilation} norm={int(normalize)}"
            lines.append(f"SpatialCorrelation | {case} | {tag} | {err:.2e} | {bad} | {'ok' if bad == 0 else 'FAIL'}")
            if bad:
                failures.append(f"correlation {case} {tag}: {bad} elements outside tolerance (max err {err:.2e})")
        for src_shape, h_batch, out_size, strength in WARP_CHECKS:
            src = torch.randn(src_shape, device=device).to(dtype)
            hom = _random_homographies(h_batch, strength, device)
            for align in (True, False):
                ref = homography_warp(src.float(), hom, out_size, align_corners=align)
                err, bad = _compare(run_warp(lib, src, hom, out_size, align), ref, "warp", tag)
                case = f"{src_shape} H{h_batch} -> {out_size} ac={int(align)}"
                lines.append(f"HomographyWarp | {case} | {tag} | {err:.2e} | {bad} | {'ok' if bad == 0 else 'FAIL'}")
                if bad:
                    failures.append(f"warp {case} {tag}: {bad} elements outside tolerance (max err {err:.2e})")
    return "\n".join(lines), failures


def sanitize_workload(lib) -> None:
    """One launch of every kernel path on small odd shapes (fp32 and fp16), each synchronised and checked: the
    workload compute-sanitizer's memcheck and racecheck run (PyTorch only allocates and fills the inputs)."""
    import torch

    torch.manual_seed(0)
    for dtype in (torch.float32, torch.float16):
        for shape, patch, dilation, normalize in CORRELATION_CHECKS[:7]:
            x1, x2 = torch.randn(shape, device="cuda").to(dtype), torch.randn(shape, device="cuda").to(dtype)
            run_correlation(lib, x1, x2, patch, dilation, normalize)
            torch.cuda.synchronize()
        for src_shape, h_batch, out_size, strength in WARP_CHECKS[:4]:
            src = torch.randn(src_shape, device="cuda").to(dtype)
            for align in (True, False):
                run_warp(lib, src, _random_homographies(h_batch, strength, "cuda"), out_size, align)
                torch.cuda.synchronize()
    print("sanitize workload: every kernel path launched and synchronised without a CUDA error")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("timing", "correctness", "sanitize", "build"), default="timing")
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--arch", default="native", help="nvcc -arch (default: the GPU in this machine)")
    parser.add_argument("--build-dir", type=Path, default=ROOT / "build" / "plugins-gpu-check")
    parser.add_argument("--peak-gbs", type=float, default=0.0, help="DRAM bandwidth if the driver does not report it")
    args = parser.parse_args(argv)
    if args.mode == "build":
        print(build_library(args.build_dir, args.arch))
        return 0

    import torch

    sys.path.insert(0, str(ROOT))

    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible to torch: this check needs an NVIDIA GPU and a CUDA build of torch")
    lib = load_library(build_library(args.build_dir, args.arch))
    if args.mode == "sanitize":
        sanitize_workload(lib)
        return 0
    name = torch.cuda.get_device_name(0)
    if args.mode == "correctness":
        table, failures = correctness(lib)
        print(f"{name}, torch {torch.__version__}, CUDA {torch.version.cuda}: kernels vs semshare.ops on the GPU "
              f"(|err| <= atol + rtol |ref|, (atol, rtol): {TOLERANCES}; fp16: reference in float32 from the same "
              "fp16 inputs)\n")
        print(table)
        for failure in failures:
            print("FAIL", failure)
        return 1 if failures else 0
    peak = args.peak_gbs or lib.semshare_cuda_peak_bandwidth_gbs()
    try:
        from spatial_correlation_sampler import SpatialCorrelationSampler
    except ImportError:
        SpatialCorrelationSampler = None

    rows: list[Row] = []
    failures: list[str] = []
    torch.manual_seed(0)
    for dtype in (torch.float32, torch.float16):
        for shape in CORRELATION_LEVELS:
            rows.append(bench_correlation(lib, shape, dtype, args.iters, SpatialCorrelationSampler, failures))
        for src_shape, out_size in WARPS:
            for align in (True, False):
                rows.append(bench_warp(lib, src_shape, out_size, align, dtype, args.iters, failures))

    print(f"\n{name}, torch {torch.__version__}, CUDA {torch.version.cuda}, peak DRAM "
          f"{peak:.0f} GB/s, median of {args.iters} runs (CUDA events), batch 1")
    print(format_table(rows, peak))
    corr = [r for r in rows if r.op == "SpatialCorrelation"]
    slowest = min(r.torch_ms / r.ours_ms for r in corr)
    print(f"\ncorrelation speedup over the PyTorch reference: min {slowest:.1f}x (goal >= 3x: "
          f"{'met' if slowest >= 3 else 'NOT met'})")
    for failure in failures:
        print("FAIL", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
