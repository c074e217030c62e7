"""``semshare infer``'s pipeline throughput against the model's own latency from ``semshare bench``, one run.

    python benchmarks/infer_throughput.py [--pairs 8] [--rounds 2] [--height 1216 --width 1920] [--update-readme]

The tightly-coupled model with realistic weights (:func:`semshare.models.realistic.realistic_model`) is
exported (target onnx) into a temp folder; ``--pairs`` camera pairs are written there (the authors' pairs from
../shared/data, cycled, else synthetic pairs). Each round runs ``semshare bench`` on ONNX Runtime CPU (its
median latency per pair implies a throughput), then ``run_infer`` over the pairs into an empty folder (reading,
preprocessing, model, masks and overlays written as PNGs, overlapped by :meth:`Segmenter.stream`). Between the
two, the runtime's own session (ONNX Runtime with idle threads sleeping, ``Segmenter.load``'s default, where
bench's spin) is timed alone with bench's ``measure``, so the overlap is also judged against the very session
infer ran. Rounds alternate so that all three see the same machine load; the table gives every round.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from models import update_readme  # noqa: E402

VARIANT = "mobilenetv3_tightly"
SHARED_DATA = Path(os.environ.get("SEMSHARE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
SHARED_PAIRS = SHARED_DATA / "rig_samples" / "pairs"


def write_pairs(folder: Path, n: int) -> str:
    """``n`` pairs fov120_0000i/fov60_0000i in ``folder``; returns what they are."""
    from semshare.data import save_image_atomic, synthetic_pair

    folder.mkdir(parents=True, exist_ok=True)
    real = sorted(SHARED_PAIRS.glob("fov120_*.jpg")) if SHARED_PAIRS.is_dir() else []
    for i in range(n):
        key = f"{i:05d}"
        if real:
            src = real[i % len(real)]
            shutil.copy(src, folder / f"fov120_{key}.jpg")
            shutil.copy(src.with_name(src.name.replace("fov120_", "fov60_")), folder / f"fov60_{key}.jpg")
        else:
            im120, im60 = synthetic_pair(seed=i)
            save_image_atomic(im120, folder / f"fov120_{key}.png")
            save_image_atomic(im60, folder / f"fov60_{key}.png")
    return f"the {len(real)} authors' pairs (JPEG) cycled" if real else "synthetic pairs (PNG)"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--height", type=int, default=1216)
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--pairs", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--update-readme", action="store_true", help="rewrite this script's section of benchmarks/README.md")
    args = p.parse_args(argv)

    import torch

    from semshare.bench import BenchConfig, run_bench
    from semshare.bench.conditions import cpu_model
    from semshare.bench.timing import measure, summarize
    from semshare.data import load_pair, read_pair
    from semshare.export import export_onnx
    from semshare.infer import run_infer
    from semshare.models.realistic import realistic_model
    from semshare.runtime import Segmenter

    size = (args.height, args.width)
    rows = []
    with tempfile.TemporaryDirectory(prefix="semshare-infer-throughput-") as tmp:
        tmp = Path(tmp)
        pairs_note = write_pairs(tmp / "pairs", args.pairs)
        first = sorted((tmp / "pairs").glob("fov120_*"))[0]
        print("realistic weights + export ...", file=sys.stderr, flush=True)
        ckpt = tmp / "tightly_realistic.pth"
        model = realistic_model(VARIANT, load_pair(first, size), perturb=0.1, input_size=size)
        torch.save(model.state_dict(), ckpt)
        onnx = tmp / "tightly.onnx"
        export_onnx(VARIANT, onnx, checkpoint=ckpt, target="onnx", height=args.height, width=args.width, verify=False)
        with Segmenter.load(onnx) as seg:
            for _ in range(args.warmup):  # as bench warms up: the first ONNX Runtime call allocates
                seg(*read_pair(first))
            for r in range(args.rounds):
                print(f"round {r + 1}: bench ...", file=sys.stderr, flush=True)
                report = run_bench(BenchConfig(backends=["onnxruntime"], onnx=onnx, pairs=tmp / "pairs",
                                               warmup=args.warmup, iterations=args.pairs))
                entry = report["backends"][0]
                print(f"round {r + 1}: the runtime's session alone ...", file=sys.stderr, flush=True)
                prepared = seg.prepare(*read_pair(first))
                seg.backend.set_inputs(prepared.img120, prepared.img60)
                alone = summarize(measure(seg.backend.step, args.warmup, args.pairs).seconds)
                print(f"round {r + 1}: infer ...", file=sys.stderr, flush=True)
                out = tmp / f"out{r}"
                res = run_infer(tmp / "pairs", out, seg, overlays=True)
                assert len(res.done) == args.pairs and not res.problems, res.problems
                bench_ms = entry["latency_ms"]["median"]
                rows.append({"round": r + 1, "bench_ms": bench_ms, "bench_rate": 1000.0 / bench_ms,
                             "alone_ms": alone.median, "alone_rate": 1000.0 / alone.median,
                             "infer_rate": res.pairs_per_second, "infer_model_ms": res.model_seconds * 1e3,
                             "seconds": res.seconds, "load": report["conditions"].get("load_average_before")})
        threads = entry["info"].get("threads")
    ratios = [row["infer_rate"] / row["bench_rate"] for row in rows]
    own = [row["infer_rate"] / row["alone_rate"] for row in rows]
    lines = [f"{VARIANT}, realistic weights, {args.height}x{args.width}, ONNX Runtime CPU fp32 (threads: {threads}), "
             f"{args.pairs} pairs ({pairs_note}), masks + overlays written as PNG, warm-up {args.warmup}. "
             f"Machine: {cpu_model()}, 2 cores, shared with other jobs while measuring (absolute times are "
             f"pessimistic; each round's three measurements ran back to back); {time.strftime('%Y-%m-%d %H:%M %Z')}.", "",
             "bench: `semshare bench -b onnxruntime` (its own session, idle threads spinning). session alone: the "
             "runtime's session (idle threads sleeping), its `step` timed by bench's `measure` with nothing else "
             "running. infer: `run_infer` end to end, and its model calls' median while the pipeline ran.", "",
             "| round | bench median ms/pair | session alone median ms/pair | infer pairs/s | infer's model median ms/pair "
             "| infer / bench-implied pairs/s | infer / session-alone-implied pairs/s |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for row, ratio, mine in zip(rows, ratios, own, strict=True):
        lines.append(f"| {row['round']} | {row['bench_ms']:.0f} | {row['alone_ms']:.0f} | {row['infer_rate']:.3f} | "
                     f"{row['infer_model_ms']:.0f} | {100 * ratio:.1f} % | {100 * mine:.1f} % |")
    lines += ["", f"Median over the rounds: infer reaches {100 * statistics.median(ratios):.1f} % of the throughput "
              f"implied by bench's median latency (target >= 90 %), and {100 * statistics.median(own):.1f} % of "
              "the one implied by the runtime's own session timed alone (what the overlap leaves of the model's rate)."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.update_readme:
        update_readme("infer_throughput.py", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
