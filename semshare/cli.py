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


def _no_metavar(param):
    """A flag takes no value: show none in ``--help`` (Typer would print ``<bool>``)."""
    if param is not None and getattr(param, "is_flag", False) and param.metavar is None:
        param.metavar = ""
    return param


class _Group(typer.core.TyperGroup):
    """The root command: usage errors as one line in semshare's style (``error: ...``), no ``<bool>`` shown
    for flags in ``--help``, and the environment's failures (a full disk, no memory) as one line, not a traceback."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        for command in (self, *self.commands.values()):
            for param in command.params:
                _no_metavar(param)
            make_help = command.get_help_option  # --help is made per context, outside .params
            command.get_help_option = lambda ctx, make=make_help: _no_metavar(make(ctx))  # type: ignore[method-assign]

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:  # typer >= 0.20 vendors click
            from typer._click.exceptions import ClickException, NoArgsIsHelpError
        except ImportError:  # pragma: no cover - older typer on click
            from click.exceptions import ClickException, NoArgsIsHelpError

        code: object = 0
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except NoArgsIsHelpError as exc:
            if not standalone_mode:
                raise
            exc.show()
            code = exc.exit_code
        except ClickException as exc:
            if not standalone_mode:
                raise
            ctx = getattr(exc, "ctx", None)
            where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            typer.secho(f"error: {exc.format_message()}{where}", err=True, fg=typer.colors.RED)
            code = exc.exit_code
        except typer.Abort:
            typer.secho("error: interrupted", err=True, fg=typer.colors.RED)
            code = 130
        except MemoryError:
            typer.secho("error: out of memory; use a smaller --height/--width or --batch", err=True, fg=typer.colors.RED)
            code = 2
        except OSError as exc:  # the environment, not the input: one line naming the file
            typer.secho(f"error: {exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""), err=True,
                        fg=typer.colors.RED)
            code = 2
        if code == 130:
            typer.secho("error: interrupted; nothing half-written is left", err=True, fg=typer.colors.RED)
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="semshare",
    help="Shared-semantics dual-camera scene parsing: PyTorch checkpoints -> ONNX -> TensorRT, with honest benchmarks.",
    cls=_Group,
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


def _print_version(value: bool) -> None:
    if value:
        from semshare import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", help="print the version and exit", is_eager=True,
                                          callback=_print_version)] = False,
) -> None:
    """semshare: export, build, benchmark and run the shared-semantics scene-parsing networks."""


VariantArg = Annotated[str, typer.Argument(help=f"model variant: {', '.join(VARIANTS)}", show_default=False)]
CheckpointOpt = Annotated[Path | None, typer.Option("--checkpoint", "-c", help="a .pth checkpoint (the authors' or yours)")]
RigOpt = Annotated[Path | None, typer.Option("--rig", help="camera rig JSON/YAML (default: the authors' rig)")]
HeightOpt = Annotated[int, typer.Option("--height", help="model input height")]
WidthOpt = Annotated[int, typer.Option("--width", help="model input width")]
#: infer / bench: an ONNX or engine fixes the size, so these default to "the artefact's, else 1216x1920".
RunHeightOpt = Annotated[int | None, typer.Option(
    "--height", help="model input height (default: the ONNX/engine's, else 1216)", show_default=False)]
RunWidthOpt = Annotated[int | None, typer.Option(
    "--width", help="model input width (default: the ONNX/engine's, else 1920)", show_default=False)]


@app.command()
def infer(
    source: Annotated[Path | None, typer.Argument(help="a fov120_N image, a folder of pairs, or a directory tree (or use --video120/--video60)")] = None,
    variant: Annotated[str | None, typer.Option("--variant", "-m", help=f"one of: {', '.join(VARIANTS)} (default: the "
                                                "ONNX/engine's, else mobilenetv3_tightly)", show_default=False)] = None,
    checkpoint: CheckpointOpt = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="output folder for masks and overlays")] = Path("out/infer"),
    device: Annotated[Device, typer.Option("--device", help="torch device")] = Device.cpu,
    height: RunHeightOpt = None,
    width: RunWidthOpt = None,
    overlays: Annotated[bool, typer.Option("--overlay/--no-overlay", help="also write overlays")] = True,
    rig: RigOpt = None,
    backend: Annotated[str | None, typer.Option("--backend", "-b", help="torch[:cpu|cuda], onnxruntime[:cpu|cuda|tensorrt] "
                                                "(needs --onnx) or tensorrt[:graphs] (needs --engine); default: the artefact's")] = None,
    onnx: Annotated[Path | None, typer.Option("--onnx", help="an ONNX from `semshare export` (onnxruntime backend)")] = None,
    engine: Annotated[Path | None, typer.Option("--engine", help="an engine from `semshare build-engine` (tensorrt backend)")] = None,
    video120: Annotated[Path | None, typer.Option("--video120", help="the 120-degree camera's video (with --video60)")] = None,
    video60: Annotated[Path | None, typer.Option("--video60", help="the 60-degree camera's video, frame-synchronised")] = None,
    frames: Annotated[bool, typer.Option("--frames", help="videos: write PNG masks per frame pair instead of mask videos")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="redo pairs whose outputs exist (default: skip them)")] = False,
) -> None:
    """Segment image pairs (or two synchronised videos) and write coloured masks (and overlays) per camera."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    from semshare.infer import run_infer, run_infer_video
    from semshare.runtime import Segmenter
    from semshare.validate import check_infer

    class Rate(ProgressColumn):
        def render(self, task) -> Text:
            return Text(f"{task.speed:.2f} pairs/s" if task.speed else "")

    try:
        if variant is not None:
            _check_variant(variant)
        if (video120 is None) != (video60 is None) or (video120 is not None) == (source is not None):
            raise SemshareError("pass either SOURCE (image pairs) or both --video120 A.mp4 and --video60 B.mp4")
        if onnx is not None and engine is not None:
            raise SemshareError("pass one model: --onnx or --engine (or --checkpoint for torch)")
        torch_backend = onnx is None and engine is None  # Segmenter.load refuses a --backend of another artefact
        variant, (height, width) = check_infer(source, output, variant, torch_backend, onnx, engine, checkpoint,
                                               height, width, device.value, rig, videos=(video120, video60))
        with warnings.catch_warnings():
            warnings.showwarning = _warn
            seg = Segmenter.load(onnx or engine or checkpoint, variant if torch_backend else None, backend, device.value,
                                 size=(height, width) if torch_backend else None, rig=_rig(rig))
        with seg, Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                           Rate(), TimeElapsedColumn(), transient=True, console=Console(stderr=True),
                           disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task("pairs", total=None)
            kw = dict(overlays=overlays, overwrite=overwrite, progress=lambda n: bar.advance(task, n),
                      on_pairs=lambda n: bar.update(task, total=n))
            if video120 is not None:
                result = run_infer_video(video120, video60, output, seg, frames=frames, **kw)
            else:
                result = run_infer(source, output, seg, **kw)
    except SemshareError as exc:
        raise _fail(exc) from None
    for p in result.problems:
        typer.secho(f"skipped {p.path}: {p.reason}", err=True, fg=typer.colors.YELLOW)
    if seg.info.get("plugin_nodes"):
        result.notes.append(f"{seg.label}: the TensorRT plugin nodes {seg.info['plugin_nodes']}")
    for note in result.notes:
        typer.secho(f"note: {note}", err=True)
    typer.echo(result.summary(output))
    if result.problems:
        raise typer.Exit(1)


# --- export (issue 3) -------------------------------------------------------------------------------


class Target(str, Enum):
    tensorrt = "tensorrt"
    onnx = "onnx"


@app.command()
def export(
    variant: VariantArg,
    output: Annotated[Path, typer.Option("--output", "-o", help="the .onnx file to write (its manifest: same name, .json)")],
    checkpoint: CheckpointOpt = None,
    target: Annotated[Target, typer.Option("--target", help="tensorrt: semshare plugin nodes; onnx: standard ops only")] = Target.tensorrt,
    height: HeightOpt = 1216,
    width: WidthOpt = 1920,
    batch: Annotated[int, typer.Option("--batch", help="fixed batch size")] = 1,
    dynamic_batch: Annotated[bool, typer.Option("--dynamic-batch", help="symbolic batch dimension (excludes --batch)")] = False,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset, 16..19")] = 17,
    rig: RigOpt = None,
    homography_input: Annotated[bool, typer.Option("--homography-input", help="homographies become graph inputs (one engine, several rigs)")] = False,
    simplify: Annotated[bool, typer.Option("--simplify/--no-simplify", help="fold constants and shape chains (needs onnxscript)")] = False,
    verify: Annotated[bool, typer.Option("--verify/--no-verify", help="check the graph and compare ONNX Runtime with PyTorch")] = True,
    verify_pair: Annotated[Path | None, typer.Option("--verify-pair", help="a fov120_N image (with its fov60_N partner) for the check; default: a synthetic pair")] = None,
) -> None:
    """Export a variant to ONNX (TensorRT plugin nodes or standard ops), verified, with a manifest."""
    from semshare.export import export_onnx
    from semshare.validate import check_export

    try:
        _check_variant(variant)
        check_export(variant, output, height, width, batch, dynamic_batch, checkpoint, verify_pair)
        result = export_onnx(variant, output, checkpoint=checkpoint, target=target.value, height=height, width=width,
                             batch=batch, dynamic_batch=dynamic_batch, opset=opset, rig=_rig(rig),
                             homography_input=homography_input, simplify=simplify, verify=verify,
                             verify_pair=verify_pair, log=typer.echo)
    except SemshareError as exc:
        raise _fail(exc) from None
    for note in result.warnings:
        _warn(note)
    typer.echo(f"wrote {result.model_path} and {result.manifest_path}")


# --- build-engine, quantize, doctor (issue 5) ---------------------------------------------------------

PrecisionOpt = Annotated[str, typer.Option("--precision", "-p", help="fp32, fp16 or int8 (int8 needs --calib-dir)")]
CalibDirOpt = Annotated[Path | None, typer.Option("--calib-dir", help="folder of fov120_N/fov60_N pairs for INT8 calibration")]
HighPrecisionOpt = Annotated[str, typer.Option(
    "--high-precision", help="int8: what the layers that are not quantized compute in, fp16 or fp32")]
CalibCountOpt = Annotated[int, typer.Option("--calib-count", help="use at most this many pairs of --calib-dir (and of --val-dir)")]
ValDirOpt = Annotated[Path | None, typer.Option(
    "--val-dir", help="int8: held-out pairs to score on (default: the last quarter of --calib-dir, never calibrated on)")]
MinAgreementOpt = Annotated[float, typer.Option(
    "--min-agreement", help="int8: margin-filtered agreement with FP32 on both cameras; the most sensitive layer groups "
    "stay FP16 until it is met")]
MinInt8ShareOpt = Annotated[float, typer.Option(
    "--min-int8-share", help="int8: refuse a mix with fewer of the Convs INT8 than this share")]


@app.command("build-engine")
def build_engine_cmd(
    onnx_path: Annotated[Path, typer.Argument(help="a semshare export (MODEL.onnx with MODEL.json beside it)")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="engine path (default: MODEL.<precision>.<target>.engine)")] = None,
    precision: PrecisionOpt = "fp16",
    target: Annotated[str, typer.Option("--target", "-t", help="preset: orin, thor or desktop")] = "desktop",
    calib_dir: CalibDirOpt = None,
    calib_count: CalibCountOpt = 32,
    high_precision: HighPrecisionOpt = "fp16",
    val_dir: ValDirOpt = None,
    min_agreement: MinAgreementOpt = 0.99,
    min_int8_share: MinInt8ShareOpt = 0.5,
    batch: Annotated[str | None, typer.Option("--batch", help="N or MIN:OPT:MAX for a --dynamic-batch export")] = None,
    dla_core: Annotated[int | None, typer.Option("--dla-core", help="run on this DLA core, GPU fallback (orin)")] = None,
    timing_cache: Annotated[Path | None, typer.Option("--timing-cache", help="timing cache file (default ~/.cache/semshare/)")] = None,
    no_timing_cache: Annotated[bool, typer.Option("--no-timing-cache", help="do not read or write a timing cache")] = False,
    workspace: Annotated[float | None, typer.Option("--workspace", help="workspace pool in GiB (preset default)")] = None,
    opt_level: Annotated[int | None, typer.Option("--opt-level", help="builder optimisation level 0..5 (default 3)")] = None,
    hardware_compat: Annotated[str, typer.Option("--hardware-compat", help="none, ampere_plus or same_cc (desktop)")] = "none",
    plugin_library: Annotated[Path | None, typer.Option("--plugin-lib", help="libsemshare_plugins.so (default: search)")] = None,
    checkpoint: CheckpointOpt = None,
    report: Annotated[Path | None, typer.Option("--report", help="also write the accuracy report (JSON) of the prepared ONNX")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", help="TensorRT's verbose log")] = False,
) -> None:
    """Build a strongly typed TensorRT engine (+ manifest) from a semshare ONNX export."""
    from semshare.engine.build import BuildRequest, build_engine, parse_batch
    from semshare.validate import check_build_engine

    out = output or onnx_path.with_name(f"{onnx_path.stem}.{precision}.{target}.engine")
    try:
        check_build_engine(onnx_path, out, precision, report, None if no_timing_cache else timing_cache)
        req = BuildRequest(onnx_path, out, precision, target, calib_dir, calib_count, parse_batch(batch), dla_core,
                           timing_cache, no_timing_cache, workspace, opt_level, hardware_compat, plugin_library,
                           checkpoint, report, high_precision, val_dir, min_agreement, min_int8_share)
        result = build_engine(req, log=lambda m: typer.echo(m, err=True), verbose=verbose)
    except SemshareError as exc:
        raise _fail(exc) from None
    typer.echo(f"{result.engine} ({result.engine.stat().st_size / 1e6:.1f} MB, {result.seconds:.0f} s); manifest {result.manifest}")


@app.command()
def quantize(
    onnx_path: Annotated[Path, typer.Argument(help="a semshare export (MODEL.onnx with MODEL.json beside it)")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="prepared ONNX (default: MODEL.<precision>.onnx)")] = None,
    precision: PrecisionOpt = "int8",
    calib_dir: CalibDirOpt = None,
    calib_count: CalibCountOpt = 32,
    high_precision: HighPrecisionOpt = "fp16",
    val_dir: ValDirOpt = None,
    min_agreement: MinAgreementOpt = 0.99,
    min_int8_share: MinInt8ShareOpt = 0.5,
    checkpoint: CheckpointOpt = None,
    report: Annotated[Path | None, typer.Option("--report", help="accuracy report JSON (default: OUTPUT.accuracy.json)")] = None,
    compare: Annotated[str, typer.Option("--compare", help="comma-separated precisions to report besides --precision")] = "",
    method: Annotated[str, typer.Option("--calib-method", help="MinMax, Entropy or Percentile")] = "MinMax",
    compare_methods: Annotated[bool, typer.Option(
        "--compare-methods", help="int8: also calibrate with every --calib-method and compare them in the report")] = False,
) -> None:
    """Prepare the fp16 / Q/DQ-int8 ONNX a strongly typed engine is built from, and report its accuracy (CPU)."""
    import tempfile

    from semshare.engine.build import find_calibration_pairs
    from semshare.precision import check_options, prepare_precision
    from semshare.validate import check_quantize

    out = output or onnx_path.with_name(f"{onnx_path.stem}.{precision}.onnx")
    try:
        wanted = [p for p in compare.split(",") if p]
        if "int8" in check_options(precision, wanted, method, high_precision, min_agreement, min_int8_share) \
                and calib_dir is None:
            raise SemshareError("--precision int8 needs calibration data: pass --calib-dir FOLDER of fov120_N/fov60_N pairs")
        measure = calib_dir is not None or val_dir is not None or report is not None or bool(wanted)
        report_path = (report or out.with_suffix(".accuracy.json")) if measure else None
        check_quantize(onnx_path, out, report_path, checkpoint, calib_count)
        with tempfile.TemporaryDirectory(prefix="semshare-quantize-") as tmp:
            pairs = find_calibration_pairs(calib_dir, calib_count) if calib_dir is not None else []
            val_pairs = find_calibration_pairs(val_dir, calib_count) if val_dir is not None else []
            if measure and not pairs and not val_pairs:  # fp16/fp32 report without pairs: the synthetic pair, said so
                from semshare.data import write_synthetic_pair

                typer.echo("no --calib-dir: the accuracy report is measured on the synthetic pair "
                           "(semshare.data.synthetic_pair); pass --calib-dir FOLDER for your cameras", err=True)
                pairs = [write_synthetic_pair(tmp, "synthetic")]
            prepare_precision(onnx_path, out, precision, pairs, checkpoint, report_path, wanted, method,
                              log=lambda m: typer.echo(m, err=True), high_precision=high_precision,
                              val_pairs=val_pairs, min_agreement=min_agreement, min_int8_share=min_int8_share,
                              methods=compare_methods)
    except SemshareError as exc:
        raise _fail(exc) from None
    typer.echo(f"{out}")


@app.command()
def doctor() -> None:
    """Report what is installed and usable (Python, torch, ONNX Runtime, TensorRT, plugins, GPU, Jetson)."""
    from semshare.doctor import format_checks, run_checks

    typer.echo(format_checks(run_checks()))


# --- bench, demo (issue 6) ----------------------------------------------------------------------------


def _progress_factory(bar):
    def factory(label: str, total: int | None):
        task = bar.add_task(label, total=total)
        return lambda n: bar.advance(task, n)

    return factory


def _write_output(path: Path, text: str) -> None:
    """Write a report at the end of a run; if that fails after all (the folder vanished, the disk filled up),
    the report goes to a temp file so the run's results are not lost, and the command fails naming both."""
    from semshare.io import OutputError, atomic_write_text

    if str(path) == "-":
        typer.echo(text, nl=False)
        return
    try:
        atomic_write_text(path, text)
    except OutputError as exc:
        import tempfile

        fd, rescue = tempfile.mkstemp(prefix="semshare-report-", suffix=path.suffix)
        with open(fd, "w") as f:
            f.write(text)
        raise SemshareError(f"{exc}; the results were saved to {rescue} instead") from None


@app.command()
def bench(
    backend: Annotated[str, typer.Option("--backend", "-b", help="comma-separated: torch[:cpu|cuda][:fp16], "
                                         "onnxruntime[:cpu|cuda|tensorrt][:fp16], onnxruntime:cpu:int8 (needs --calib-dir "
                                         "or --pairs), tensorrt[:graphs]; the first is the reference")] = "torch,onnxruntime",
    variant: Annotated[str | None, typer.Option("--variant", "-m", help=f"one of: {', '.join(VARIANTS)} (default: the ONNX/engine manifest's)")] = None,
    checkpoint: CheckpointOpt = None,
    onnx: Annotated[Path | None, typer.Option("--onnx", help="an ONNX from `semshare export` (its .json manifest beside it)")] = None,
    engine: Annotated[Path | None, typer.Option("--engine", help="an engine from `semshare build-engine`")] = None,
    pairs: Annotated[Path | None, typer.Option("--pairs", help="a fov120_N image or a folder of pairs (default: the synthetic pair)")] = None,
    calib_dir: CalibDirOpt = None,
    batch: Annotated[int, typer.Option("--batch", help="camera pairs per call")] = 1,
    warmup: Annotated[int, typer.Option("--warmup", help="untimed iterations first")] = 3,
    iterations: Annotated[int, typer.Option("--iterations", "-n", help="timed iterations")] = 20,
    duration: Annotated[float | None, typer.Option("--duration", help="time for this many seconds instead of --iterations")] = None,
    height: RunHeightOpt = None,
    width: RunWidthOpt = None,
    device: Annotated[Device, typer.Option("--device", help="default device for backends that name none")] = Device.cpu,
    fp16: Annotated[bool, typer.Option("--fp16", help="fp16 for backends that name no precision")] = False,
    cuda_graphs: Annotated[bool, typer.Option("--cuda-graphs", help="replay the tensorrt backend from a CUDA graph")] = False,
    threads: Annotated[int | None, typer.Option("--threads", help="CPU threads for torch and ONNX Runtime (default: theirs)")] = None,
    plugins: Annotated[Path | None, typer.Option("--plugins", help="libsemshare_plugins.so (default: the usual search)")] = None,
    check: Annotated[bool, typer.Option("--check", help="compare every backend's outputs with the first's")] = False,
    rtol: Annotated[float | None, typer.Option("--rtol", help="--check: max |logit difference| between fp32 backends, as a fraction of max |logit| (default 1e-2)")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="write the full report as JSON ('-' = stdout)")] = None,
    csv_out: Annotated[Path | None, typer.Option("--csv", help="write one CSV row per backend ('-' = stdout)")] = None,
    rig: RigOpt = None,
) -> None:
    """Latency percentiles, pairs/s, GPU vs end-to-end time and memory of several backends in one run."""
    import json

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from semshare.bench import BenchConfig, run_bench
    from semshare.bench.report import render, to_csv
    from semshare.bench.run import check_failed

    quiet = "-" in (str(json_out), str(csv_out))
    console = Console(stderr=quiet, width=None if (sys.stderr if quiet else sys.stdout).isatty() else 160)
    from semshare.validate import check_bench

    try:
        if variant is not None:
            _check_variant(variant)
        height, width = check_bench(json_out, csv_out, pairs, variant, onnx, engine, checkpoint, height, width, batch,
                                    device.value)
        cfg = BenchConfig(backends=[b for b in backend.split(",") if b.strip()], variant=variant, checkpoint=checkpoint,
                          onnx=onnx, engine=engine, pairs=pairs, calib_dir=calib_dir, height=height, width=width, batch=batch,
                          warmup=warmup, iterations=iterations, duration=duration, device=device.value,
                          precision="fp16" if fp16 else "fp32", cuda_graphs=cuda_graphs, threads=threads,
                          plugin_library=plugins, rig=_rig(rig), check=check, rtol=rtol)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=Console(stderr=True), transient=True, disable=not sys.stderr.isatty()) as bar:
            report = run_bench(cfg, progress=_progress_factory(bar), log=lambda m: bar.console.print(m, markup=False, highlight=False))
        if json_out is not None:
            _write_output(json_out, json.dumps(report, indent=2) + "\n")
        if csv_out is not None:
            _write_output(csv_out, to_csv(report))
    except SemshareError as exc:
        raise _fail(exc) from None
    render(report, console)
    if check_failed(report):
        raise typer.Exit(4)



@app.command()
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="folder for the ONNX, manifest, masks and report")] = Path("out/demo"),
    pairs: Annotated[Path | None, typer.Option("--pairs", help="use the first pair of this folder (default: a synthetic pair)")] = None,
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", "-c", help="a .pth checkpoint (default: $SEMSHARE_CHECKPOINT, else random weights)")] = None,
    height: HeightOpt = 1216,
    width: WidthOpt = 1920,
    warmup: Annotated[int, typer.Option("--warmup", help="untimed iterations per backend")] = 1,
    iterations: Annotated[int, typer.Option("--iterations", "-n", help="timed iterations per backend")] = 3,
) -> None:
    """The whole pipeline on this machine: export, verify, benchmark (PyTorch, ONNX Runtime, TensorRT if present), masks."""
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from semshare.bench.report import render
    from semshare.demo import run_demo
    from semshare.validate import check_demo

    console = Console(width=None if sys.stdout.isatty() else 160)
    t0 = time.perf_counter()
    try:
        check_demo(output, pairs, checkpoint, height, width, warmup, iterations)
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=Console(stderr=True), transient=True, disable=not sys.stderr.isatty()) as bar:
            result = run_demo(output, pairs, checkpoint, height, width, warmup, iterations,
                              progress=_progress_factory(bar), log=lambda m: bar.console.print(m, markup=False, highlight=False))
    except SemshareError as exc:
        raise _fail(exc) from None
    render(result.report["bench"], console)
    console.print(f"\n[bold]demo finished in {time.perf_counter() - t0:.0f} s; everything is in {output}/[/bold]")
    for key, label in (("onnx", "ONNX"), ("manifest", "manifest"), ("engine", "TensorRT engine"), ("pair", "input pair"),
                       ("masks", "masks + overlays"), ("report", "JSON report")):
        if key in result.files:
            console.print(f"  {label:<16} {result.files[key]}", markup=False)
    if not result.report["steps"]["tensorrt"]["built"]:
        console.print(f"  TensorRT engine  not built: {result.report['steps']['tensorrt']['reason']}", markup=False)
    if result.report["random_weights"]:
        console.print("[bold yellow]RANDOM weights: masks are meaningless; set SEMSHARE_CHECKPOINT=path.pth for real ones[/bold yellow]")
    from semshare.bench.run import check_failed

    if check_failed(result.report["bench"]):
        raise typer.Exit(4)


def main() -> None:
    app()
