"""Output comparison between backends: a value object, like Polygraphy's comparator results."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from semshare.precision.report import margin_mask

CAMERAS = ("seg120", "seg60")


@dataclass(frozen=True)
class OutputDiff:
    """One output of ``backend`` against the same output of ``reference``."""

    output: str
    max_abs_error: float
    mean_abs_error: float
    argmax_agreement: float  # fraction of pixels whose predicted class is identical
    margin_agreement: float  # the same over the pixels the reference is sure of (semshare.precision.margin_mask)


@dataclass(frozen=True)
class Comparison:
    backend: str
    reference: str
    outputs: tuple[OutputDiff, ...]
    atol: float
    min_agreement: float

    @property
    def max_abs_error(self) -> float:
        return max(o.max_abs_error for o in self.outputs)

    @property
    def argmax_agreement(self) -> float:
        return min(o.argmax_agreement for o in self.outputs)

    @property
    def passed(self) -> bool:
        return self.max_abs_error <= self.atol and self.argmax_agreement >= self.min_agreement

    def to_dict(self) -> dict:
        d = asdict(self)
        d["outputs"] = [asdict(o) for o in self.outputs]
        d.update(max_abs_error=self.max_abs_error, argmax_agreement=self.argmax_agreement, passed=self.passed)
        return d

    def __str__(self) -> str:
        per = ", ".join(f"{o.output}: max {o.max_abs_error:.2e} mean {o.mean_abs_error:.2e} "
                        f"argmax {100 * o.argmax_agreement:.4f}%" for o in self.outputs)
        return f"{self.backend} vs {self.reference}: {'ok' if self.passed else 'MISMATCH'} ({per})"


def compare(reference: tuple[np.ndarray, np.ndarray], outputs: tuple[np.ndarray, np.ndarray], backend: str,
            reference_name: str, atol: float, min_agreement: float) -> Comparison:
    """Compare two backends' ``(seg120, seg60)`` logits, each (B, classes, H, W)."""
    diffs = []
    for name, ref, out in zip(CAMERAS, reference, outputs, strict=True):
        ref, out = np.asarray(ref, np.float32), np.asarray(out, np.float32)
        if ref.shape != out.shape:
            diffs.append(OutputDiff(name, float("inf"), float("inf"), 0.0, 0.0))
            continue
        err = np.abs(ref - out)
        same = ref.argmax(1) == out.argmax(1)
        sure = margin_mask(ref)
        diffs.append(OutputDiff(name, float(np.nanmax(err)) if np.isfinite(err).all() else float("inf"),
                                float(err.mean()), float(same.mean()), float(same[sure].mean()) if sure.any() else float("nan")))
    return Comparison(backend, reference_name, tuple(diffs), atol, min_agreement)
