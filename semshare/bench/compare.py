"""Output comparison between backends: a value object, like Polygraphy's comparator results.

The acceptance rule is export verification's (:class:`semshare.export.verify.Tolerance`,
:func:`~semshare.export.verify.compare_output`): margin-filtered argmax agreement first, max |error| relative to
each output's max |reference| second. Only the numbers differ, because two bench backends may differ by more
than rounding order (see :func:`tolerance_for`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from semshare.export.verify import OutputReport, Tolerance, compare_output

CAMERAS = ("seg120", "seg60")

#: Two float32 backends. Looser than export verification's 5e-4 because a GPU computes float32 convolutions in
#: TF32 by default (cuDNN, TensorRT): 10-bit mantissas, about 1e-3 relative per layer.
FP32_TOLERANCE = Tolerance(rtol=1e-2, min_agreement=0.999)
#: A reduced-precision side (fp16, int8): its logits differ by design, so class agreement alone decides.
REDUCED_TOLERANCE = Tolerance(rtol=math.inf, min_agreement=0.999)


def tolerance_for(reference_precision: str, precision: str, rtol: float | None = None) -> Tolerance:
    """fp32 against fp32: :data:`FP32_TOLERANCE` (``rtol`` overrides its relative error); otherwise
    :data:`REDUCED_TOLERANCE`."""
    if reference_precision == precision == "fp32":
        return FP32_TOLERANCE if rtol is None else Tolerance(rtol, FP32_TOLERANCE.min_agreement)
    return REDUCED_TOLERANCE


@dataclass(frozen=True)
class Comparison:
    backend: str
    reference: str
    outputs: tuple[OutputReport, ...]
    tolerance: Tolerance

    @property
    def max_abs_error(self) -> float:
        return max(o.max_abs for o in self.outputs)

    @property
    def rel_error(self) -> float:
        return max(o.rel_err for o in self.outputs)

    @property
    def argmax_agreement(self) -> float:
        return min(o.argmax_agreement for o in self.outputs)

    @property
    def margin_agreement(self) -> float:
        return min((o.margin_agreement for o in self.outputs if o.margin_pixels > 0), default=math.nan)

    @property
    def passed(self) -> bool:
        return all(o.ok for o in self.outputs)

    def to_dict(self) -> dict:
        return {"backend": self.backend, "reference": self.reference,
                "rtol": self.tolerance.rtol, "min_agreement": self.tolerance.min_agreement,
                "margin_fraction": self.tolerance.margin_fraction,
                "outputs": [{"output": o.name, "max_abs_error": o.max_abs, "mean_abs_error": o.mean_abs,
                             "reference_abs_max": o.ref_absmax, "rel_error": o.rel_err,
                             "argmax_agreement": o.argmax_agreement, "margin_agreement": o.margin_agreement,
                             "margin_pixels": o.margin_pixels, "passed": o.ok} for o in self.outputs],
                "max_abs_error": self.max_abs_error, "rel_error": self.rel_error,
                "argmax_agreement": self.argmax_agreement, "margin_agreement": self.margin_agreement,
                "passed": self.passed}

    def __str__(self) -> str:
        if self.passed:
            per = ", ".join(f"{o.name}: rel err {o.rel_err:.1e}, argmax {100 * o.argmax_agreement:.4f}%" for o in self.outputs)
        else:
            per = "; ".join(o.describe() for o in self.outputs if not o.ok)
        return f"{self.backend} vs {self.reference}: {'ok' if self.passed else 'MISMATCH'} ({per})"


def compare(reference: tuple[np.ndarray, np.ndarray], outputs: tuple[np.ndarray, np.ndarray], backend: str,
            reference_name: str, tolerance: Tolerance) -> Comparison:
    """Compare two backends' ``(seg120, seg60)`` logits, each (B, classes, H, W)."""
    return Comparison(backend, reference_name,
                      tuple(compare_output(n, r, o, tolerance) for n, r, o in zip(CAMERAS, reference, outputs, strict=True)),
                      tolerance)
