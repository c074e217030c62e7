"""Baseline table: per variant, parameters, multiply-accumulates and CPU latency, with the cost split.

    python benchmarks/models.py [--height 1216 --width 1920] [--runs 5] [--warmup 1] [--threads N]
                                [--json out.json] [--update-readme]

MACs are counted with forward hooks: Conv2d (out elements x in-channels/groups x kernel area), Linear, and the
spatial correlation (B x P^2 x C x H x W). Bilinear sampling (resizes, homography and flow warps) is not counted
as MACs. The cost split groups the time spent in the model's top-level parts, measured by forward hooks in
the same runs (host clock; CPU execution is synchronous):

- backbone: ``pretrained`` (MobileNetV3, both cameras' passes) and ``head`` (LR-ASPP)
- flow: ``flow_Network`` (PWC-Net: pyramid, correlation, estimators, its internal warps)
- warps: the ``HomographyWarp`` modules between the cameras
- fusion: ``FFM_60`` and ``FFM_120``
- other: the rest of the forward (resizes, flow grids and remaps between the parts)

Latency is the median of ``--runs`` timed forwards (batch 1, after ``--warmup`` untimed ones); the hooks cost
microseconds against seconds of compute.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GROUPS = ("backbone", "flow", "warps", "fusion", "other")


def group_of(name: str) -> str | None:
    top = name.split(".")[0]
    if top in ("pretrained", "head"):
        return "backbone"
    if top == "flow_Network":
        return "flow"
    if top.startswith("warp_"):
        return "warps"
    if top.startswith("FFM_"):
        return "fusion"
    return None


def count_macs(model, x120, x60) -> dict[str, int]:
    """MACs per group from Conv2d / Linear / SpatialCorrelation hooks over one forward."""
    import torch
    from torch import nn

    from semshare.ops import SpatialCorrelation

    macs = dict.fromkeys(GROUPS, 0)
    handles = []

    def hook_for(name):
        def hook(mod, inputs, out):
            g = group_of(name) or "other"
            if isinstance(mod, nn.Conv2d):
                k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
                macs[g] += out.numel() * k
            elif isinstance(mod, nn.Linear):
                macs[g] += out.numel() * mod.in_features
            elif isinstance(mod, SpatialCorrelation):
                x1 = inputs[0]
                macs[g] += out.numel() * x1.shape[1]  # (B, P*P, H, W) outputs x C channels
        return hook

    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.Linear, SpatialCorrelation)):
            handles.append(mod.register_forward_hook(hook_for(name)))
    with torch.inference_mode():
        model(x120, x60)
    for h in handles:
        h.remove()
    return macs


def timed_runs(model, x120, x60, warmup: int, runs: int) -> tuple[list[float], dict[str, list[float]]]:
    """Per-run total seconds and per-group seconds (top-level modules timed by pre/post hooks)."""
    import torch

    spent = dict.fromkeys(GROUPS, 0.0)
    starts: dict[str, float] = {}
    handles = []
    for name, mod in model.named_children():
        g = group_of(name)
        if g is None:
            continue

        def pre(mod, args, name=name):
            starts[name] = time.perf_counter()

        def post(mod, args, out, name=name, g=g):
            spent[g] += time.perf_counter() - starts.pop(name)

        handles += [mod.register_forward_pre_hook(pre), mod.register_forward_hook(post)]
    # forward_c1 (the 60 camera's backbone pass in loosely/tightly) is a method, not a forward: time it too.
    bb = model.pretrained
    orig_c1 = bb.forward_c1

    def c1(x):
        t = time.perf_counter()
        try:
            return orig_c1(x)
        finally:
            spent["backbone"] += time.perf_counter() - t

    bb.forward_c1 = c1
    totals, split = [], {g: [] for g in GROUPS}
    try:
        with torch.inference_mode():
            for i in range(warmup + runs):
                for g in GROUPS:
                    spent[g] = 0.0
                t = time.perf_counter()
                model(x120, x60)
                total = time.perf_counter() - t
                if i >= warmup:
                    totals.append(total)
                    spent["other"] = total - sum(spent[g] for g in GROUPS if g != "other")
                    for g in GROUPS:
                        split[g].append(spent[g])
    finally:
        for h in handles:
            h.remove()
        del bb.forward_c1
    return totals, split


def measure_variant(variant: str, height: int, width: int, warmup: int, runs: int) -> dict:
    import torch

    from semshare.bench.run import load_inputs
    from semshare.models import create_model

    torch.manual_seed(0)
    model = create_model(variant).eval()
    a, b, _ = load_inputs(None, (height, width), 1)
    x120, x60 = torch.from_numpy(a), torch.from_numpy(b)
    params = sum(p.numel() for p in model.parameters())
    unused = sum(p.numel() for n, p in model.named_parameters()
                 if n.startswith("pretrained.classifier") or "FlowEstimator(Lv5)" in n or "FlowEstimator(Lv6)" in n)
    macs = count_macs(model, x120, x60)
    totals, split = timed_runs(model, x120, x60, warmup, runs)
    med = float(np.median(totals))
    return {"variant": variant, "params": params, "params_run": params - unused, "macs": macs,
            "macs_total": sum(macs.values()), "latency_ms": {"median": med * 1e3, "min": min(totals) * 1e3,
                                                              "max": max(totals) * 1e3, "runs": len(totals)},
            "split_ms": {g: float(np.median(v)) * 1e3 for g, v in split.items()}}


def machine_line(threads: int) -> str:
    from semshare.bench import conditions

    v, _ = conditions.versions()
    import os

    load = os.getloadavg()
    return (f"Machine: {conditions.cpu_model()} ({os.cpu_count()} logical CPUs), torch threads {threads}; "
            f"torch {v['torch']}, onnxruntime {v['onnxruntime']}, Python {v['python']}; "
            f"{time.strftime('%Y-%m-%d %H:%M %Z')}; 1-min load average at the end {load[0]:.1f}")


def markdown(results: list[dict], height: int, width: int, machine: str, shared: bool) -> str:
    lines = [f"Input {height}x{width}, batch 1, CPU, fp32, random weights (seed 0; latency does not depend on them). "
             f"{machine}.", ""]
    if shared:
        lines += ["The CPU was shared with other jobs while measuring: absolute times are pessimistic; compare "
                  "rows with each other.", ""]
    lines += ["| variant | params (M) | params run (M) | GMACs | median ms | min ms | max ms | runs |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lat = r["latency_ms"]
        lines.append(f"| {r['variant']} | {r['params'] / 1e6:.2f} | {r['params_run'] / 1e6:.2f} | "
                     f"{r['macs_total'] / 1e9:.1f} | {lat['median']:.0f} | {lat['min']:.0f} | {lat['max']:.0f} | {lat['runs']} |")
    lines += ["", "Cost split (median ms of the runs / GMACs per part):", "",
              "| variant | " + " | ".join(GROUPS) + " |", "|---|" + "---:|" * len(GROUPS)]
    for r in results:
        cells = [f"{r['split_ms'][g]:.0f} ms / {r['macs'][g] / 1e9:.1f}" for g in GROUPS]
        lines.append(f"| {r['variant']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def update_readme(marker: str, text: str, readme: Path = ROOT / "benchmarks" / "README.md") -> None:
    """Replace the text between ``<!-- {marker}:begin -->`` and ``<!-- {marker}:end -->`` (appended if absent)."""
    begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
    body = readme.read_text() if readme.exists() else "# Benchmarks\n"
    block = f"{begin}\n{text}{end}"
    if begin in body and end in body:
        body = body[: body.index(begin)] + block + body[body.index(end) + len(end):]
    else:
        body = body.rstrip("\n") + "\n\n" + block + "\n"
    readme.write_text(body)


def main(argv: list[str] | None = None) -> int:
    from semshare.models import list_models

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--height", type=int, default=1216)
    p.add_argument("--width", type=int, default=1920)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--variants", default=",".join(list_models()))
    p.add_argument("--json", type=Path)
    p.add_argument("--update-readme", action="store_true", help="rewrite this script's section of benchmarks/README.md")
    args = p.parse_args(argv)
    if args.runs < 5:
        print("note: fewer than 5 runs; the README table uses 5 or more", file=sys.stderr)
    import os

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0]
    results = []
    for v in args.variants.split(","):
        print(f"measuring {v} ...", file=sys.stderr, flush=True)
        results.append(measure_variant(v, args.height, args.width, args.warmup, args.runs))
    shared = max(load_before, os.getloadavg()[0]) > 1.25 * torch.get_num_threads()
    text = markdown(results, args.height, args.width, machine_line(torch.get_num_threads()), shared)
    print(text)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.update_readme:
        update_readme("models.py", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
