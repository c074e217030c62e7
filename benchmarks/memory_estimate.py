"""Peak memory of infer (a torch forward) and export (trace + ONNX Runtime verification) per variant and size,
against the estimate semshare.validate uses to refuse a run that would not fit. Each run is its own process
(peak RSS from ``ru_maxrss``), one thread.

    python benchmarks/memory_estimate.py [--sizes 784x800,1216x1920] [--tasks infer,export]

The estimate must stay above every measured peak (it refuses runs, so it may not under-count), and not far above.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

CHILD = """
import resource, sys, tempfile
task, variant, h, w = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
import torch
torch.set_num_threads(1)
if task == "infer":
    from semshare.models import create_model
    m = create_model(variant, input_size=(h, w)).eval()
    x = torch.randn(1, 3, h, w)
    with torch.inference_mode():
        m(x, x.clone())
else:
    from semshare.export import export_onnx
    export_onnx(variant, tempfile.mkdtemp() + "/m.onnx", target="onnx", height=h, width=w, verify=True)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def main() -> None:
    from semshare.models import list_models
    from semshare.validate import estimate_bytes

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="784x800,1216x1920")
    ap.add_argument("--tasks", default="infer,export")
    args = ap.parse_args()
    print("| task | variant | size | batch | measured peak (MiB) | estimate (MiB) | estimate / peak |")
    print("|---|---|---|---:|---:|---:|---:|")
    for task in args.tasks.split(","):
        for size in args.sizes.split(","):
            h, w = map(int, size.split("x"))
            for variant in list_models():
                out = subprocess.run([sys.executable, "-c", CHILD, task, variant, str(h), str(w)],
                                     capture_output=True, text=True, check=True)
                peak = int(out.stdout.split()[-1])
                est = estimate_bytes(task, h, w)
                print(f"| {task} | {variant} | {h}x{w} | 1 | {peak / 2**20:.0f} | {est / 2**20:.0f} | {est / peak:.2f} |",
                      flush=True)


if __name__ == "__main__":
    main()
