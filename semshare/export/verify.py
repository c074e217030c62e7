"""Verification of an exported graph: structure (checker, shape inference) and numerics against PyTorch.

The acceptance rule lives here, once (:class:`Tolerance`, :func:`compare_output`), and every numeric check of
semshare uses it: export verification (:func:`verify_numerics`) and ``bench --check``
(:mod:`semshare.bench.compare`). ``compare`` returns a value (:class:`Comparison`) that prints a per-output
table; ``verify_numerics`` runs the ONNX graph in ONNX Runtime CPU (plugin nodes replaced in memory by their
reference decomposition, see :func:`semshare.export.graph.with_reference_ops`) and compares it with the
PyTorch model's outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import onnx

from semshare.errors import VerificationError


@dataclass(frozen=True)
class Tolerance:
    """When an output matches its reference. Both criteria scale with the output, none is an absolute bound.

    - **argmax agreement** (the main criterion): over the pixels whose reference top-1/top-2 logit margin
      exceeds ``margin_fraction`` of the output's logit range (:func:`semshare.precision.report.margin_mask`),
      at least ``min_agreement`` of the predicted classes are identical. Rounding cannot flip such a pixel;
      pixels with near-tied logits are reported (``agreement``) but not judged.
    - **relative error**: max |output - reference| <= ``rtol`` x max |reference| of that output. Float32
      reordering moves logits in proportion to their size (measured on realistic weights, see
      docs/verification.md: <= 4.6e-5 of max |logit| for ONNX Runtime vs PyTorch, every variant at 784x800 and
      1216x1920; <= 3.2e-5 for float32 vs float64 PyTorch), while each planted bug moves them by >= 2e-2 of it.
    """

    rtol: float = 5e-4
    min_agreement: float = 0.9999
    margin_fraction: float = 0.05

    def describe(self) -> str:
        return (f"max |err| <= {self.rtol:.0e} x max |reference|, argmax agreement >= {100 * self.min_agreement:g}% "
                f"where the reference's top-2 margin > {100 * self.margin_fraction:g}% of its range")


#: Export verification: ONNX Runtime CPU against PyTorch CPU, both float32 (only reordering differs).
EXPORT_TOLERANCE = Tolerance()


@dataclass(frozen=True)
class OutputReport:
    """One output against its reference: the numbers and, from ``tolerance``, the verdict."""

    name: str
    shape: tuple[int, ...]
    max_abs: float
    mean_abs: float
    ref_absmax: float
    argmax_agreement: float  # over all pixels
    margin_agreement: float  # over the margin-filtered pixels (nan when there are none)
    margin_pixels: float  # share of pixels that pass the margin filter
    tolerance: Tolerance = EXPORT_TOLERANCE

    @property
    def rel_err(self) -> float:
        """max |err| / max |reference| (0 for two all-zero outputs)."""
        if self.max_abs == 0:
            return 0.0
        return self.max_abs / self.ref_absmax if self.ref_absmax > 0 else math.inf

    @property
    def error_ok(self) -> bool:
        return math.isfinite(self.max_abs) and math.isfinite(self.ref_absmax) and self.rel_err <= self.tolerance.rtol

    @property
    def agreement_ok(self) -> bool:
        """Margin-filtered agreement; an output without a pixel of clear margin is judged on its error alone."""
        return self.margin_pixels == 0 or self.margin_agreement >= self.tolerance.min_agreement

    @property
    def ok(self) -> bool:
        return self.error_ok and self.agreement_ok

    def describe(self) -> str:
        """One clause with the numbers, e.g. for an error message."""
        if not math.isfinite(self.max_abs) and self.argmax_agreement == 0 and self.margin_pixels == 0:
            return f"{self.name} has shape {'x'.join(map(str, self.shape))}, not the reference's"
        return (f"{self.name} max |err| {self.max_abs:.3g} = {self.rel_err:.1e} x max |reference| {self.ref_absmax:.3g} "
                f"(tolerance {self.tolerance.rtol:.0e}), argmax agreement {_pct(self.margin_agreement)} where the "
                f"margin is clear ({100 * self.margin_pixels:.0f}% of pixels; needs >= {100 * self.tolerance.min_agreement:g}%), "
                f"{_pct(self.argmax_agreement)} over all pixels")


def _pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.4f}%"


def compare_output(name: str, reference, actual, tolerance: Tolerance = EXPORT_TOLERANCE) -> OutputReport:
    """The rule: ``actual`` against ``reference``, each (B, C, H, W) logits (class = argmax over axis 1), in float64.

    Outputs without a class axis (fewer than 4 dims, or one channel) are judged on their relative error alone.
    """
    from semshare.precision.report import margin_mask

    ref, out = np.asarray(reference, np.float64), np.asarray(actual, np.float64)
    if ref.shape != out.shape:
        return OutputReport(name, tuple(out.shape), math.inf, math.inf, math.nan, 0.0, math.nan, 0.0, tolerance)
    err = np.abs(ref - out)
    err = np.where(np.isnan(err), np.inf, err)
    ref_absmax = float(np.abs(ref).max()) if ref.size else 0.0
    if ref.ndim == 4 and ref.shape[1] > 1 and np.isfinite(ref).all():
        same = ref.argmax(1) == out.argmax(1)
        mask = margin_mask(ref, tolerance.margin_fraction)
        agreement, margin_pixels = float(same.mean()), float(mask.mean())
        margin_agreement = float(same[mask].mean()) if mask.any() else math.nan
    else:
        agreement, margin_agreement, margin_pixels = float(np.array_equal(ref, out)), math.nan, 0.0
    return OutputReport(name, tuple(ref.shape), float(err.max(initial=0.0)), float(err.mean()) if err.size else 0.0,
                        ref_absmax, agreement, margin_agreement, margin_pixels, tolerance)


@dataclass
class Comparison:
    """Per-output errors of a runtime against a reference; ``str()`` is the printed table."""

    runtime: str
    outputs: list[OutputReport] = field(default_factory=list)
    reference: str = "PyTorch"
    tolerance: Tolerance = EXPORT_TOLERANCE

    @property
    def ok(self) -> bool:
        return bool(self.outputs) and all(o.ok for o in self.outputs)

    def failures(self) -> str:
        """The failing outputs, one clause each ('' when all pass)."""
        return "; ".join(o.describe() for o in self.outputs if not o.ok)

    def table(self) -> str:
        head = (f"{'output':<8} {'shape':<18} {'max |err|':>10} {'max |ref|':>10} {'rel err':>9} {'rtol':>7} "
                f"{'agree margin':>13} {'margin px':>10} {'agree all':>10}  ")
        lines = [f"verification: {self.runtime} vs {self.reference} ({self.tolerance.describe()})", head, "-" * len(head)]
        for o in self.outputs:
            lines.append(f"{o.name:<8} {'x'.join(map(str, o.shape)):<18} {o.max_abs:>10.3e} {o.ref_absmax:>10.3g} "
                         f"{o.rel_err:>9.2e} {o.tolerance.rtol:>7.0e} {_pct(o.margin_agreement):>13} "
                         f"{100 * o.margin_pixels:>9.1f}% {_pct(o.argmax_agreement):>10}  {'ok' if o.ok else 'FAIL'}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"runtime": self.runtime, "reference": self.reference, "ok": self.ok,
                "tolerance": {"rtol": self.tolerance.rtol, "min_agreement": self.tolerance.min_agreement,
                              "margin_fraction": self.tolerance.margin_fraction},
                "outputs": [{"name": o.name, "shape": list(o.shape), "max_abs_err": o.max_abs,
                             "mean_abs_err": o.mean_abs, "reference_abs_max": o.ref_absmax, "rel_err": o.rel_err,
                             "argmax_agreement": o.argmax_agreement, "margin_agreement": o.margin_agreement,
                             "margin_pixels": o.margin_pixels, "ok": o.ok}
                            for o in self.outputs]}

    __str__ = table


def compare(names: list[str], reference: list[np.ndarray], actual: list[np.ndarray], runtime: str,
            tolerance: Tolerance = EXPORT_TOLERANCE, reference_name: str = "PyTorch") -> Comparison:
    """:func:`compare_output` for each output."""
    return Comparison(runtime, [compare_output(n, r, a, tolerance) for n, r, a in zip(names, reference, actual, strict=True)],
                      reference_name, tolerance)


def check_structure(model: onnx.ModelProto) -> onnx.ModelProto:
    """onnx.checker (full) and strict shape inference; custom-domain nodes keep their annotated shapes."""
    try:
        onnx.checker.check_model(model, full_check=True)
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0][:300]
        raise VerificationError(f"exported graph fails the ONNX checker ({first}); this is a semshare bug, please report it") from None


#: ONNX Runtime graph optimizers semshare turns off. ``WeightBiasQuantization`` rewrites a float Conv bias next to
#: Q/DQ inputs into int32 with scale ``x_scale * w_scale``; with the float16 scales of an int8+fp16 graph that
#: product underflows and the bias comes out wrong (tightly at 784x800, ONNX Runtime 1.32: camera-120 argmax
#: agreement with the int8/fp32 graph 51 % with it; without it the int8 report matches int8/fp32's). TensorRT
#: keeps such a bias in float.
ORT_DISABLED_OPTIMIZERS = ["WeightBiasQuantization"]


def cpu_session(model: onnx.ModelProto, threads: int = 0):
    """An ONNX Runtime CPU session for ``model`` (standard ops only); ``threads`` 0 = ONNX Runtime's default."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"],
                                disabled_optimizers=ORT_DISABLED_OPTIMIZERS)


def run_onnxruntime(model: onnx.ModelProto, feeds: dict[str, np.ndarray], threads: int = 0) -> list[np.ndarray]:
    """Run ``model`` (standard ops only) in ONNX Runtime CPU."""
    return cpu_session(model, threads).run(None, feeds)


def verify_numerics(model: onnx.ModelProto, feeds: dict[str, np.ndarray], reference: list[np.ndarray],
                    tolerance: Tolerance = EXPORT_TOLERANCE) -> Comparison:
    """ONNX Runtime CPU on ``model`` (its plugin nodes replaced by reference ops, in memory) vs ``reference``."""
    from semshare.export.graph import plugin_nodes, with_reference_ops

    runtime = "onnxruntime-cpu"
    if plugin_nodes(model):
        model = with_reference_ops(model)
        runtime += " (plugin nodes -> reference ops, in memory)"
    try:
        outputs = run_onnxruntime(model, feeds)
    except Exception as exc:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
        first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
        raise VerificationError(f"ONNX Runtime cannot run the exported graph ({first}); this is a semshare bug") from None
    return compare([o.name for o in model.graph.output], reference, outputs, runtime, tolerance)
