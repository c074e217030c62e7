"""INT8 against FP32 in ONNX Runtime on this CPU: the ``onnxruntime:cpu:int8`` bench backend, timed in alternation.

    python benchmarks/int8_cpu.py [--variants mobilenetv3_tightly] [--height 1216 --width 1920] [--threads 2]
                                  [--rounds 10] [--warmup 2] [--json run.json] [--update-readme]
    python benchmarks/int8_cpu.py --render run1.json run2.json --update-readme   # one table from saved runs

Per variant: realistic weights (:func:`semshare.models.realistic.realistic_model`, BatchNorm statistics
calibrated on pair 02450, affine parameters perturbed by 0.1 as in the tests) saved as a checkpoint and exported
with ``--target onnx``; the FP32 export and its CPU INT8 graph (:func:`semshare.precision.ort_cpu.to_int8_ort_cpu`,
calibrated on pairs 00001 and 02450) loaded side by side as the bench's ``onnxruntime`` and
``onnxruntime:cpu:int8`` backends, then timed in alternation (FP32, INT8, FP32, INT8, ...) on the held-out pair
21000, so a busy machine slows both alike; medians and their ratio come from the same rounds. Agreement is
argmax agreement with FP32 on the held-out pair, margin-filtered as in :mod:`semshare.precision.report`; beside
it, FP32's own agreement with itself under Gaussian input noise of one grey level (the weights' sensitivity).
Also printed: what ONNX Runtime runs (its optimized model: QLinearConv and the unfused Q/DQ nodes) and a
1024x1024x1024 integer GEMM in the three signedness forms against float32 (why the graph is U8S8).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from models import update_readme  # noqa: E402

PAIRS = Path(os.environ.get("SEMSHARE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")) / "rig_samples" / "pairs"
BN_PAIR, CALIB, HELD_OUT = "02450", ("00001", "02450"), "21000"


def gemm_table(threads: int) -> list[str]:
    """One 1024^3 product: float32 MatMul against MatMulInteger as U8S8, S8S8 and U8U8 (ONNX Runtime CPU)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    n = 1024
    rng = np.random.default_rng(0)

    def timed(node, x, w, extra, out_type):
        g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", helper.np_dtype_to_tensor_dtype(x.dtype), list(x.shape))],
                              [helper.make_tensor_value_info("y", out_type, None)], [numpy_helper.from_array(w, "w"), *extra])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString(),
                                    opts, providers=["CPUExecutionProvider"])
        sess.run(None, {"x": x})
        ts = []
        for _ in range(10):
            t0 = time.perf_counter()
            sess.run(None, {"x": x})
            ts.append(time.perf_counter() - t0)
        return min(ts)  # the kernel's speed: the least disturbed of the runs on a shared machine

    rows = [("float32 MatMul", timed(helper.make_node("MatMul", ["x", "w"], ["y"]), rng.standard_normal((n, n), np.float32),
                                     rng.standard_normal((n, n), np.float32), [], TensorProto.FLOAT))]
    for name, xt, wt in (("U8S8", np.uint8, np.int8), ("S8S8", np.int8, np.int8), ("U8U8", np.uint8, np.uint8)):
        node = helper.make_node("MatMulInteger", ["x", "w", "zx"], ["y"])
        rows.append((f"{name} MatMulInteger", timed(node, rng.integers(0, 100, (n, n)).astype(xt), rng.integers(0, 100, (n, n)).astype(wt),
                                                     [numpy_helper.from_array(np.array(1, xt), "zx")], TensorProto.INT32)))
    ops = 2 * n**3
    lines = [f"1024 x 1024 x 1024 product, ONNX Runtime CPU, {threads} thread(s), best of 10:", "",
             "| kernel | ms | G(FL)OP/s | vs float32 |", "|---|---:|---:|---:|"]
    for name, sec in rows:
        lines.append(f"| {name} | {1e3 * sec:.1f} | {ops / sec / 1e9:.0f} | {rows[0][1] / sec:.1f}x |")
    return lines


def measure_variant(variant: str, size: tuple[int, int], threads: int, rounds: int, warmup: int, work: Path) -> dict:
    import onnx
    import torch

    from semshare.bench.compare import compare
    from semshare.data import find_pairs, load_pair
    from semshare.export import export_onnx
    from semshare.models.realistic import realistic_model
    from semshare.runtime.backends import BackendSpec, Source, make_backend

    pairs = {p.key: p for p in find_pairs(PAIRS)[0]}
    model = realistic_model(variant, load_pair(pairs[BN_PAIR].path120, size), perturb=0.1, input_size=size)
    ckpt = work / f"{variant}.pth"
    torch.save(model.state_dict(), ckpt)
    del model
    onnx_path = work / f"{variant}.onnx"
    export_onnx(variant, onnx_path, checkpoint=ckpt, target="onnx", height=size[0], width=size[1], verify=False)
    src = Source(variant=variant, onnx=onnx_path, size=size, threads=threads, calib_pairs=[pairs[k] for k in CALIB])
    img120, img60 = (t.numpy() for t in load_pair(pairs[HELD_OUT].path120, size))
    t0 = time.perf_counter()
    with make_backend(BackendSpec.parse("onnxruntime:cpu:fp32"), src) as fp32, \
            make_backend(BackendSpec.parse("onnxruntime:cpu:int8"), src) as int8:
        prep_s = time.perf_counter() - t0
        backends = {"fp32": fp32, "int8": int8}
        for b in backends.values():
            b.set_inputs(img120, img60)
        for _ in range(warmup):
            for b in backends.values():
                b.step()
        times: dict[str, list[float]] = {k: [] for k in backends}
        load_before = os.getloadavg()[0]
        for _ in range(rounds):  # ABAB: a busy machine slows both alike
            for k, b in backends.items():
                t = time.perf_counter()
                b.step()
                times[k].append(time.perf_counter() - t)
        load_after = os.getloadavg()[0]
        ref, out = fp32.outputs(), int8.outputs()
        agree = compare(ref, out, "int8", "fp32", float("inf"), 0.0)
        rng = np.random.default_rng(0)
        sigma = (1 / 255) / 0.226  # one grey level in the normalised input (ImageNet std ~0.226)
        fp32.set_inputs(img120 + rng.normal(0, sigma, img120.shape).astype(np.float32),
                        img60 + rng.normal(0, sigma, img60.shape).astype(np.float32))
        fp32.step()
        noise = compare(ref, fp32.outputs(), "fp32+noise", "fp32", float("inf"), 0.0)
        kernels = int8.info["ort_kernels"]
    med = {k: float(np.median(v)) for k, v in times.items()}
    return {"variant": variant, "size": list(size), "threads": threads, "rounds": rounds, "warmup": warmup,
            "fp32_median_ms": 1e3 * med["fp32"], "int8_median_ms": 1e3 * med["int8"], "speedup": med["fp32"] / med["int8"],
            "fp32_ms": [1e3 * t for t in times["fp32"]], "int8_ms": [1e3 * t for t in times["int8"]],
            "agreement": [asdict(o) for o in agree.outputs], "noise_floor": [asdict(o) for o in noise.outputs],
            "ort_kernels": kernels, "fp32_convs": sum(n.op_type == "Conv" for n in onnx.load(str(onnx_path)).graph.node),
            "prepare_seconds": prep_s, "load_before": load_before, "load_after": load_after}


def render(runs: list[dict], gemm: list[str]) -> str:
    """The README section: one row per variant of the saved runs (``--json`` output), then the GEMM table."""
    import onnxruntime as ort

    flags = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").exists() else []
    isa = ", ".join(f for f in ("avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags) or "no AVX-512/VNNI/AMX"
    cond, first = runs[0]["conditions"], runs[0]["results"][0]
    results = [r for run in runs for r in run["results"]]
    dates = sorted({run["conditions"]["date"][:16].replace("T", " ") for run in runs})
    lines = [f"Input {first['size'][0]}x{first['size'][1]}, batch 1, `--target onnx`, realistic weights; ONNX Runtime "
             f"{ort.__version__} CPU provider, {first['threads']} intra-op threads, ORT_ENABLE_ALL. Machine: "
             f"{cond['cpu_model']} ({cond['cpu_count']} logical CPUs; {isa}); {', '.join(dates)} UTC. "
             f"Calibrated on pairs {' + '.join(CALIB)}, timed and scored on the held-out pair {HELD_OUT}; "
             f"{first['warmup']} warm-up + {first['rounds']} alternating FP32/INT8 rounds per variant.", ""]
    loads = [x for r in results for x in (r["load_before"], r["load_after"])]
    lines += [f"**The machine was loaded** (1-minute load average {min(loads):.1f}-{max(loads):.1f} on "
              f"{cond['cpu_count']} CPUs while timing: other jobs shared the cores), so absolute times are pessimistic "
              "and noisy; FP32 and INT8 ran in alternation, so the ratio of medians is the figure to read.", ""]
    lines += ["| variant | FP32 median ms | INT8 median ms | speed-up | per-round ratios | INT8 agreement 120 / 60 "
              "(margin) | all pixels 120 / 60 | FP32 + 1-grey-level noise 120 / 60 (margin) | ORT kernels (INT8) |",
              "|---|---:|---:|---:|---|---|---|---|---|"]
    for r in results:
        a, nf, k = r["agreement"], r["noise_floor"], r["ort_kernels"]
        per_round = [f / i for f, i in zip(r["fp32_ms"], r["int8_ms"], strict=True)]
        lines.append(
            f"| {r['variant']} | {r['fp32_median_ms']:.0f} | {r['int8_median_ms']:.0f} | **{r['speedup']:.2f}x** | "
            f"{min(per_round):.2f}-{max(per_round):.2f}x | "
            f"{100 * a[0]['margin_agreement']:.2f} / {100 * a[1]['margin_agreement']:.2f} % | "
            f"{100 * a[0]['argmax_agreement']:.2f} / {100 * a[1]['argmax_agreement']:.2f} % | "
            f"{100 * nf[0]['margin_agreement']:.2f} / {100 * nf[1]['margin_agreement']:.2f} % | "
            f"QLinearConv {k.get('QLinearConv', 0)} of {r['fp32_convs']} Convs, float Conv "
            f"{k.get('Conv', 0) + k.get('FusedConv', 0)}, Q {k.get('QuantizeLinear', 0)} + DQ "
            f"{k.get('DequantizeLinear', 0)} unfused |")
    return "\n".join([*lines, "", *gemm, ""]) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--variants", default="mobilenetv3_tightly")
    p.add_argument("--height", type=int, default=1216)
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=10, help="timed FP32+INT8 alternations")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--json", type=Path, help="save this run (for --render)")
    p.add_argument("--render", type=Path, nargs="+", help="measure nothing but the GEMM: tabulate saved --json runs")
    p.add_argument("--update-readme", action="store_true")
    args = p.parse_args(argv)

    from semshare.bench.conditions import collect

    if args.render:
        runs = [json.loads(path.read_text()) for path in args.render]
    else:
        run = {"conditions": collect(args.threads), "results": []}
        with tempfile.TemporaryDirectory(prefix="semshare-int8-cpu-") as tmp:
            for v in args.variants.split(","):
                print(f"{v}: realistic weights, export, INT8 preparation, {args.rounds} alternations ...",
                      file=sys.stderr, flush=True)
                run["results"].append(measure_variant(v, (args.height, args.width), args.threads, args.rounds,
                                                      args.warmup, Path(tmp)))
        if args.json:
            args.json.write_text(json.dumps(run, indent=2))
        runs = [run]
    text = render(runs, gemm_table(1))
    print(text)
    if args.update_readme:
        update_readme("int8_cpu.py", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
