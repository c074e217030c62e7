"""INT8 that holds its accuracy: per-layer-group sensitivity and the automatic INT8/FP16 mix.

Every Conv belongs to a *layer group*, the PyTorch module it comes from as its ONNX scope names it
(:func:`layer_group`): a backbone stage (``pretrained/layer3``, tightly's camera-60 ``layer1``), the LR-ASPP
``head``, a PWC-Net level's feature convs (``flow_Network/feature_pyramid_extractor/Feature(Lv1)``) or flow
estimator (``flow_Network/FlowEstimator(Lv2)``), a fusion module (``FFM_120``). One calibration
(:class:`~semshare.precision.int8.Calibration`) quantizes every Conv once; every graph below is put together
from its ranges, so the analysis never calibrates again:

1. *sensitivity*: each group alone INT8 (every other layer float32), scored on the validation pairs;
2. *mix*: everything INT8, then the most sensitive groups FP16 (non-quantized, computing in
   ``--high-precision``) one by one until the margin-filtered agreement with FP32 reaches the target on both
   cameras; then, since greedy overshoots, the blocks of each FP16 group (``pretrained/layer3/layer3.4``; the
   largest group and its last block first) are tried back in INT8, one at a time, and stay INT8 where the
   target still holds.

The mix never keeps fewer than ``min_int8_share`` of the Convs INT8; when even that best mix misses the
target, :func:`choose_mix` refuses (:class:`MixError` after the tables are logged).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from semshare.errors import SemshareError
from semshare.precision.int8 import CALIBRATION_METHODS, Calibration, calibrate, ort_runnable
from semshare.precision.report import CameraAccumulator, CameraAccuracy

#: Default ``--min-agreement``: margin-filtered argmax agreement with FP32 on both cameras, validation pairs.
MIN_AGREEMENT = 0.99
#: Default ``--min-int8-share``: a mix keeping fewer Convs INT8 is refused (it would be an FP16 engine).
MIN_INT8_SHARE = 0.5
#: Modules that only hold stages: a Conv's group is the first module below them.
_CONTAINERS = {"pretrained", "flow_Network", "feature_pyramid_extractor", "feature_pyramid_extractor2"}


class MixError(SemshareError):
    """No INT8/FP16 mix allowed by ``min_int8_share`` reaches the target; :attr:`mix` holds the tables."""

    def __init__(self, message: str, mix: Mix) -> None:
        super().__init__(message)
        self.mix = mix


def check_mix_options(min_agreement: float, min_int8_share: float) -> None:
    if not 0 < min_agreement <= 1:
        raise SemshareError(f"--min-agreement must be in (0, 1] (a share of pixels, e.g. 0.99), got {min_agreement}")
    if not 0 <= min_int8_share <= 1:
        raise SemshareError(f"--min-int8-share must be in [0, 1] (a share of the Convs, e.g. 0.5), got {min_int8_share}")


def layer_group(node: str) -> str:
    """The layer group of a Conv node name: ``/model/pretrained/layer3/layer3.1/conv/conv.0/Conv`` ->
    ``pretrained/layer3``; ``/model/FFM_120/residual131/conv1_out/Conv`` -> ``FFM_120``; a name without a
    scope is its own group."""
    out: list[str] = []
    for p in _scope(node).split("/"):
        out.append(p)
        if p not in _CONTAINERS:
            break
    return "/".join(out) or node


def _scope(node: str) -> str:
    """``/model/pretrained/layer3/layer3.1/conv/conv.0/Conv`` -> ``pretrained/layer3/layer3.1/conv/conv.0``."""
    parts = [p for p in node.split("/") if p]
    parts = parts[:-1] if len(parts) > 1 else parts  # the op name ("Conv")
    return "/".join(parts[1:] if len(parts) > 1 and parts[0] == "model" else parts)


def mix_state(group: str, fp16_units: Collection[str]) -> str:
    """``FP16``, ``part FP16`` (some of its blocks) or ``INT8``: a layer group in a mix."""
    if group in fp16_units:
        return "FP16"
    return "part FP16" if any(u.startswith(group + "/") for u in fp16_units) else "INT8"


def layer_groups(convs: Sequence[str]) -> dict[str, list[str]]:
    """Group -> its Convs, both in graph order."""
    groups: dict[str, list[str]] = {}
    for c in convs:
        groups.setdefault(layer_group(c), []).append(c)
    return groups


def unit_convs(convs: Sequence[str], unit: str) -> list[str]:
    """The Convs of a mix unit: a layer group (:func:`layer_group`) or any module below one
    (``pretrained/layer3/layer3.1``), named by its scope."""
    return [c for c in convs if _scope(c) == unit or _scope(c).startswith(unit + "/")]


def sub_units(convs: Sequence[str], unit: str) -> list[str]:
    """The modules one level below ``unit`` that hold its Convs (a stage's blocks), in graph order; [] when
    there is only one."""
    subs = list(dict.fromkeys(unit + "/" + _scope(c)[len(unit) + 1:].split("/")[0]
                              for c in unit_convs(convs, unit) if _scope(c) != unit))
    return subs if len(subs) > 1 else []


class Scorer:
    """Agreement of a graph with the FP32 reference on the validation pairs; the reference runs once."""

    def __init__(self, pairs: Sequence[Any], reference: Callable[[Any, Any], tuple[Any, Any]],
                 input_size: tuple[int, int]) -> None:
        from semshare.data import load_pair

        self.pairs = [p.key for p in pairs]
        self.input_size = input_size
        self._data = []
        for pair in pairs:
            img120, img60 = load_pair(pair.path120, input_size, pair.path60)
            refs = tuple(np.asarray(r, np.float32) for r in reference(img120, img60))
            self._data.append(((img120.numpy(), img60.numpy()), refs))

    def __call__(self, graph: Any) -> dict[str, CameraAccuracy]:
        from semshare.export.verify import cpu_session

        sess = cpu_session(ort_runnable(graph))
        names = [i.name for i in sess.get_inputs()][:2]
        acc = {"120": CameraAccumulator(), "60": CameraAccumulator()}
        for images, refs in self._data:
            outs = sess.run(None, dict(zip(names, images, strict=True)))[:2]
            for cam, ref, out in zip(("120", "60"), refs, outs, strict=True):
                acc[cam].add(ref, out, None, 0)
        return {cam: a.result(cam) for cam, a in acc.items()}


def _agreement(c: CameraAccuracy) -> float:
    """Margin-filtered agreement (all pixels when no pixel passes the margin filter)."""
    return c.agreement if c.agreement_margin != c.agreement_margin else c.agreement_margin


@dataclass
class GroupSensitivity:
    """One layer group alone INT8 (every other layer float32)."""

    group: str
    convs: int
    agreement_120: float
    agreement_60: float
    mean_abs_err: float  # over both cameras' logits

    @property
    def worst(self) -> float:
        return min(self.agreement_120, self.agreement_60)


@dataclass
class MixStep:
    fp16_groups: list[str]  # layer groups, or blocks of one (pretrained/layer3/layer3.4), kept FP16
    int8_convs: int
    agreement_120: float
    agreement_60: float
    meets: bool


@dataclass
class Mix:
    """The sensitivity table, the mixes tried and the one chosen."""

    method: str
    target: float
    min_int8_share: float
    high_precision: str
    validation_pairs: list[str]
    input_size: tuple[int, int]
    total_convs: int
    sensitivity: list[GroupSensitivity] = field(default_factory=list)  # most sensitive first
    steps: list[MixStep] = field(default_factory=list)
    chosen: MixStep | None = None

    @property
    def met(self) -> bool:
        return self.chosen is not None and self.chosen.meets

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "met": self.met}

    def sensitivity_table(self) -> str:
        if not self.sensitivity:
            return f"INT8 sensitivity: not measured (--min-int8-share {self.min_int8_share:g} lets no layer group stay FP16)"
        fp16 = self.chosen.fp16_groups if self.chosen else []
        head = f"{'layer group':<52} {'convs':>5} {'agree 120':>10} {'agree 60':>9} {'mean |err|':>10}  mix"
        lines = [f"INT8 sensitivity on {len(self.validation_pairs)} validation pair(s) ({', '.join(self.validation_pairs)}) "
                 f"at {self.input_size[0]}x{self.input_size[1]}, {self.method} calibration: each group alone INT8, "
                 "the rest FP32; margin-filtered agreement with FP32, most sensitive first", head, "-" * len(head)]
        for r in self.sensitivity:
            lines.append(f"{r.group:<52} {r.convs:>5} {100 * r.agreement_120:>9.3f}% {100 * r.agreement_60:>8.3f}% "
                         f"{r.mean_abs_err:>10.3e}  {mix_state(r.group, fp16)}")
        return "\n".join(lines)

    def mix_table(self) -> str:
        lines = [f"INT8/FP16 mix: target >= {100 * self.target:.2f}% margin-filtered agreement on both cameras, "
                 f">= {100 * self.min_int8_share:.0f}% of the {self.total_convs} Convs INT8, other layers in {self.high_precision}",
                 f"{'FP16 groups':<60} {'INT8 convs':>14} {'agree 120':>10} {'agree 60':>9}"]
        for s in self.steps:
            names = ", ".join(s.fp16_groups) if s.fp16_groups else "none (all INT8)"
            share = f"{s.int8_convs}/{self.total_convs} ({100 * s.int8_convs / max(self.total_convs, 1):.0f}%)"
            lines.append(f"{names[:60]:<60} {share:>14} {100 * s.agreement_120:>9.3f}% {100 * s.agreement_60:>8.3f}%"
                         + ("  meets" if s.meets else ""))
        lines.append(self.summary())
        return "\n".join(lines)

    def summary(self) -> str:
        c = self.chosen
        if c is None:
            return "no mix evaluated"
        kept = ", ".join(c.fp16_groups) if c.fp16_groups else "none"
        return (f"{'chosen' if c.meets else 'best'} mix: FP16 groups: {kept}; {c.int8_convs}/{self.total_convs} Convs "
                f"({100 * c.int8_convs / max(self.total_convs, 1):.1f}%) INT8; margin-filtered agreement "
                f"{100 * c.agreement_120:.3f}% (camera 120), {100 * c.agreement_60:.3f}% (camera 60)")

    def table(self) -> str:
        return self.sensitivity_table() + "\n\n" + self.mix_table()


def sensitivity(cal: Calibration, score: Scorer, log: Callable[[str], None] | None = None) -> list[GroupSensitivity]:
    """Each layer group alone INT8 (the rest FP32), most sensitive first (lowest agreement on the worse
    camera, then largest mean |error|)."""
    rows = []
    everything = set(cal.convs)
    for group, convs in layer_groups(cal.convs).items():
        cams = score(cal.graph(everything - set(convs), "fp32"))
        rows.append(GroupSensitivity(group, len(convs), _agreement(cams["120"]), _agreement(cams["60"]),
                                     (cams["120"].mean_abs_err + cams["60"].mean_abs_err) / 2))
        if log:
            log(f"  sensitivity {group}: {100 * rows[-1].agreement_120:.3f}% / {100 * rows[-1].agreement_60:.3f}%")
    rows.sort(key=lambda r: (r.worst, -r.mean_abs_err))
    return rows


def choose_mix(cal: Calibration, score: Scorer, target: float = MIN_AGREEMENT, min_int8_share: float = MIN_INT8_SHARE,
               high_precision: str = "fp16", log: Callable[[str], None] | None = None,
               rows: list[GroupSensitivity] | None = None) -> tuple[Any, Mix]:
    """The int8 graph of the chosen mix and the :class:`Mix` (see the module docstring); :class:`MixError` when
    even the best mix allowed by ``min_int8_share`` misses ``target``. ``rows``: a sensitivity table
    already measured on this calibration."""
    check_mix_options(target, min_int8_share)
    total = len(cal.convs)
    mix = Mix(cal.method, target, min_int8_share, high_precision, score.pairs, score.input_size, total)
    smallest = min((len(v) for v in layer_groups(cal.convs).values()), default=total + 1)
    if rows is not None:
        mix.sensitivity = rows
    elif total - smallest >= min_int8_share * total:  # else no group may go FP16: nothing to rank
        mix.sensitivity = sensitivity(cal, score, log)

    def float_convs(units: Collection[str]) -> set[str]:
        return {c for u in units for c in unit_convs(cal.convs, u)}

    def evaluate(units: Collection[str]) -> MixStep:
        cams = score(cal.graph(float_convs(units), high_precision))
        a120, a60 = _agreement(cams["120"]), _agreement(cams["60"])
        step = MixStep(list(units), total - len(float_convs(units)), a120, a60, min(a120, a60) >= target)
        mix.steps.append(step)
        if log:
            log(f"  mix with {len(units)} FP16 unit(s), {step.int8_convs}/{total} Convs INT8: "
                f"{100 * a120:.3f}% / {100 * a60:.3f}%" + (" (meets)" if step.meets else ""))
        return step

    fp16: list[str] = []
    step = evaluate(fp16)
    while not step.meets:  # 1. the most sensitive groups FP16, one by one
        fits = [r.group for r in mix.sensitivity if r.group not in fp16
                and step.int8_convs - r.convs >= min_int8_share * total]
        if not fits:
            break
        fp16.append(fits[0])
        step = evaluate(fp16)
    best = step if step.meets else max(mix.steps, key=lambda s: min(s.agreement_120, s.agreement_60))
    if step.meets:  # 2. greedy overshoots: each FP16 group's blocks back in INT8, largest group and last block first
        for g in sorted(fp16, key=lambda g: -len(unit_convs(cal.convs, g))):
            parts = sub_units(cal.convs, g) or [g]
            kept = list(parts)
            for part in reversed(parts):
                others = [u for u in best.fp16_groups if u != g and u not in parts]
                trial = evaluate(others + [k for k in kept if k != part])
                if trial.meets:
                    kept.remove(part)
                    best = trial
            rest = [u for u in best.fp16_groups if u != g and u not in parts]
            best = MixStep(rest + ([g] if kept == parts else kept), best.int8_convs, best.agreement_120,
                           best.agreement_60, best.meets)
    mix.chosen = best
    if log:
        log(mix.table())
    if not best.meets:
        raise MixError(
            f"int8 misses --min-agreement {100 * target:.2f}% on the validation pairs ({', '.join(score.pairs)}): the best mix "
            f"that keeps >= {100 * min_int8_share:.0f}% of the Convs INT8 ({len(best.fp16_groups)} FP16 group(s)) reaches "
            f"{100 * best.agreement_120:.2f}% (camera 120) / {100 * best.agreement_60:.2f}% (camera 60); lower --min-agreement, "
            "allow more FP16 with a lower --min-int8-share, or build --precision fp16", mix)
    return cal.graph(float_convs(best.fp16_groups), high_precision), mix


def compare_methods(model: Any, feeds: list[dict[str, np.ndarray]], cal: Calibration, mix: Mix, score: Scorer,
                    log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """Every ``--calib-method`` on the same calibration and validation pairs: all Convs INT8, and the chosen
    mix's FP16 groups, in ``mix.high_precision``. Rows: ``{"method", "all_int8": (a120, a60), "mix": (a120, a60)}``."""
    rows = []
    fp16 = mix.chosen.fp16_groups if mix.chosen else []
    for method in CALIBRATION_METHODS:
        c = cal if method == cal.method else calibrate(model, feeds, method)
        row: dict[str, Any] = {"method": method}
        for name, float_convs in (("all_int8", set()), ("mix", {x for u in fp16 for x in unit_convs(c.convs, u)})):
            cams = score(c.graph(float_convs, mix.high_precision))
            row[name] = (_agreement(cams["120"]), _agreement(cams["60"]))
        rows.append(row)
        if log:
            log(f"  calibration {method}: all INT8 {100 * row['all_int8'][0]:.3f}% / {100 * row['all_int8'][1]:.3f}%, "
                f"mix {100 * row['mix'][0]:.3f}% / {100 * row['mix'][1]:.3f}%")
    return rows
