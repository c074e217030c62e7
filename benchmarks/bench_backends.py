"""PyTorch against ONNX Runtime on this machine's CPU, for every variant: ``semshare bench`` in a loop.

    python benchmarks/bench_backends.py [--height 1216 --width 1920] [--warmup 1] [--iterations 5]
                                        [--backends torch,onnxruntime] [--json out.json] [--update-readme]

Each variant is exported (target onnx, seeded random weights shared with the torch backend) into a temp
folder, then benchmarked with ``--check``; the table gives the median/p90 latency, pairs/s, peak host memory
and the speed-up against the first backend. On a GPU machine pass e.g.
``--backends torch:cuda,onnxruntime:cuda,onnxruntime:tensorrt`` (the card is named in the machine line).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from models import update_readme  # noqa: E402

from semshare.models import list_models  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--height", type=int, default=1216)
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--backends", default="torch,onnxruntime")
    p.add_argument("--variants", default=",".join(list_models()))
    p.add_argument("--json", type=Path)
    p.add_argument("--update-readme", action="store_true")
    args = p.parse_args(argv)

    from semshare.bench import BenchConfig, run_bench

    reports = []
    with tempfile.TemporaryDirectory(prefix="semshare-bench-backends-") as tmp:
        for v in args.variants.split(","):
            print(f"{v}: export + bench ...", file=sys.stderr, flush=True)
            cfg = BenchConfig(backends=args.backends.split(","), variant=v, height=args.height, width=args.width,
                              warmup=args.warmup, iterations=args.iterations, threads=args.threads, check=True,
                              workdir=Path(tmp) / v)
            reports.append(run_bench(cfg, log=lambda m: print(m, file=sys.stderr)))
    cond = reports[-1]["conditions"]
    ver = cond["versions"]
    shared = any("busy" in w for r in reports for w in r["warnings"])
    lines = [f"Input {args.height}x{args.width}, batch 1, fp32, synthetic pair, warm-up {args.warmup}, "
             f"{args.iterations} timed iterations per backend, seeded random weights. Machine: {cond['cpu_model']} "
             f"({cond['cpu_count']} logical CPUs), GPU {cond['gpu'] or 'none'}; torch {ver['torch']}, onnxruntime "
             f"{ver['onnxruntime']}, tensorrt {ver['tensorrt'] or 'not installed'}; {time.strftime('%Y-%m-%d %H:%M %Z')}.", ""]
    if shared:
        lines += ["The CPU was shared with other jobs while measuring (load above the core count): absolute "
                  "times are pessimistic; the ratios within a row come from the same run.", ""]
    lines += ["| variant | backend | median ms | p90 ms | min ms | max ms | pairs/s | host peak MB | speed-up vs first | check |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in reports:
        checks = {c["backend"]: c for c in r["check"] or []}
        ratios = {x["backend"]: x for x in r["ratios"]}
        for e in r["backends"]:
            lat = e["latency_ms"]
            c = checks.get(e["name"])
            cs = "reference" if c is None else (f"max err {c['max_abs_error']:.1e}, argmax {100 * c['argmax_agreement']:.2f}%")
            lines.append(f"| {r['config']['variant']} | {e['name']} | {lat['median']:.0f} | {lat['p90']:.0f} | "
                         f"{lat['min']:.0f} | {lat['max']:.0f} | {e['fps']:.2f} | {e['memory']['host_peak_rss_mb']:.0f} | "
                         f"{ratios[e['name']]['speedup_median']:.2f}x | {cs} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.json:
        args.json.write_text(json.dumps(reports, indent=2))
    if args.update_readme:
        update_readme("bench_backends.py", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
