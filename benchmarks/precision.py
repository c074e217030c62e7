"""FP16 and INT8 accuracy of every variant on realistic weights, held-out pairs, with the INT8 sensitivity table
and the INT8/FP16 mix: the figures of docs/precision.md, in one run.

Per variant: realistic weights (:func:`semshare.models.realistic.realistic_model`: the authors' initialisation,
BatchNorm statistics calibrated on sample pair 02450, affine parameters perturbed by 0.1, unit-variance PWC-Net, as
``tests/conftest.py`` ``realistic()``), a ``tensorrt``-target export, INT8 calibrated (MinMax) on the calibration share of the sample
pairs and every figure measured on the held-out ones (:func:`semshare.precision.split_pairs`) against FP32
PyTorch: the sensitivity of each layer group, the mix chosen for each ``--min-agreement``, the calibration
methods, and the accuracy table (ONNX Runtime CPU; plugin nodes through their reference ops).

    python benchmarks/precision.py --update-docs                    # 784x800, all variants
    python benchmarks/precision.py --height 1216 --width 1920 --variants mobilenetv3_tightly --update-docs
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path

import onnx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from export_speed import machine  # noqa: E402
from models import ROOT, update_readme  # noqa: E402

from semshare.errors import SemshareError  # noqa: E402
from semshare.models import list_models  # noqa: E402

PAIRS = Path(os.environ.get("SEMSHARE_SHARED_DATA", ROOT.parent / "shared" / "data")) / "rig_samples" / "pairs"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def pct(x: float) -> str:
    return "-" if x != x else f"{100 * x:.3f} %"


def run_variant(variant: str, size: tuple[int, int], targets: list[float], min_share: float, pairs_dir: Path,
                tmp: Path, with_methods: bool = True) -> str:
    from semshare.data import load_pair
    from semshare.engine.build import find_calibration_pairs
    from semshare.export import export_onnx
    from semshare.models.realistic import realistic_model
    from semshare.precision import (
        Scorer,
        accuracy_report,
        calibrate,
        choose_mix,
        feeds_for,
        sensitivity,
        split_pairs,
        to_float16,
    )
    from semshare.precision.prepare import torch_reference
    from semshare.precision.sensitivity import MixError, compare_methods, mix_state

    t0 = time.perf_counter()
    weights_pair = load_pair(pairs_dir / "fov120_02450.jpg", size)
    ckpt = tmp / f"{variant}.pth"
    torch.save(realistic_model(variant, weights_pair, perturb=0.1, input_size=size).state_dict(), ckpt)
    path = tmp / f"{variant}.onnx"
    export_onnx(variant, path, checkpoint=ckpt, target="tensorrt", height=size[0], width=size[1], verify=False)
    model = onnx.load(str(path))
    calib, val = split_pairs(find_calibration_pairs(pairs_dir, 32))
    reference = torch_reference(variant, ckpt, size)
    score = Scorer(val, reference, size)
    feeds = feeds_for(model, calib, size)
    cal = calibrate(model, feeds, "MinMax")
    rows = sensitivity(cal, score, log)
    mixes, graphs = {}, {"fp16": to_float16(model)}
    for t in targets:
        try:
            graph, mixes[t] = choose_mix(cal, score, t, min_share, "fp16", log, rows)
            graphs[f"int8 mix {100 * t:g} %"] = graph
        except MixError as exc:
            mixes[t] = exc.mix
            log(f"refused: {exc}")
    graphs["int8 all Convs"] = cal.graph((), "fp16")
    methods = compare_methods(model, feeds, cal, mixes[targets[0]], score, log) if with_methods else []
    report = accuracy_report(graphs, val, reference, size, variant, "FP32 PyTorch", log=log)
    log(report.table())

    out = [f"### {variant}, {size[0]}x{size[1]}", "",
           f"Calibrated on {', '.join(p.key for p in calib)}; every figure on the held-out {', '.join(p.key for p in val)} "
           f"against FP32 PyTorch; {cal.method} calibration; {len(cal.convs)} Convs in "
           f"{len({r.group for r in rows})} layer groups; {time.perf_counter() - t0:.0f} s.", "",
           "| precision | camera | agree all | agree margin | margin px | max abs err | mean abs err | mIoU | mIoU FP32 |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for p in report.precisions:
        for c in p.cameras:
            miou = "-" if c.miou is None else f"{100 * c.miou:.2f}"
            mref = "-" if c.miou_reference is None else f"{100 * c.miou_reference:.2f}"
            out.append(f"| {p.precision} | {c.camera} | {pct(c.agreement)} | {pct(c.agreement_margin)} | "
                       f"{100 * c.margin_pixels:.1f} % | {c.max_abs_err:.3g} | {c.mean_abs_err:.3g} | {miou} | {mref} |")
    out += ["", "Mixes (FP16 groups compute in float16, every other Conv INT8; margin-filtered agreement):", "",
            "| --min-agreement | FP16 groups | INT8 Convs | camera 120 | camera 60 | result |", "|---:|---|---:|---:|---:|---|"]
    for t, mix in mixes.items():
        c = mix.chosen
        share = f"{c.int8_convs}/{mix.total_convs} ({100 * c.int8_convs / mix.total_convs:.0f} %)"
        out.append(f"| {100 * t:g} % | {', '.join(c.fp16_groups) or 'none'} | {share} | {pct(c.agreement_120)} | "
                   f"{pct(c.agreement_60)} | {'met' if c.meets else 'refused (best mix shown)'} |")
    out += ["", "Sensitivity: each layer group alone INT8, everything else FP32 (most sensitive first):", "",
            "| layer group | Convs | camera 120 | camera 60 | mean abs err | " + " | ".join(
                f"mix {100 * t:g} %" for t in targets) + " |",
            "|---|---:|---:|---:|---:|" + "---|" * len(targets)]
    for r in rows:
        cells = [mix_state(r.group, mix.chosen.fp16_groups) for mix in mixes.values()]
        out.append(f"| {r.group} | {r.convs} | {pct(r.agreement_120)} | {pct(r.agreement_60)} | {r.mean_abs_err:.3g} | "
                   + " | ".join(cells) + " |")
    if not methods:
        return "\n".join(out) + "\n"
    out += ["", f"Calibration methods (same pairs; the FP16 groups of the {100 * targets[0]:g} % mix):", "",
            "| method | all INT8, camera 120 | camera 60 | mix, camera 120 | camera 60 |", "|---|---:|---:|---:|---:|"]
    for m in methods:
        out.append(f"| {m['method']} | {pct(m['all_int8'][0])} | {pct(m['all_int8'][1])} | {pct(m['mix'][0])} | "
                   f"{pct(m['mix'][1])} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--height", type=int, default=784)
    p.add_argument("--width", type=int, default=800)
    p.add_argument("--variants", default=",".join(list_models()))
    p.add_argument("--min-agreement", default="0.99,0.95", help="comma-separated targets, the first is the default's")
    p.add_argument("--min-int8-share", type=float, default=0.5)
    p.add_argument("--pairs", type=Path, default=PAIRS, help="sample pairs (fov120_N/fov60_N, 02450 among them)")
    p.add_argument("--no-methods", action="store_true", help="skip the calibration-method comparison")
    p.add_argument("--update-docs", action="store_true", help="rewrite this size's section of docs/precision.md")
    args = p.parse_args(argv)
    size = (args.height, args.width)
    targets = [float(t) for t in args.min_agreement.split(",")]
    import onnxruntime

    head = (f"Input {size[0]}x{size[1]}, ONNX Runtime CPU {onnxruntime.__version__}, torch {torch.__version__}; "
            f"{machine()}; {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC; "
            f"`python benchmarks/precision.py --height {size[0]} --width {size[1]} --variants {args.variants} "
            f"--min-agreement {args.min_agreement} --min-int8-share {args.min_int8_share:g}"
            + (" --no-methods" if args.no_methods else "") + "`.\n\n")
    sections = []
    with tempfile.TemporaryDirectory(prefix="semshare-precision-") as tmp:
        for variant in args.variants.split(","):
            try:
                sections.append(run_variant(variant, size, targets, args.min_int8_share, args.pairs, Path(tmp),
                                            not args.no_methods))
            except SemshareError as exc:
                sections.append(f"### {variant}, {size[0]}x{size[1]}\n\nfailed: {exc}\n")
            print(sections[-1], flush=True)
    if args.update_docs:
        update_readme(f"precision.py:{size[0]}x{size[1]}", head + "\n".join(sections), ROOT / "docs" / "precision.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
