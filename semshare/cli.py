"""The ``semshare`` command line: Typer wiring only (parse -> call one library function -> print).

Domain errors (SemshareError) become a one-line message and the class's exit code here, nowhere else.
Heavy modules (torch, onnxruntime, tensorrt) are imported inside the commands, so ``--help`` is instant.
"""

from __future__ import annotations

import sys
import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from semshare.errors import SemshareError

app = typer.Typer(
    name="semshare",
    help="Shared-semantics dual-camera scene parsing: PyTorch checkpoints -> ONNX -> TensorRT, with honest benchmarks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

VARIANTS = ("mobilenetv3", "mobilenetv3_loosely", "mobilenetv3_tightly")


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


def _fail(exc: SemshareError) -> typer.Exit:
    typer.secho(f"error: {exc}", err=True, fg=typer.colors.RED)
    return typer.Exit(exc.exit_code)


def _warn(message: warnings.WarningMessage | str, *args, **kw) -> None:
    typer.secho(f"WARNING: {message}", err=True, fg=typer.colors.YELLOW, bold=True)


def _check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise SemshareError(f"unknown variant {variant!r}; choose one of: {', '.join(VARIANTS)}")
    return variant


def _rig(path: Path | None):
    if path is None:
        return None
    from semshare.rig import Rig

    return Rig.from_file(path)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="print the version and exit")] = False,
) -> None:
    """semshare: export, build, benchmark and run the shared-semantics scene-parsing networks."""
    if version:
        from semshare import __version__

        typer.echo(__version__)
        raise typer.Exit()


VariantArg = Annotated[str, typer.Argument(help=f"model variant: {', '.join(VARIANTS)}", show_default=False)]
CheckpointOpt = Annotated[Path | None, typer.Option("--checkpoint", "-c", help="a .pth checkpoint (the authors' or yours)")]
RigOpt = Annotated[Path | None, typer.Option("--rig", help="camera rig JSON/YAML (default: the authors' rig)")]
HeightOpt = Annotated[int, typer.Option("--height", help="model input height")]
WidthOpt = Annotated[int, typer.Option("--width", help="model input width")]


@app.command()
def infer(
    source: Annotated[Path, typer.Argument(help="a fov120_N image, a folder of pairs, or a directory tree")],
    variant: Annotated[str, typer.Option("--variant", "-m", help=f"one of: {', '.join(VARIANTS)}")] = "mobilenetv3_tightly",
    checkpoint: CheckpointOpt = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="output folder for masks and overlays")] = Path("out/infer"),
    device: Annotated[Device, typer.Option("--device", help="torch device")] = Device.cpu,
    height: HeightOpt = 1216,
    width: WidthOpt = 1920,
    overlays: Annotated[bool, typer.Option("--overlay/--no-overlay", help="also write overlays")] = True,
    rig: RigOpt = None,
) -> None:
    """Segment image pairs and write coloured masks (and overlays) per camera."""
    from rich.progress import Progress

    from semshare.infer import build_torch_model, run_infer, torch_predictor

    try:
        _check_variant(variant)
        with warnings.catch_warnings():
            warnings.showwarning = _warn
            model = build_torch_model(variant, checkpoint, device.value, _rig(rig))
        with Progress(transient=True, disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task("pairs", total=None)
            result = run_infer(source, output, torch_predictor(model, device.value), (height, width), overlays,
                               progress=lambda n: bar.advance(task, n),
                               on_pairs=lambda n: bar.update(task, total=n))
    except SemshareError as exc:
        raise _fail(exc) from None
    for p in result.problems:
        typer.secho(f"skipped {p.path}: {p.reason}", err=True, fg=typer.colors.YELLOW)
    typer.echo(f"{len(result.done)} pair(s) -> {len(result.written)} file(s) in {output}")
    if result.problems:
        raise typer.Exit(1)


# --- export (issue 3) -------------------------------------------------------------------------------


# --- build-engine, quantize, doctor (issue 5) ---------------------------------------------------------


# --- bench, demo (issue 6) ----------------------------------------------------------------------------


def main() -> None:
    app()
