"""Export verification on realistic weights, both ways: the measured tables of docs/verification.md, in one run.

1. **Float noise passes.** ``semshare export`` (the CLI, verification on) of every variant at each size for both
   targets, each with the tests' realistic-weight checkpoint (``tests/conftest.py`` ``realistic_checkpoint``:
   BatchNorm statistics calibrated at that size on sample pair 02450, affine parameters perturbed by 0.1,
   unit-variance PWC-Net), verified on the held-out pair 21000 (``--verify-pair``; its synthetic stand-in,
   ``camera_pair``, when the shared data is absent). Per export: exit code, time, the worst output's max |err| / max |reference| and the
   margin-filtered argmax agreement.
2. **The float32 noise floor.** The same ONNX Runtime float32 outputs against the PyTorch model in float64 (only
   float32 rounding differs), smallest size.
3. **Bugs fail.** Every mutation of ``tests/test_verify.py`` (``MUTATIONS``) applied to the PyTorch reference of
   the shared-semantics variants, smallest size, judged against the unmutated ``onnx``-target export by the same
   rule (:data:`semshare.export.verify.EXPORT_TOLERANCE`).

    python benchmarks/verification.py --update-docs
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1] / "tests"))

from export_speed import machine  # noqa: E402
from models import ROOT, update_readme  # noqa: E402

PAIRS = Path(os.environ.get("SEMSHARE_SHARED_DATA", ROOT.parent / "shared" / "data")) / "rig_samples" / "pairs"
VERIFY_PAIR = "21000"
SEMSHARE = [sys.executable, "-m", "semshare"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pct(x: float) -> str:
    return "-" if x != x else f"{100 * x:.3f} %"


def worst(reference, actual) -> float:
    """The worst output's max |actual - reference| / max |reference|."""
    import numpy as np

    return max(float(np.abs(a.astype(np.float64) - r).max() / np.abs(r).max())
               for r, a in zip(reference, actual, strict=True))


def export_row(variant: str, target: str, size: tuple[int, int], ckpt: Path, out: Path) -> tuple[str, bool]:
    cmd = SEMSHARE + ["export", variant, "-c", str(ckpt), "-o", str(out), "--target", target,
                      "--height", str(size[0]), "--width", str(size[1])]
    if PAIRS.is_dir():
        cmd += ["--verify-pair", str(PAIRS / f"fov120_{VERIFY_PAIR}.jpg")]
    t = time.perf_counter()
    res = subprocess.run(cmd, capture_output=True, text=True)
    took = time.perf_counter() - t
    if res.returncode != 0:
        err = (res.stderr.strip().splitlines() or ["?"])[-1]
        return f"| {variant} | {size[0]}x{size[1]} | {target} | {res.returncode} | {took:.0f} s | - | - | - | {err} |", False
    ver = json.loads(out.with_suffix(".json").read_text())["verification"]
    cells = [(o["rel_err"], o["reference_abs_max"], o["margin_agreement"]) for o in ver["outputs"]]
    absmax = " / ".join(f"{c[1]:.3g}" for c in cells)
    agree = " / ".join(pct(c[2]) for c in cells)
    verdict = "verified" if ver["ok"] else "refused"
    return (f"| {variant} | {size[0]}x{size[1]} | {target} | {res.returncode} | {took:.0f} s | {max(c[0] for c in cells):.2e} | "
            f"{absmax} | {agree} | {verdict} |"), ver["ok"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="784x800,1216x1920")
    p.add_argument("--variants", default="mobilenetv3,mobilenetv3_loosely,mobilenetv3_tightly")
    p.add_argument("--update-docs", action="store_true", help="rewrite the tables of docs/verification.md")
    args = p.parse_args(argv)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    variants = args.variants.split(",")
    warnings.simplefilter("ignore")

    import onnx
    import onnxruntime
    import torch
    from test_verify import MUTATIONS, mutated

    from conftest import camera_pair, realistic, realistic_checkpoint
    from semshare.export.graph import with_reference_ops
    from semshare.export.onnx import OUTPUT_NAMES
    from semshare.export.verify import EXPORT_TOLERANCE, compare, run_onnxruntime

    pair_note = f"pair {VERIFY_PAIR} (held out)" if PAIRS.is_dir() else "the synthetic pair"
    head = (f"ONNX Runtime CPU {onnxruntime.__version__}, torch {torch.__version__}; {machine()}; "
            f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
            f"`python benchmarks/verification.py --sizes {args.sizes} --variants {args.variants}`. "
            f"Verified on {pair_note}; tolerance: {EXPORT_TOLERANCE.describe()}.\n\n")
    exports = ["| variant | input | target | exit | time | worst max abs err / max abs ref | max abs ref (120 / 60) | "
               "agree margin (120 / 60) | result |", "|---|---|---|---:|---:|---:|---|---|---|"]
    floor = ["| variant | ORT float32 vs PyTorch float32 | ORT float32 vs PyTorch float64 | PyTorch float32 vs float64 |",
             "|---|---:|---:|---:|"]
    mutations = ["| variant | mutation | worst max abs err / max abs ref | x tolerance | agree margin (120 / 60) | "
                 "result |", "|---|---|---:|---:|---|---|"]
    all_ok = True
    with tempfile.TemporaryDirectory(prefix="semshare-verification-") as tmp:
        tmp = Path(tmp)
        for size in sizes:
            inputs = camera_pair(size, VERIFY_PAIR)
            feeds = {"img120": inputs[0].numpy(), "img60": inputs[1].numpy()}
            for variant in variants:
                log(f"{variant} {size[0]}x{size[1]}")
                ckpt, model = realistic_checkpoint(variant, tmp, size), realistic(variant, size)
                for target in ("tensorrt", "onnx"):
                    out = tmp / f"{variant}_{size[0]}x{size[1]}_{target}.onnx"
                    row, ok = export_row(variant, target, size, ckpt, out)
                    log(row)
                    exports.append(row)
                    all_ok &= ok
                if size != sizes[0] or not ok:
                    continue
                ort = run_onnxruntime(with_reference_ops(onnx.load(str(out))), feeds)
                with torch.inference_mode():
                    ref32 = [t.numpy() for t in model(*inputs)]
                    ref64 = [t.numpy() for t in copy.deepcopy(model).double()(*[t.double() for t in inputs])]

                floor.append(f"| {variant} | {worst(ref32, ort):.2e} | {worst(ref64, ort):.2e} | "
                             f"{worst(ref64, ref32):.2e} |")
                if not hasattr(model, "flow_Network"):
                    continue
                for name in MUTATIONS:
                    with mutated(model, name), torch.inference_mode():
                        wrong = [t.numpy() for t in model(*inputs)]
                    c = compare(list(OUTPUT_NAMES), wrong, ort, "ort", reference_name=f"PyTorch with {name}")
                    rel = max(o.rel_err for o in c.outputs)
                    agree = " / ".join(pct(o.margin_agreement) for o in c.outputs)
                    mutations.append(f"| {variant} | {name} | {rel:.2e} | {rel / EXPORT_TOLERANCE.rtol:.1f} | {agree} | "
                                     f"{'caught' if not c.ok else 'MISSED'} |")
                    all_ok &= not c.ok
                    log(mutations[-1])
    text = head + "\n".join(["Exports (`semshare export`, verification on):", "", *exports, "",
                             f"Float32 noise floor, {sizes[0][0]}x{sizes[0][1]} (worst output's max |err| / max |reference|):",
                             "", *floor, "",
                             f"Mutations of the PyTorch reference against the unmutated `onnx` export, {sizes[0][0]}x{sizes[0][1]}:",
                             "", *mutations]) + "\n"
    print(text)
    if args.update_docs:
        update_readme("verification.py", text, ROOT / "docs" / "verification.md")
    return 0 if all_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
