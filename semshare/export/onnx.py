"""``semshare export``: a variant (+ checkpoint) -> a verified ONNX file and its manifest, written atomically.

The chain, in plain sight (:func:`export_onnx`):
check arguments -> build the model -> load the checkpoint -> :func:`~semshare.export.lowering.lower_ops`
for the target -> TorchScript ONNX export (in memory) -> annotate plugin shapes, check the contract ->
verify (checker, shape inference, ONNX Runtime vs PyTorch) -> write model + manifest (temp files + rename).

Exporter: torch.onnx's TorchScript path (``dynamo=False``), whose ``autograd.Function.symbolic`` emits a
custom-domain node directly. Measured with torch 2.13 on tightly at 784x1024: 5 s, opset honoured; the
dynamo exporter took 54 s and left the graph at opset 18 when 17 was asked (its version converter failed).
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from semshare.errors import MissingDependencyError, SemshareError, VerificationError
from semshare.io import json_bytes, write_atomic
from semshare.validate import check_output_file

MIN_OPSET, MAX_OPSET = 16, 19
DEFAULT_OPSET = 17
INPUT_NAMES = ("img120", "img60")
HOMOGRAPHY_NAMES = ("h120_from_60", "h60_from_120")
OUTPUT_NAMES = ("seg120", "seg60")
BATCH_DIM = "batch"

#: The plugin-node counts that are part of the contract (tests assert them too).
EXPECTED_PLUGIN_NODES = {
    "mobilenetv3": {"SpatialCorrelation": 0, "HomographyWarp": 0},
    "mobilenetv3_loosely": {"SpatialCorrelation": 5, "HomographyWarp": 3},
    "mobilenetv3_tightly": {"SpatialCorrelation": 3, "HomographyWarp": 5},
}


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote and how it was checked."""

    model_path: Path
    manifest_path: Path
    manifest: dict
    comparison: object | None = None  # semshare.export.verify.Comparison when verified
    warnings: list[str] = field(default_factory=list)


def check_opset(opset: int) -> int:
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= MAX_OPSET:
        raise SemshareError(
            f"opset {opset} is not supported: GridSample needs opset >= 16, and opset 20's GridSample runs as "
            f"nearest (not bilinear) in TensorRT 10.13-11.1 (NVIDIA/TensorRT#4646); use --opset {MIN_OPSET}..{MAX_OPSET} "
            f"(default {DEFAULT_OPSET})"
        )
    return opset


def _check_args(variant: str, target: str, height: int, width: int, batch: int, dynamic_batch: bool,
                opset: int, homography_input: bool) -> None:
    from semshare.export.lowering import TARGETS
    from semshare.models import list_models
    from semshare.models.lraspp import MIN_INPUT_HEIGHT, MIN_INPUT_WIDTH

    if variant not in list_models():
        raise SemshareError(f"unknown variant {variant!r}; choose one of: {', '.join(list_models())}")
    if target not in TARGETS:
        raise SemshareError(f"unknown target {target!r}; choose one of: {', '.join(TARGETS)}")
    check_opset(opset)
    if height < MIN_INPUT_HEIGHT or width < MIN_INPUT_WIDTH:
        raise SemshareError(
            f"input size {height}x{width} is too small: the LR-ASPP head pools 49x49 at stride 16, so --height and "
            f"--width must be >= {MIN_INPUT_HEIGHT}; use the default 1216x1920"
        )
    if batch < 1:
        raise SemshareError(f"--batch must be >= 1, got {batch}")
    if dynamic_batch and batch != 1:
        raise SemshareError("--batch and --dynamic-batch exclude each other; pass one of them")
    if homography_input and variant == "mobilenetv3":
        raise SemshareError("mobilenetv3 uses no homography; drop --homography-input or export a loosely/tightly variant")


def build_model(variant: str, checkpoint, height: int, width: int, rig=None):
    """The PyTorch model (eval, CPU) and the checkpoint's identity for the manifest."""
    from semshare.models import create_model, load_checkpoint
    from semshare.models.checkpoint import file_sha256

    model = create_model(variant, rig=rig, input_size=(height, width))
    if checkpoint is None:
        source: dict | str = "random weights"
    else:
        load_checkpoint(model, checkpoint)
        source = {"path": str(checkpoint), "sha256": file_sha256(checkpoint)}
    return model.eval(), source


class _ExportWrapper:
    """Factory of the traced module: fixes the positional inputs of the model."""

    @staticmethod
    def make(model, homography_input: bool):
        from torch import nn

        class Wrapper(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, img120, img60, *homographies):
                return self.model(img120, img60, *homographies) if homography_input else self.model(img120, img60)

        return Wrapper().eval()


def example_inputs(model, height: int, width: int, batch: int, homography_input: bool, verify_pair=None):
    """Inputs for tracing and verification: the real or synthetic pair, repeated (mirrored) to ``batch``.

    Returns ``(names, tensors)``; homographies are the rig's defaults, tiled to the batch.
    """
    import torch

    from semshare.data import load_pair, preprocess, synthetic_pair

    if verify_pair is not None:
        img120, img60 = load_pair(verify_pair, (height, width))
    else:
        rig = getattr(model, "rig", None)
        pil120, pil60 = synthetic_pair(rig=rig)
        img120, img60 = preprocess(pil120, (height, width)), preprocess(pil60, (height, width))
    reps120 = [img120 if i % 2 == 0 else img120.flip(-1) for i in range(batch)]
    reps60 = [img60 if i % 2 == 0 else img60.flip(-1) for i in range(batch)]
    names, tensors = list(INPUT_NAMES), [torch.cat(reps120), torch.cat(reps60)]
    if homography_input:
        a, b = model.rig_homographies(height, width)
        names += list(HOMOGRAPHY_NAMES)
        tensors += [a.expand(batch, 3, 3).contiguous(), b.expand(batch, 3, 3).contiguous()]
    return names, tensors


def trace_to_onnx(model, target: str, inputs: list, input_names: list[str], opset: int, dynamic_batch: bool):
    """Export the lowered copy of ``model`` with the TorchScript exporter; returns (ModelProto, warnings)."""
    import onnx
    import torch

    from semshare.export.exporter_fixes import exporter_fixes
    from semshare.export.lowering import ExportHomographyWarp, ExportSpatialCorrelation, lower_ops

    lowered = _ExportWrapper.make(lower_ops(model, target), len(input_names) > 2)
    has_plugins = target == "tensorrt" and any(isinstance(m, (ExportHomographyWarp, ExportSpatialCorrelation))
                                               for m in lowered.modules())
    dynamic_axes = {n: {0: BATCH_DIM} for n in (*input_names, *OUTPUT_NAMES)} if dynamic_batch else None
    buf = io.BytesIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad(), exporter_fixes():
            torch.onnx.export(lowered, tuple(inputs), buf, dynamo=False, opset_version=opset,
                              input_names=input_names, output_names=list(OUTPUT_NAMES), dynamic_axes=dynamic_axes,
                              do_constant_folding=True, autograd_inlining=False,
                              custom_opsets={"semshare": 1} if has_plugins else None)
    notes = sorted({str(w.message).splitlines()[0] for w in caught
                    if not issubclass(w.category, (DeprecationWarning, FutureWarning, torch.jit.TracerWarning))
                    and "legacy TorchScript" not in str(w.message)})
    return onnx.load_from_string(buf.getvalue()), notes


def simplify_graph(model):
    """Constant folding, shape-chain folding and dead-code removal with onnxscript's optimizer.

    Custom-domain nodes are kept as they are. Optional (``--simplify``): ONNX Runtime and TensorRT do the
    same folding themselves, and onnxscript is not a core dependency.
    """
    try:
        import onnxscript.optimizer
    except ImportError:
        raise MissingDependencyError("--simplify needs onnxscript: pip install onnxscript (or drop --simplify)") from None
    return onnxscript.optimizer.optimize(model)


def finish_graph(model, variant: str, target: str, dynamic_batch: bool, simplify: bool):
    """Simplify, annotate plugin shapes, check the node contract; returns the ModelProto ready to verify."""
    import onnx

    from semshare.export.graph import annotate_plugin_shapes, plugin_nodes, set_batch_dim

    if simplify:
        model = simplify_graph(model)
    if model.functions:
        raise SemshareError(f"exported graph holds local functions {[f.name for f in model.functions]}; "
                            "this is a semshare bug (TensorRT would prefer them to the plugins)")
    if dynamic_batch:
        set_batch_dim(model, [*INPUT_NAMES, *HOMOGRAPHY_NAMES, *OUTPUT_NAMES], BATCH_DIM)
    model = annotate_plugin_shapes(model, BATCH_DIM if dynamic_batch else None)
    counts = {name: 0 for name in EXPECTED_PLUGIN_NODES[variant]}
    for n in plugin_nodes(model):
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    expected = EXPECTED_PLUGIN_NODES[variant] if target == "tensorrt" else dict.fromkeys(counts, 0)
    if counts != expected:
        raise SemshareError(f"exported {variant} ({target}) has plugin nodes {counts}, expected {expected}; "
                            "this is a semshare bug")
    doubles = [vi.name for vi in (*model.graph.value_info, *model.graph.input, *model.graph.output)
               if vi.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE]
    doubles += [t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.DOUBLE]
    if doubles:
        raise SemshareError(f"exported graph computes in float64 ({', '.join(doubles[:3])}), which TensorRT and "
                            "ONNX Runtime's GridSample do not support; this is a semshare bug, please report it")
    model.doc_string = f"semshare {variant}, target {target}"
    return model


def _versions() -> dict:
    import onnx
    import torch

    from semshare import __version__

    v = {"semshare": __version__, "torch": torch.__version__, "onnx": onnx.__version__}
    try:
        import onnxruntime

        v["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return v


def build_manifest(model, onnx_model, *, variant: str, target: str, opset: int, height: int, width: int,
                   batch: int, dynamic_batch: bool, rig, homography_input: bool, checkpoint_source,
                   comparison, model_file: str, model_sha256: str) -> dict:
    from semshare.data import CLASS_NAMES, IMAGENET_MEAN, IMAGENET_STD, PALETTE
    from semshare.export.graph import plugin_nodes
    from semshare.ops.contracts import CONTRACTS, DOMAIN, PLUGIN_NAMESPACE, PLUGIN_VERSION

    def io_entries(values):
        out = []
        for vi in values:
            dims = [d.dim_param if d.dim_param else d.dim_value for d in vi.type.tensor_type.shape.dim]
            out.append({"name": vi.name, "shape": dims,
                        "dtype": {1: "float32", 10: "float16"}.get(vi.type.tensor_type.elem_type, str(vi.type.tensor_type.elem_type))})
        return out

    counts: dict[str, int] = {}
    for n in plugin_nodes(onnx_model):
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    custom_ops = [{"domain": DOMAIN, "op_type": name, "plugin_namespace": PLUGIN_NAMESPACE,
                   "plugin_version": PLUGIN_VERSION, "count": c, "inputs": list(CONTRACTS[name].inputs)}
                  for name, c in sorted(counts.items())]
    rig_obj = getattr(model, "rig", None)
    homs = None
    if homography_input:
        a, b = model.rig_homographies(height, width)
        homs = {HOMOGRAPHY_NAMES[0]: a[0].tolist(), HOMOGRAPHY_NAMES[1]: b[0].tolist(),
                "note": "normalised src_from_dst (kornia src_homo_dst) 3x3, one per batch item; these are the rig's"}
    return {
        "format": "semshare-export/1",
        "model_file": model_file,
        "model_sha256": model_sha256,
        "variant": variant,
        "target": target,
        "opset": opset,
        "input_size": [height, width],
        "batch": BATCH_DIM if dynamic_batch else batch,
        "inputs": io_entries(onnx_model.graph.input),
        "outputs": io_entries(onnx_model.graph.output),
        "output_kind": "logits (B, num_classes, H, W); class = argmax over axis 1",
        "normalization": {"color": "RGB", "layout": "NCHW", "scale": 1 / 255,
                          "mean": [round(float(x), 6) for x in IMAGENET_MEAN],
                          "std": [round(float(x), 6) for x in IMAGENET_STD],
                          "formula": "(pixel / 255 - mean) / std, after a bilinear resize to input_size"},
        "classes": {"names": list(CLASS_NAMES), "palette": PALETTE.tolist()},
        "custom_ops": custom_ops,
        "rig": (rig_obj or rig).to_dict() if (rig_obj or rig) is not None else None,
        "homography_inputs": homs,
        "checkpoint": checkpoint_source,
        "verification": comparison.to_dict() if comparison is not None else None,
        "versions": _versions(),
    }


def export_onnx(
    variant: str,
    output: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    target: str = "tensorrt",
    height: int = 1216,
    width: int = 1920,
    batch: int = 1,
    dynamic_batch: bool = False,
    opset: int = DEFAULT_OPSET,
    rig=None,
    homography_input: bool = False,
    simplify: bool = False,
    verify: bool = True,
    verify_pair: str | os.PathLike | None = None,
    log=None,
) -> ExportResult:
    """Export ``variant`` to ``output`` (.onnx) plus ``output`` with .json (the manifest).

    Args:
        target: ``"tensorrt"`` (custom ops as ``semshare`` plugin nodes) or ``"onnx"`` (standard ops only).
        height, width: the fixed input size (>= 784). batch: a fixed batch; ``dynamic_batch``: a symbolic one.
        opset: 16..19 (GridSample; opset 20 runs as nearest in TensorRT 10.13-11.1).
        rig: a :class:`semshare.rig.Rig` (default: the authors'). homography_input: the two homographies
            become graph inputs ``h120_from_60``/``h60_from_120`` of shape (B, 3, 3); their defaults go to
            the manifest.
        simplify: run onnxscript's optimizer (constant folding, dead-code removal).
        verify: checker, shape inference, ONNX Runtime vs PyTorch on ``verify_pair`` (a fov120 image with
            its fov60 partner) or the synthetic pair; a failure raises VerificationError and writes nothing.
        log: a callable receiving progress lines and the verification table (default: silent).

    Raises:
        SemshareError (CheckpointError, VerificationError) with a one-line message; nothing is left on disk.
    """
    log = log or (lambda _msg: None)
    output = Path(output)
    _check_args(variant, target, height, width, batch, dynamic_batch, opset, homography_input)
    check_output_file(output, "--output", (".onnx",), [output.with_suffix(".json")])
    return _export(variant, output, checkpoint, target, height, width, batch, dynamic_batch, opset, rig,
                   homography_input, simplify, verify, verify_pair, log)


def _export(variant, output, checkpoint, target, height, width, batch, dynamic_batch, opset, rig,
            homography_input, simplify, verify, verify_pair, log) -> ExportResult:
    import hashlib

    import torch

    from semshare.export.verify import check_structure, verify_numerics

    model, source = build_model(variant, checkpoint, height, width, rig)
    trace_batch = 2 if dynamic_batch else batch
    names, inputs = example_inputs(model, height, width, trace_batch, homography_input, verify_pair)
    log(f"exporting {variant} ({target}, opset {opset}, {height}x{width}, batch "
        f"{BATCH_DIM if dynamic_batch else batch}) ...")
    onnx_model, notes = trace_to_onnx(model, target, inputs, names, opset, dynamic_batch)
    onnx_model = finish_graph(onnx_model, variant, target, dynamic_batch, simplify)
    comparison = None
    if verify:
        check_structure(onnx_model)
        with torch.inference_mode():
            fwd = model(*inputs) if homography_input else model(inputs[0], inputs[1])
        reference = [t.numpy() for t in fwd]
        comparison = verify_numerics(onnx_model, {n: t.numpy() for n, t in zip(names, inputs, strict=True)},
                                     reference)
        log(comparison.table())
        if not comparison.ok:
            pair = f"pair {Path(verify_pair).name}" if verify_pair is not None else "the synthetic pair"
            raise VerificationError(
                f"exported {variant} ({target}) differs from PyTorch by more than float32 rounding allows "
                f"({comparison.runtime} vs PyTorch on {pair}): {comparison.failures()}; nothing written. Outside "
                "this tolerance the graph computes something else than the model: please report it with the table "
                "above (--no-verify writes the file unchecked)"
            )
    data = onnx_model.SerializeToString()
    manifest = build_manifest(model, onnx_model, variant=variant, target=target, opset=opset, height=height,
                              width=width, batch=batch, dynamic_batch=dynamic_batch, rig=rig,
                              homography_input=homography_input, checkpoint_source=source, comparison=comparison,
                              model_file=output.name, model_sha256=hashlib.sha256(data).hexdigest())
    manifest_path = output.with_suffix(".json")
    write_atomic({output: data, manifest_path: json_bytes(manifest)})  # OutputError names the file that failed
    if checkpoint is None:
        notes.insert(0, "no checkpoint given: the exported model has RANDOM weights (fine for tests and timing); "
                        "pass --checkpoint PATH.pth")
    return ExportResult(output, manifest_path, manifest, comparison, notes)
