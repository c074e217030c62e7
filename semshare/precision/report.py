"""The accuracy report: every prepared graph against the FP32 reference on image pairs."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from semshare.precision.int8 import ort_runnable

#: Agreement is also reported over pixels whose FP32 top-1/top-2 margin exceeds this share of the logit range.
MARGIN_FRACTION = 0.05




@dataclass
class CameraAccuracy:
    camera: str
    agreement: float  # argmax agreement over all pixels
    agreement_margin: float  # over pixels whose FP32 top1-top2 margin > MARGIN_FRACTION of the logit range
    margin_pixels: float  # share of pixels that pass the margin filter
    max_abs_err: float
    mean_abs_err: float
    miou: float | None = None  # prepared graph vs labels
    miou_reference: float | None = None  # FP32 reference vs labels


@dataclass
class PrecisionAccuracy:
    precision: str
    cameras: list[CameraAccuracy] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class AccuracyReport:
    variant: str
    reference: str
    pairs: list[str]
    input_size: tuple[int, int]
    margin_fraction: float = MARGIN_FRACTION
    precisions: list[PrecisionAccuracy] = field(default_factory=list)
    calibration: dict[str, Any] = field(default_factory=dict)  # pairs that calibrated, method, high precision
    mix: dict[str, Any] = field(default_factory=dict)  # int8: the sensitivity table and the mix (Mix.to_dict)
    methods: list[dict[str, Any]] = field(default_factory=list)  # int8: calibration methods compared

    def get(self, precision: str) -> PrecisionAccuracy:
        return next(p for p in self.precisions if p.precision == precision)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        head = (f"{'precision':<9} {'camera':<6} {'agree all':>10} {'agree margin':>13} {'margin px':>10} "
                f"{'max |err|':>10} {'mean |err|':>10} {'mIoU':>7} {'mIoU fp32':>9}")
        calibrated = self.calibration.get("pairs") if any(p.precision == "int8" for p in self.precisions) else None
        lines = [f"accuracy vs {self.reference} on {len(self.pairs)} pair(s) ({', '.join(self.pairs)}"
                 + (f"; int8 calibrated on {', '.join(calibrated)}, never scored" if calibrated else "")
                 + f") at {self.input_size[0]}x{self.input_size[1]} "
                 f"({self.variant}; margin filter: top1-top2 > {100 * self.margin_fraction:.0f}% of the logit range)"
                 + (f"; int8 computes its other layers in {self.calibration['high_precision']}"
                    if self.calibration.get("high_precision") and any(p.precision == "int8" for p in self.precisions)
                    else ""),
                 head, "-" * len(head)]
        for p in self.precisions:
            for c in p.cameras:
                miou = "-" if c.miou is None else f"{100 * c.miou:.2f}"
                mref = "-" if c.miou_reference is None else f"{100 * c.miou_reference:.2f}"
                margin = "no pixels" if c.agreement_margin != c.agreement_margin else f"{100 * c.agreement_margin:.3f}%"
                lines.append(f"{p.precision:<9} {c.camera:<6} {100 * c.agreement:>9.3f}% {margin:>13} "
                             f"{100 * c.margin_pixels:>9.1f}% {c.max_abs_err:>10.3e} {c.mean_abs_err:>10.3e} {miou:>7} {mref:>9}")
        if self.methods:
            lines += ["", "int8 calibration methods on the same pairs (margin-filtered agreement, camera 120 / 60; "
                      "per-channel weights in every one)",
                      f"{'method':<11} {'all INT8':>21} {'chosen mix':>21}"]
            lines += [f"{m['method']:<11} {100 * m['all_int8'][0]:>9.3f}% / {100 * m['all_int8'][1]:>7.3f}% "
                      f"{100 * m['mix'][0]:>9.3f}% / {100 * m['mix'][1]:>7.3f}%" for m in self.methods]
        return "\n".join(lines)

    __str__ = table


def margin_mask(ref: np.ndarray, fraction: float = MARGIN_FRACTION) -> np.ndarray:
    """(B, C, H, W) logits -> (B, H, W) bool: top-1 minus top-2 logit > ``fraction`` of this output's range."""
    top2 = np.partition(ref, -2, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    return margin > fraction * float(ref.max() - ref.min())


def _confusion(pred: np.ndarray, label: np.ndarray, n: int) -> np.ndarray:
    ok = (label >= 0) & (label < n)
    return np.bincount(n * label[ok].astype(np.int64) + pred[ok], minlength=n * n).reshape(n, n)


def _miou(conf: np.ndarray) -> float:
    inter = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - inter
    present = union > 0
    return float((inter[present] / union[present]).mean()) if present.any() else float("nan")


def label_paths(pair: Any) -> dict[str, Path] | None:
    """The label PNGs of a pair (``labels/`` beside or above the pairs folder), or None."""
    folder = pair.path120.parent
    for cand in (folder / "labels", folder.parent / "labels"):
        p120, p60 = cand / f"fov120_{pair.key}.png", cand / f"fov60_{pair.key}.png"
        if p120.is_file() and p60.is_file():
            return {"120": p120, "60": p60}
    return None


@dataclass
class CameraAccumulator:
    """Agreement and error of one camera's outputs against the reference, summed over pairs."""

    n: int = 0
    agree: float = 0.0
    agree_m: float = 0.0
    m_pixels: float = 0.0
    m_count: float = 0.0
    max_err: float = 0.0
    sum_err: float = 0.0
    numel: int = 0
    conf: Any = None
    conf_ref: Any = None

    def add(self, ref: np.ndarray, out: np.ndarray, label: np.ndarray | None, classes: int) -> None:
        err = np.abs(ref.astype(np.float64) - out.astype(np.float64))
        am_ref, am_out = ref.argmax(1), out.argmax(1)
        mask = margin_mask(ref)
        same = am_ref == am_out
        self.n += am_ref.size
        self.agree += float(same.sum())
        self.agree_m += float(same[mask].sum())
        self.m_count += float(mask.sum())
        self.max_err = max(self.max_err, float(np.nan_to_num(err, nan=np.inf).max()))
        self.sum_err += float(err.sum())
        self.numel += err.size
        if label is not None:
            c = _confusion(am_out.reshape(-1), label.reshape(-1), classes)
            r = _confusion(am_ref.reshape(-1), label.reshape(-1), classes)
            self.conf = c if self.conf is None else self.conf + c
            self.conf_ref = r if self.conf_ref is None else self.conf_ref + r

    def result(self, camera: str) -> CameraAccuracy:
        return CameraAccuracy(
            camera, self.agree / max(self.n, 1), self.agree_m / self.m_count if self.m_count else float("nan"),
            self.m_count / max(self.n, 1),
            self.max_err, self.sum_err / max(self.numel, 1),
            None if self.conf is None else _miou(self.conf), None if self.conf_ref is None else _miou(self.conf_ref),
        )


def accuracy_report(models: dict[str, Any], pairs: Sequence[Any], reference: Callable[[Any, Any], tuple[Any, Any]],
                    input_size: tuple[int, int], variant: str = "", reference_name: str = "FP32 PyTorch",
                    num_classes: int = 6, log: Callable[[str], None] | None = None) -> AccuracyReport:
    """Run each prepared graph (``precision -> ModelProto``) in ONNX Runtime CPU on ``pairs`` and compare it
    with ``reference(img120, img60) -> (seg120, seg60)`` (NumPy logits)."""
    from semshare.data import load_label, load_pair

    report = AccuracyReport(variant, reference_name, [p.key for p in pairs], input_size)
    from semshare.export.verify import cpu_session

    sessions = {name: cpu_session(ort_runnable(m)) for name, m in models.items()}
    acc = {name: {"120": CameraAccumulator(), "60": CameraAccumulator()} for name in models}
    seconds = dict.fromkeys(models, 0.0)
    for pair in pairs:
        img120, img60 = load_pair(pair.path120, input_size, pair.path60)
        ref120, ref60 = (np.asarray(r, np.float32) for r in reference(img120, img60))
        labels = label_paths(pair)
        lab = {cam: load_label(p, input_size)[None] for cam, p in labels.items()} if labels else {}
        for name, sess in sessions.items():
            names = [i.name for i in sess.get_inputs()]
            feed = dict(zip(names[:2], (img120.numpy(), img60.numpy()), strict=True))
            t0 = time.perf_counter()
            out120, out60 = sess.run(None, feed)[:2]
            seconds[name] += time.perf_counter() - t0
            acc[name]["120"].add(ref120, out120, lab.get("120"), num_classes)
            acc[name]["60"].add(ref60, out60, lab.get("60"), num_classes)
        if log:
            log(f"  pair {pair.key}: compared {', '.join(models)}")
    for name in models:
        report.precisions.append(PrecisionAccuracy(name, [acc[name][c].result(c) for c in ("120", "60")],
                                                   round(seconds[name], 2)))
    return report
