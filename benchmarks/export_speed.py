"""PyTorch eager CPU vs ONNX Runtime CPU on the ``--target onnx`` export, per variant, in one run.

Also the correlation alone: the PyTorch reference vs the ONNX decomposition in ONNX Runtime (vs
``spatial-correlation-sampler`` where importable), at the shapes the models really call it with.

Both runtimes get the same thread count; timed runs alternate between them after warm-up, so background
load on a shared machine hits both alike. Prints markdown tables (medians of ``--runs`` runs, ratio =
PyTorch / ONNX Runtime, > 1 means ONNX Runtime is faster).

    python benchmarks/export_speed.py --update-readme       # 1216x1920, all variants, 5 runs
    python benchmarks/export_speed.py --height 784 --width 800 --runs 3 --variants mobilenetv3
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from models import update_readme  # noqa: E402

from semshare.export.verify import cpu_session  # noqa: E402
from semshare.models import list_models  # noqa: E402

VARIANTS = tuple(list_models())


def machine() -> str:
    from semshare.bench.conditions import cpu_model

    return f"{os.cpu_count()}-core {platform.machine()}, {cpu_model() or 'unknown CPU'}"


def timed(fn, runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def alternate(fns: dict, runs: int, warmup: int) -> dict[str, list[float]]:
    """Warm each up, then time them in turn ``runs`` times: {name: [seconds, ...]}."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(runs):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[k].append(time.perf_counter() - t)
    return times


def bench_variant(variant: str, height: int, width: int, runs: int, warmup: int, threads: int, workdir: Path):
    from semshare.export import export_onnx
    from semshare.export import onnx as ex

    model, _ = ex.build_model(variant, None, height, width)
    ckpt = workdir / f"{variant}.pth"
    torch.save(model.state_dict(), ckpt)  # same weights in both runtimes
    path = workdir / f"{variant}.onnx"
    t = time.perf_counter()
    export_onnx(variant, path, checkpoint=ckpt, target="onnx", height=height, width=width, verify=False)
    export_s = time.perf_counter() - t
    names, inputs = ex.example_inputs(model, height, width, 1, False)
    sess = cpu_session(onnx.load(str(path)), threads)
    feeds = {n: x.numpy() for n, x in zip(names, inputs, strict=True)}

    shapes = []
    corr = getattr(getattr(model, "flow_Network", None), "corr", None)
    hook = corr.register_forward_hook(lambda m, i, o: shapes.append(tuple(i[0].shape))) if corr is not None else None

    def run_torch():
        with torch.inference_mode():
            model(*inputs)

    run_torch()
    if hook is not None:
        hook.remove()
    times = alternate({"torch": run_torch, "ort": lambda: sess.run(None, feeds)}, runs, warmup)
    return times, export_s, shapes


def bench_correlation(shape: tuple[int, ...], runs: int, warmup: int, threads: int):
    import io

    from semshare.export.lowering import lower_ops
    from semshare.ops import SpatialCorrelation, spatial_correlation

    x1, x2 = torch.randn(shape), torch.randn(shape)
    buf = io.BytesIO()
    torch.onnx.export(lower_ops(SpatialCorrelation(patch_size=9).eval(), "onnx"), (x1, x2), buf, dynamo=False,
                      opset_version=17, input_names=["x1", "x2"], autograd_inlining=False)
    sess = cpu_session(onnx.load_from_string(buf.getvalue()), threads)
    feeds = {"x1": x1.numpy(), "x2": x2.numpy()}

    def run_torch():
        with torch.inference_mode():
            spatial_correlation(x1, x2, 9)

    fns = {"torch": run_torch, "ort": lambda: sess.run(None, feeds)}
    try:
        from spatial_correlation_sampler import SpatialCorrelationSampler

        sampler = SpatialCorrelationSampler(kernel_size=1, patch_size=9, stride=1, padding=0, dilation_patch=1)

        def run_sampler():
            with torch.inference_mode():
                sampler(x1, x2)

        fns["sampler"] = run_sampler
    except ImportError:
        pass
    ref = spatial_correlation(x1, x2, 9).numpy()
    err = float(np.abs(sess.run(None, feeds)[0] - ref).max())
    return alternate(fns, runs, warmup), err


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--height", type=int, default=1216)
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="for both runtimes (default: all cores)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--update-readme", action="store_true", help="rewrite this script's section of benchmarks/README.md")
    args = p.parse_args(argv)
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    import onnxruntime

    import semshare

    lines: list[str] = []

    def out(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    out(f"Machine: {machine()}; date: {datetime.date.today().isoformat()}; python {platform.python_version()}, "
          f"semshare {semshare.__version__}, torch {torch.__version__}, onnxruntime {onnxruntime.__version__}, "
          f"onnx {onnx.__version__}; threads {args.threads} (both runtimes); input {args.height}x{args.width}, "
          f"batch 1, fp32, random weights; median of {args.runs} alternating runs after {args.warmup} warm-up; "
          f"1-min load average at start {os.getloadavg()[0]:.1f}")
    out()
    out("| variant | PyTorch eager (s) | ONNX Runtime, target onnx (s) | ratio | export (s) |")
    out("|---|---:|---:|---:|---:|")
    corr_shapes: list[tuple[int, ...]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for v in args.variants:
            times, export_s, shapes = bench_variant(v, args.height, args.width, args.runs, args.warmup,
                                                    args.threads, Path(tmp))
            t, o = statistics.median(times["torch"]), statistics.median(times["ort"])
            out(f"| {v} | {t:.3f} | {o:.3f} | {t / o:.2f}x | {export_s:.1f} |")
            corr_shapes += [s for s in shapes if s not in corr_shapes]
    if corr_shapes:
        out()
        out("SpatialCorrelation alone (patch 9), at the largest shapes the models call it with:")
        out()
        out("| input (B, C, H, W) | PyTorch reference (ms) | ONNX decomposition in ORT (ms) | ratio | "
            "spatial-correlation-sampler (ms) | ORT max abs err |")
        out("|---|---:|---:|---:|---:|---:|")
        for shape in sorted(corr_shapes, key=lambda s: -s[1] * s[2] * s[3])[:4]:
            times, err = bench_correlation(shape, max(args.runs, 5), args.warmup, args.threads)
            t, o = 1e3 * statistics.median(times["torch"]), 1e3 * statistics.median(times["ort"])
            s = f"{1e3 * statistics.median(times['sampler']):.1f}" if "sampler" in times else "not installed"
            out(f"| {shape} | {t:.1f} | {o:.1f} | {t / o:.2f}x | {s} | {err:.1e} |")
    out(f"\n1-min load average at the end {os.getloadavg()[0]:.1f}.")
    if args.update_readme:
        update_readme("export_speed.py", "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
