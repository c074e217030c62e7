"""Verification of an exported graph: structure (checker, shape inference) and numerics against PyTorch.

``compare`` returns a value (:class:`Comparison`) that prints a per-output table; ``verify_numerics`` runs
the ONNX graph in ONNX Runtime CPU (plugin nodes replaced in memory by their reference decomposition, see
:func:`semshare.export.graph.with_reference_ops`) and compares it with the PyTorch model's outputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx

from semshare.errors import VerificationError

#: Acceptance: logits within 1e-3 and argmax identical on >= 99.99 % of pixels. Outputs smaller than 1 (a
#: random-weight model's logits are ~0.1) get a proportionally tighter bound, ``1e-3 * max|reference|``
#: (never below 1e-6), so a dropped or zeroed op cannot hide under an absolute 1e-3.
ATOL = 1e-3
MIN_TOLERANCE = 1e-6
MIN_ARGMAX_AGREEMENT = 0.9999


@dataclass(frozen=True)
class OutputReport:
    name: str
    shape: tuple[int, ...]
    max_abs: float
    mean_abs: float
    ref_absmax: float
    argmax_agreement: float

    @property
    def tolerance(self) -> float:
        return max(MIN_TOLERANCE, ATOL * min(1.0, self.ref_absmax))

    @property
    def ok(self) -> bool:
        return (bool(np.isfinite(self.max_abs)) and self.max_abs <= self.tolerance
                and self.argmax_agreement >= MIN_ARGMAX_AGREEMENT)


@dataclass
class Comparison:
    """Per-output errors of a runtime against the PyTorch reference; ``str()`` is the printed table."""

    runtime: str
    outputs: list[OutputReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.outputs) and all(o.ok for o in self.outputs)

    def table(self) -> str:
        head = f"{'output':<8} {'shape':<20} {'max abs err':>12} {'mean abs err':>12} {'tolerance':>10} {'argmax agree':>13}  "
        lines = [f"verification: {self.runtime} vs PyTorch", head, "-" * len(head)]
        for o in self.outputs:
            lines.append(f"{o.name:<8} {'x'.join(map(str, o.shape)):<20} {o.max_abs:>12.3e} {o.mean_abs:>12.3e} "
                         f"{o.tolerance:>10.1e} {100 * o.argmax_agreement:>12.4f}%  {'ok' if o.ok else 'FAIL'}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"runtime": self.runtime, "ok": self.ok,
                "outputs": [{"name": o.name, "shape": list(o.shape), "max_abs_err": o.max_abs,
                             "mean_abs_err": o.mean_abs, "reference_abs_max": o.ref_absmax,
                             "tolerance": o.tolerance, "argmax_agreement": o.argmax_agreement}
                            for o in self.outputs]}

    __str__ = table


def compare(names: list[str], reference: list[np.ndarray], actual: list[np.ndarray], runtime: str) -> Comparison:
    """Max/mean absolute error and class-argmax agreement (axis 1) per output."""
    result = Comparison(runtime)
    for name, ref, out in zip(names, reference, actual, strict=True):
        ref, out = np.asarray(ref, np.float64), np.asarray(out, np.float64)
        if ref.shape != out.shape:
            result.outputs.append(OutputReport(name, tuple(out.shape), float("inf"), float("inf"), 0.0, 0.0))
            continue
        err = np.abs(ref - out)
        err = np.where(np.isnan(err), np.inf, err)
        agree = float(np.mean(ref.argmax(1) == out.argmax(1))) if ref.ndim >= 2 else float(np.array_equal(ref, out))
        result.outputs.append(OutputReport(name, tuple(ref.shape), float(err.max()), float(err.mean()),
                                           float(np.abs(ref).max()), agree))
    return result


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


def verify_numerics(model: onnx.ModelProto, feeds: dict[str, np.ndarray], reference: list[np.ndarray]) -> Comparison:
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
    return compare([o.name for o in model.graph.output], reference, outputs, runtime)
