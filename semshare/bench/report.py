"""Rendering a bench report: the rich table, CSV rows, and the conditions summary.

A metric that could not be measured is shown as ``n/a`` in the table with its reason listed below it, and is
``null`` in JSON/CSV with the reason in the entry's ``unavailable`` map. Nothing is filled in.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from semshare.bench.timing import STAT_KEYS
from semshare.precision.report import MARGIN_FRACTION


def _f(v: float | None, fmt: str = "{:.1f}") -> str:
    return "n/a" if v is None else fmt.format(v)


def render(report: dict, console: Any) -> None:
    """Print the backend table, ratios, check results, conditions, notes and warnings."""
    from rich.markup import escape
    from rich.table import Table

    cfg, cond = report["config"], report["conditions"]
    title = (f"{cfg['variant'] or 'model'}  {cfg['height']}x{cfg['width']}  batch {cfg['batch']}  "
             f"input {cfg['input']['kind']}  warm-up {cfg['warmup']}")
    t = Table(title=title, title_justify="left")
    t.add_column("backend", style="bold")
    t.add_column("prec")
    for k in STAT_KEYS:
        t.add_column(f"{k} ms", justify="right")
    t.add_column("n", justify="right")
    t.add_column("pairs/s", justify="right", style="bold")
    t.add_column("GPU med ms", justify="right")
    t.add_column("host MB", justify="right")
    t.add_column("GPU MB", justify="right")
    t.add_column("speed-up", justify="right")
    t.add_column("agree 120/60 %", justify="right")
    ratio = {r["backend"]: r for r in report.get("ratios", [])}
    for e in report["backends"]:
        lat, gpu, mem = e["latency_ms"], e.get("gpu_compute_ms"), e["memory"]
        t.add_row(e["name"], e["precision"], *[_f(lat[k]) for k in STAT_KEYS], str(e["iterations"]),
                  _f(e["fps"], "{:.3f}" if e["fps"] < 10 else "{:.1f}"), _f(gpu["median"] if gpu else None),
                  _f(mem["host_peak_rss_mb"], "{:.0f}"), _f(mem["gpu_peak_mb"], "{:.0f}"),
                  _f(ratio.get(e["name"], {}).get("speedup_median"), "{:.2f}x"), _agreement(e))
    console.print(t)
    if report["backends"]:
        ref = report["backends"][0]["name"]
        console.print(f"speed-up = median latency of {ref} / median latency of the backend (same run, same input). "
                      "Latency is end to end: host inputs -> host outputs, synchronous. host MB = peak RSS while "
                      f"the backend ran (process-wide). agree = argmax agreement with {ref} per camera over the pixels "
                      f"it is sure of (top-1 minus top-2 logit > {100 * MARGIN_FRACTION:.0f}% of the logit range).")
    for e in report["backends"]:
        for k, why in e.get("unavailable", {}).items():
            console.print(f"  [dim]{escape(e['name'])}: {k} n/a: {escape(why)}[/dim]")
    for c in report.get("check") or []:
        style = "green" if c["passed"] else "bold red"
        per = "; ".join(f"{o['output']} max |d| {o['max_abs_error']:.2e}, argmax {100 * o['argmax_agreement']:.3f}%"
                        for o in c["outputs"])
        console.print(f"[{style}]check {c['backend']} vs {c['reference']}: {'ok' if c['passed'] else 'MISMATCH'}"
                      f"[/{style}] ({per})")
    console.print(conditions_line(cond))
    for n in report.get("notes", []):
        console.print(f"[yellow]note:[/yellow] {escape(n)}")
    for w in report.get("warnings", []):
        console.print(f"[bold yellow]WARNING:[/bold yellow] {escape(w)}")


def _agreement(entry: dict) -> str:
    a = entry.get("agreement")
    if not a:
        return "ref"
    return "/".join("n/a" if a[k]["margin"] != a[k]["margin"] else f"{100 * a[k]['margin']:.2f}" for k in ("seg120", "seg60"))


def conditions_line(cond: dict) -> str:
    v = cond["versions"]
    parts = [f"CPU {cond.get('cpu_model') or 'n/a'} ({cond.get('cpu_count')} logical)",
             f"GPU {cond.get('gpu') or 'none'}",
             ", ".join(f"{k} {v[k]}" for k in ("torch", "onnxruntime", "tensorrt", "torch_cuda") if v.get(k)),
             f"load {cond['load_average_before'][0]:.1f}->{cond['load_average_after'][0]:.1f}"
             if cond.get("load_average_before") and cond.get("load_average_after") else ""]
    if cond.get("jetson"):
        parts.append(f"nvpmodel {cond.get('nvpmodel') or 'n/a'}, clocks locked {cond.get('clocks_locked')}")
    from rich.markup import escape

    return "[dim]" + escape(" | ".join(p for p in parts if p) + f" | {cond['date']}") + "[/dim]"


CSV_FIELDS = ["backend", "kind", "device", "precision", "batch", "height", "width", "warmup", "iterations",
              *[f"latency_{k}_ms" for k in STAT_KEYS], "fps", *[f"gpu_compute_{k}_ms" for k in STAT_KEYS],
              "host_peak_rss_mb", "gpu_peak_mb", "speedup_median_vs_first", "check_max_abs_error",
              "check_argmax_agreement", "check_passed", "agreement_margin_seg120", "agreement_margin_seg60", "cpu_model", "gpu", "torch", "onnxruntime", "tensorrt", "date"]


def to_csv(report: dict) -> str:
    """One row per backend; empty cells are unavailable metrics (their reasons are in the JSON)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    w.writeheader()
    cfg, cond = report["config"], report["conditions"]
    ratio = {r["backend"]: r for r in report.get("ratios", [])}
    check = {c["backend"]: c for c in report.get("check") or []}
    for e in report["backends"]:
        row: dict[str, Any] = {"backend": e["name"], "kind": e["kind"], "device": e["device"],
                               "precision": e["precision"], "batch": e["batch"], "height": cfg["height"],
                               "width": cfg["width"], "warmup": e["warmup"], "iterations": e["iterations"],
                               "fps": e["fps"], "host_peak_rss_mb": e["memory"]["host_peak_rss_mb"],
                               "gpu_peak_mb": e["memory"]["gpu_peak_mb"],
                               "speedup_median_vs_first": ratio.get(e["name"], {}).get("speedup_median"),
                               "cpu_model": cond.get("cpu_model"), "gpu": cond.get("gpu"), "date": cond["date"],
                               **{k: cond["versions"].get(k) for k in ("torch", "onnxruntime", "tensorrt")}}
        for k in STAT_KEYS:
            row[f"latency_{k}_ms"] = e["latency_ms"][k]
            row[f"gpu_compute_{k}_ms"] = e["gpu_compute_ms"][k] if e.get("gpu_compute_ms") else None
        for k in ("seg120", "seg60"):
            row[f"agreement_margin_{k}"] = e["agreement"][k]["margin"] if e.get("agreement") else None
        if e["name"] in check:
            c = check[e["name"]]
            row.update(check_max_abs_error=c["max_abs_error"], check_argmax_agreement=c["argmax_agreement"],
                       check_passed=c["passed"])
        w.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buf.getvalue()
