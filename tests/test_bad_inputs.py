"""Bad and edge-case inputs over every command, as a table: each case sets up its files, runs the CLI and asserts
the exit code, ONE short line in semshare's style (``error: ...``), no traceback, and that the files around it are
exactly as they were (nothing created, nothing half-written, nothing removed). Most cases fail before any model
is built; the expensive artefacts (one small export at 784x800, a checkpoint) are module-scoped.

At the end: the atomic writer itself (a pre-existing pair, a failure on the second file, permissions, SIGINT and
SIGKILL during a write, two writers at once).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import SMALL
from semshare.cli import app
from semshare.errors import SemshareError

runner = CliRunner()
H, W = SMALL
UNWRITABLE = Path("/proc/semshare-no-such-dir")  # not creatable even by root
MAX_LINE = 400


# --- shared artefacts ------------------------------------------------------------------------------------


@dataclass
class Shared:
    root: Path
    onnx: Path  # mobilenetv3_tightly, target onnx, 784x800, with its manifest
    ckpt3: Path  # a mobilenetv3 state dict (random)
    pairs: Path  # one 800x784 pair
    engine: Path  # a fake engine (bytes) whose manifest records its hash; variant tightly


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Shared:
    import torch

    from semshare.engine.manifest import EngineManifest, engine_manifest_path
    from semshare.export import export_onnx
    from semshare.models import create_model

    root = tmp_path_factory.mktemp("shared")
    onnx = root / "tightly.onnx"
    export_onnx("mobilenetv3_tightly", onnx, target="onnx", height=H, width=W, verify=False)
    ckpt3 = root / "mobilenetv3.pth"
    torch.save(create_model("mobilenetv3").state_dict(), ckpt3)
    pairs = root / "pairs"
    _write_pair(pairs, (W, H))
    engine = root / "tightly.engine"
    engine.write_bytes(b"a serialized engine")
    manifest = EngineManifest(precision="fp16", preset="desktop", tensorrt_version="10.3.0", cuda_version="12.6",
                              gpu_name="GPU", compute_capability="8.9", source_onnx=str(onnx), source_onnx_sha256="0",
                              prepared_onnx_sha256="0", plugin_library=None, plugin_library_sha256=None,
                              calibration_sha256=None, calibration_pairs=0, hardware_compatibility="NONE",
                              dla_core=None, variant="mobilenetv3_tightly",
                              engine_sha256=hashlib.sha256(engine.read_bytes()).hexdigest(),
                              export_manifest=json.loads(onnx.with_suffix(".json").read_text()))
    engine_manifest_path(engine).write_text(json.dumps(manifest.to_dict()))
    return Shared(root, onnx, ckpt3, pairs, engine)


def _write_pair(folder: Path, size: tuple[int, int], key: str = "00001") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for cam in ("120", "60"):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), np.uint8)).save(folder / f"fov{cam}_{key}.png")
    return folder / f"fov120_{key}.png"


def _copy_export(shared: Shared, dst: Path, name: str = "m") -> Path:
    out = dst / f"{name}.onnx"
    shutil.copy(shared.onnx, out)
    shutil.copy(shared.onnx.with_suffix(".json"), out.with_suffix(".json"))
    return out


def _snapshot(*roots: Path) -> dict[str, tuple]:
    """Every path under ``roots`` with its kind, mode and content hash."""
    snap: dict[str, tuple] = {}
    for root in roots:
        for p in [root, *sorted(root.rglob("*"))] if root.exists() else []:
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
            snap[str(p)] = (p.is_dir(), oct(st.st_mode), digest)
    return snap


# --- the table ---------------------------------------------------------------------------------------------

Setup = Callable[[Shared, Path], list[str]]  # (shared, tmp) -> argv


@dataclass
class Case:
    id: str
    argv: Setup
    code: int
    message: str  # a substring of the one line
    lines: int = 1  # non-empty output lines expected (1: just the error)


def _ragged_rig(tmp: Path) -> Path:
    from semshare.rig import Rig

    d = Rig.default().to_dict()
    d["k60"] = [[1796.7, 0, 982.1], [0, 1793.9], [0, 0, 1]]
    p = tmp / "rig.json"
    p.write_text(json.dumps(d))
    return p


def _partial_rig(tmp: Path) -> Path:
    p = tmp / "rig.json"
    p.write_text(json.dumps({"euler_xyz": [0, 0.01, 0]}))
    return p


def _text_rig(tmp: Path) -> Path:
    from semshare.rig import Rig

    d = Rig.default().to_dict()
    d["k120"][0][0] = "967.1"
    p = tmp / "rig.json"
    p.write_text(json.dumps(d))
    return p


def _file(tmp: Path, name: str, data: bytes = b"x") -> Path:
    p = tmp / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def _dir(tmp: Path, name: str) -> Path:
    p = tmp / name
    p.mkdir(parents=True, exist_ok=True)
    return p


def _with(path: Path, *_made: Path) -> Path:
    """``path``, once the files/folders beside it (already made by the arguments) exist."""
    return path


def _truncated_export(shared: Shared, tmp: Path) -> Path:
    out = _copy_export(shared, tmp)
    data = out.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    return out


def _swapped_export(shared: Shared, tmp: Path) -> Path:
    """A valid ONNX file beside a manifest copied from another export (the hash does not match)."""
    import onnx
    from onnx import TensorProto, helper

    out = tmp / "m.onnx"
    x = helper.make_tensor_value_info("img120", TensorProto.FLOAT, [1, 3, H, W])
    g = helper.make_graph([helper.make_node("Identity", ["img120"], ["seg120"])], "g", [x],
                          [helper.make_tensor_value_info("seg120", TensorProto.FLOAT, [1, 3, H, W])])
    onnx.save(helper.make_model(g), str(out))
    shutil.copy(shared.onnx.with_suffix(".json"), out.with_suffix(".json"))
    return out


def _tiny_pair(tmp: Path) -> Path:
    return _write_pair(tmp / "tiny", (1, 1))


def _truncated_pair(shared: Shared, tmp: Path) -> Path:
    folder = tmp / "cut"
    folder.mkdir()
    for src in sorted(shared.pairs.iterdir()):
        data = src.read_bytes()
        (folder / src.name).write_bytes(data[: len(data) // 3] if src.name.startswith("fov120") else data)
    return folder


def _truncated_engine(shared: Shared, tmp: Path) -> Path:
    from semshare.engine.manifest import engine_manifest_path

    eng = tmp / "t.engine"
    eng.write_bytes(shared.engine.read_bytes()[:5])
    shutil.copy(engine_manifest_path(shared.engine), engine_manifest_path(eng))
    return eng


def _s(p: Path) -> str:
    return str(p)


EXPORT = ["export", "mobilenetv3_tightly", "--height", str(H), "--width", str(W), "--no-verify"]

CASES = [
    # --- root ---
    Case("root-unknown-option", lambda s, t: ["export", "--bogus"], 2, "No such option: --bogus"),
    Case("root-unknown-command", lambda s, t: ["frobnicate"], 2, "No such command"),
    Case("root-bad-int", lambda s, t: ["bench", "--batch", "abc"], 2, "Invalid value for '--batch'"),
    Case("root-missing-argument", lambda s, t: ["export"], 2, "Missing argument"),
    # --- export: outputs ---
    Case("export-o-folder", lambda s, t: [*EXPORT, "-o", _s(_dir(t, "out"))], 2, "is a folder"),
    Case("export-o-suffix", lambda s, t: [*EXPORT, "-o", _s(t / "m.txt")], 2, "must end in .onnx"),
    Case("export-o-under-file", lambda s, t: [*EXPORT, "-o", _s(_file(t, "blocker") / "sub" / "m.onnx")], 2,
         "is a file"),
    Case("export-o-unwritable", lambda s, t: [*EXPORT, "-o", _s(UNWRITABLE / "m.onnx")], 2, "cannot write to folder"),
    Case("export-manifest-is-folder", lambda s, t: [*EXPORT, "-o", _s(_dir(t, "m.json").with_suffix(".onnx"))], 2,
         "m.json is a folder"),
    # --- export: sizes and options ---
    Case("export-huge", lambda s, t: [*EXPORT[:2], "--height", "100000", "--width", "100000", "-o", _s(t / "m.onnx")],
         2, "beyond the 8192 px"),
    Case("export-small", lambda s, t: [*EXPORT[:2], "--height", "100", "-o", _s(t / "m.onnx")], 2, "too small"),
    Case("export-batch-0", lambda s, t: [*EXPORT, "--batch", "0", "-o", _s(t / "m.onnx")], 2, "--batch must be >= 1"),
    Case("export-opset", lambda s, t: [*EXPORT, "--opset", "20", "-o", _s(t / "m.onnx")], 2, "opset 20"),
    Case("export-variant", lambda s, t: ["export", "resnet", "-o", _s(t / "m.onnx")], 2, "unknown variant"),
    Case("export-dynamic-and-batch", lambda s, t: [*EXPORT, "--dynamic-batch", "--batch", "2", "-o", _s(t / "m.onnx")],
         2, "exclude each other"),
    # --- export: damaged inputs ---
    Case("export-ckpt-folder", lambda s, t: [*EXPORT, "-c", _s(_dir(t, "ck.pth")), "-o", _s(t / "m.onnx")], 2,
         "is a folder, not a file"),
    Case("export-ckpt-missing", lambda s, t: [*EXPORT, "-c", _s(t / "no.pth"), "-o", _s(t / "m.onnx")], 2,
         "does not exist"),
    Case("export-ckpt-empty", lambda s, t: [*EXPORT, "-c", _s(_file(t, "e.pth", b"")), "-o", _s(t / "m.onnx")], 2,
         "is empty"),
    Case("export-ckpt-garbage", lambda s, t: [*EXPORT, "-c", _s(_file(t, "g.pth", b"PK\x03\x04junk")),
                                              "-o", _s(t / "m.onnx")], 2, "cannot be read"),
    Case("export-ckpt-other-variant", lambda s, t: [*EXPORT, "-c", _s(s.ckpt3), "-o", _s(t / "m.onnx")], 2,
         "is a mobilenetv3 model but -m mobilenetv3_tightly"),
    Case("export-rig-partial", lambda s, t: [*EXPORT, "--rig", _s(_partial_rig(t)), "-o", _s(t / "m.onnx")], 2,
         "missing k60, k120"),
    Case("export-rig-ragged", lambda s, t: [*EXPORT, "--rig", _s(_ragged_rig(t)), "-o", _s(t / "m.onnx")], 2,
         "rows differ in length"),
    Case("export-rig-text", lambda s, t: [*EXPORT, "--rig", _s(_text_rig(t)), "-o", _s(t / "m.onnx")], 2,
         "numbers only"),
    Case("export-rig-syntax", lambda s, t: [*EXPORT, "--rig", _s(_file(t, "r.json", b"{k60:")), "-o", _s(t / "m.onnx")],
         2, "not valid JSON/YAML"),
    Case("export-rig-folder", lambda s, t: [*EXPORT, "--rig", _s(_dir(t, "rig")), "-o", _s(t / "m.onnx")], 2,
         "is a folder"),
    Case("export-verify-pair-tiny", lambda s, t: [*EXPORT[:-1], "--verify-pair", _s(_tiny_pair(t)),
                                                  "-o", _s(t / "m.onnx")], 2, "upscaling it more than 4x"),
    # --- quantize ---
    Case("quantize-missing", lambda s, t: ["quantize", _s(t / "no.onnx"), "-p", "fp16"], 2, "does not exist"),
    Case("quantize-folder", lambda s, t: ["quantize", _s(_dir(t, "d.onnx")), "-p", "fp16", "-o", _s(t / "o.onnx")], 2,
         "is a folder"),
    Case("quantize-truncated", lambda s, t: ["quantize", _s(_truncated_export(s, t)), "-p", "fp16"], 2,
         "does not match its manifest"),
    Case("quantize-swapped", lambda s, t: ["quantize", _s(_swapped_export(s, t)), "-p", "fp16"], 2, "sha256 differs"),
    Case("quantize-no-manifest", lambda s, t: ["quantize", _s(_file(t, "x.onnx", b"\x08\x07")), "-p", "fp16"], 2,
         "no manifest x.json"),
    Case("quantize-bad-manifest", lambda s, t: ["quantize", _s(_with(_file(t, "x.onnx", b"\x08\x07"),
                                                                     _file(t, "x.json", b"{broken"))), "-p", "fp16"],
         2, "cannot read the manifest"),
    Case("quantize-o-folder", lambda s, t: ["quantize", _s(_copy_export(s, t)), "-p", "fp16", "-o", _s(_dir(t, "o"))], 2,
         "is a folder"),
    Case("quantize-o-suffix", lambda s, t: ["quantize", _s(_copy_export(s, t)), "-p", "fp16", "-o", _s(t / "o.bin")], 2,
         "must end in .onnx"),
    Case("quantize-o-manifest-folder", lambda s, t: ["quantize", _s(_copy_export(s, t)), "-p", "fp16", "-o",
                                                     _s(_dir(t, "o.json").with_suffix(".onnx"))], 2, "o.json is a folder"),
    Case("quantize-calib-count-0", lambda s, t: ["quantize", _s(_copy_export(s, t)), "--calib-dir", _s(s.pairs),
                                                 "--calib-count", "0"], 2, "--calib-count must be >= 1"),
    Case("quantize-int8-no-calib", lambda s, t: ["quantize", _s(_copy_export(s, t))], 2, "needs calibration data"),
    Case("quantize-precision", lambda s, t: ["quantize", _s(_copy_export(s, t)), "-p", "int4"], 2, "unknown precision"),
    Case("quantize-method", lambda s, t: ["quantize", _s(_copy_export(s, t)), "-p", "fp16", "--calib-method", "Max"], 2,
         "unknown --calib-method"),
    Case("quantize-calib-missing", lambda s, t: ["quantize", _s(_copy_export(s, t)), "--calib-dir", _s(t / "none")], 2,
         "is not a folder"),
    Case("quantize-calib-empty", lambda s, t: ["quantize", _s(_copy_export(s, t)), "--calib-dir", _s(_dir(t, "c"))], 2,
         "holds no fov120_N/fov60_N"),
    Case("quantize-report-folder", lambda s, t: ["quantize", _s(_copy_export(s, t)), "-p", "fp16", "--report",
                                                 _s(_dir(t, "r.json"))], 2, "r.json is a folder"),
    Case("quantize-report-unwritable", lambda s, t: ["quantize", _s(_copy_export(s, t)), "-p", "fp16", "--report",
                                                     _s(UNWRITABLE / "r.json")], 2, "cannot write to folder"),
    Case("quantize-ckpt-other-variant", lambda s, t: ["quantize", _s(_copy_export(s, t)), "-p", "fp16", "-c",
                                                      _s(s.ckpt3), "--report", _s(t / "r.json")], 2,
         "is a mobilenetv3 model"),
    # --- build-engine (all before TensorRT is needed) ---
    Case("build-missing", lambda s, t: ["build-engine", _s(t / "no.onnx")], 2, "does not exist"),
    Case("build-truncated", lambda s, t: ["build-engine", _s(_truncated_export(s, t))], 2, "does not match its manifest"),
    Case("build-dla-5", lambda s, t: ["build-engine", _s(_copy_export(s, t)), "--target", "orin", "--dla-core", "5"], 2,
         "pass --dla-core 0 or 1"),
    Case("build-dla-desktop", lambda s, t: ["build-engine", _s(_copy_export(s, t)), "--dla-core", "0"], 2, "no DLA"),
    Case("build-o-folder", lambda s, t: ["build-engine", _s(_copy_export(s, t)), "-o", _s(_dir(t, "e"))], 2,
         "is a folder"),
    Case("build-o-manifest-folder", lambda s, t: ["build-engine", _s(_copy_export(s, t)), "-o",
                                                  _s(_with(t / "e.engine", _dir(t, "e.engine.json")))], 2,
         "e.engine.json is a folder"),
    Case("build-o-unwritable", lambda s, t: ["build-engine", _s(_copy_export(s, t)), "-o", _s(UNWRITABLE / "e.engine")],
         2, "cannot write to folder"),
    Case("build-o-json", lambda s, t: ["build-engine", _s(_copy_export(s, t)), "-o", _s(t / "e.json")], 2, "collide"),
    Case("build-fp16-report", lambda s, t: ["build-engine", _s(_copy_export(s, t)), "--report", _s(t / "r.json")], 2,
         "semshare quantize"),
    Case("build-calib-count-0", lambda s, t: ["build-engine", _s(_copy_export(s, t)), "-p", "int8", "--calib-dir",
                                              _s(s.pairs), "--calib-count", "0"], 2, "--calib-count must be >= 1"),
    Case("build-batch-0", lambda s, t: ["build-engine", _s(_copy_export(s, t)), "--batch", "0"], 2, "--batch '0'"),
    Case("build-timing-cache-folder", lambda s, t: ["build-engine", _s(_copy_export(s, t)), "--timing-cache",
                                                    _s(_dir(t, "tc"))], 2, "is a folder"),
    # --- bench ---
    Case("bench-json-folder", lambda s, t: ["bench", "-m", "mobilenetv3", "--json", _s(_dir(t, "r"))], 2, "is a folder"),
    Case("bench-json-unwritable", lambda s, t: ["bench", "-m", "mobilenetv3", "--json", _s(UNWRITABLE / "r.json")], 2,
         "cannot write to folder"),
    Case("bench-csv-under-file", lambda s, t: ["bench", "-m", "mobilenetv3", "--csv", _s(_file(t, "f") / "r.csv")], 2,
         "is a file"),
    Case("bench-onnx-other-variant", lambda s, t: ["bench", "-b", "onnxruntime", "--onnx", _s(s.onnx), "-m",
                                                   "mobilenetv3"], 2, "is a mobilenetv3_tightly model but -m mobilenetv3"),
    Case("bench-onnx-size", lambda s, t: ["bench", "-b", "onnxruntime", "--onnx", _s(s.onnx), "--height", "896"], 2,
         "differ from the 784x800"),
    Case("bench-onnx-truncated", lambda s, t: ["bench", "-b", "onnxruntime", "--onnx", _s(_truncated_export(s, t))], 2,
         "does not match its manifest"),
    Case("bench-onnx-folder", lambda s, t: ["bench", "-b", "onnxruntime", "--onnx", _s(_dir(t, "m.onnx"))], 2,
         "is a folder"),
    Case("bench-engine-truncated", lambda s, t: ["bench", "-b", "tensorrt", "--engine", _s(_truncated_engine(s, t))], 2,
         "engine .* does not match its manifest"),
    Case("bench-engine-other-variant", lambda s, t: ["bench", "-b", "tensorrt", "--engine", _s(s.engine), "-m",
                                                     "mobilenetv3_loosely"], 2, "is a mobilenetv3_tightly model"),
    Case("bench-ckpt-other-variant", lambda s, t: ["bench", "-b", "torch", "-m", "mobilenetv3_tightly", "-c",
                                                   _s(s.ckpt3)], 2, "is a mobilenetv3 model"),
    Case("bench-ckpt-folder", lambda s, t: ["bench", "-b", "torch", "-m", "mobilenetv3", "-c", _s(_dir(t, "c.pth"))], 2,
         "is a folder"),
    Case("bench-batch-0", lambda s, t: ["bench", "-b", "torch", "-m", "mobilenetv3", "--batch", "0"], 2,
         "--batch must be >= 1"),
    Case("bench-iterations-0", lambda s, t: ["bench", "-b", "torch", "-m", "mobilenetv3", "-n", "0"], 2,
         "--iterations must be >= 1"),
    Case("bench-warmup", lambda s, t: ["bench", "-b", "torch", "-m", "mobilenetv3", "--warmup", "-1"], 2,
         "--warmup must be >= 0"),
    Case("bench-backend", lambda s, t: ["bench", "-b", "tvm", "-m", "mobilenetv3"], 2, "unknown backend 'tvm'"),
    Case("bench-variant", lambda s, t: ["bench", "-m", "resnet"], 2, "unknown variant"),
    Case("bench-huge", lambda s, t: ["bench", "-m", "mobilenetv3", "--height", "100000", "--width", "100000"], 2,
         "beyond the 8192 px"),
    Case("bench-pairs-missing", lambda s, t: ["bench", "-b", "onnxruntime", "--onnx", _s(s.onnx), "--pairs",
                                              _s(t / "none")], 2, "does not exist"),
    Case("bench-pairs-tiny", lambda s, t: ["bench", "-b", "onnxruntime", "--onnx", _s(s.onnx), "--pairs",
                                           _s(_tiny_pair(t))], 2, "upscaling it more than 4x"),
    Case("bench-rig-partial", lambda s, t: ["bench", "-b", "torch", "-m", "mobilenetv3", "--rig", _s(_partial_rig(t))],
         2, "missing k60"),
    # --- infer ---
    Case("infer-o-file", lambda s, t: ["infer", _s(s.pairs), "-o", _s(_file(t, "o.png"))], 2, "is a file"),
    Case("infer-o-unwritable", lambda s, t: ["infer", _s(s.pairs), "-o", _s(UNWRITABLE)], 2, "cannot write to folder"),
    Case("infer-source-missing", lambda s, t: ["infer", _s(t / "none"), "-o", _s(t / "o"), "-b", "onnxruntime",
                                               "--onnx", _s(s.onnx)], 2, "does not exist"),
    Case("infer-variant", lambda s, t: ["infer", _s(s.pairs), "-m", "resnet", "-o", _s(t / "o")], 2, "unknown variant"),
    Case("infer-ckpt-folder", lambda s, t: ["infer", _s(s.pairs), "-c", _s(_dir(t, "c.pth")), "-o", _s(t / "o")], 2,
         "is a folder"),
    Case("infer-ckpt-other-variant", lambda s, t: ["infer", _s(s.pairs), "-m", "mobilenetv3_loosely", "-c", _s(s.ckpt3),
                                                   "-o", _s(t / "o")], 2, "is a mobilenetv3 model"),
    Case("infer-onnx-size", lambda s, t: ["infer", _s(s.pairs), "-b", "onnxruntime", "--onnx", _s(s.onnx), "--width",
                                          "1024", "-o", _s(t / "o")], 2, "differ from the 784x800"),
    Case("infer-onnx-other-variant", lambda s, t: ["infer", _s(s.pairs), "-b", "onnxruntime", "--onnx", _s(s.onnx),
                                                   "-m", "mobilenetv3", "-o", _s(t / "o")], 2, "is a mobilenetv3_tightly"),
    Case("infer-onnx-truncated", lambda s, t: ["infer", _s(s.pairs), "-b", "onnxruntime", "--onnx",
                                               _s(_truncated_export(s, t)), "-o", _s(t / "o")], 2, "sha256 differs"),
    Case("infer-onnx-with-ckpt", lambda s, t: ["infer", _s(s.pairs), "-b", "onnxruntime", "--onnx", _s(s.onnx), "-c",
                                               _s(s.ckpt3), "-o", _s(t / "o")], 2, "--checkpoint is for the torch backend"),
    Case("infer-onnx-with-rig", lambda s, t: ["infer", _s(s.pairs), "-b", "onnxruntime", "--onnx", _s(s.onnx), "--rig",
                                              _s(_partial_rig(t)), "-o", _s(t / "o")], 2, "--rig is for the torch backend"),
    Case("infer-huge", lambda s, t: ["infer", _s(s.pairs), "--height", "9000", "-o", _s(t / "o")], 2, "beyond"),
    Case("infer-tiny-image", lambda s, t: ["infer", _s(_tiny_pair(t)), "-b", "onnxruntime", "--onnx", _s(s.onnx),
                                           "-o", _s(t / "o")], 1, "upscaling it more than 4x", lines=2),
    Case("infer-truncated-image", lambda s, t: ["infer", _s(_truncated_pair(s, t)), "-b", "onnxruntime", "--onnx",
                                                _s(s.onnx), "-o", _s(t / "o")], 1, "cannot read image .*truncated", lines=2),
    Case("bench-pairs-truncated", lambda s, t: ["bench", "-b", "onnxruntime", "--onnx", _s(s.onnx), "--pairs",
                                                _s(_truncated_pair(s, t))], 2, "cannot read image"),
    Case("export-verify-pair-missing", lambda s, t: [*EXPORT[:-1], "--verify-pair", _s(t / "fov120_9.png"),
                                                     "-o", _s(t / "m.onnx")], 2, "does not exist"),
    # --- demo ---
    Case("demo-n-0", lambda s, t: ["demo", "-n", "0", "-o", _s(t / "demo")], 2, "--iterations must be >= 1"),
    Case("demo-warmup", lambda s, t: ["demo", "--warmup", "-1", "-o", _s(t / "demo")], 2, "--warmup must be >= 0"),
    Case("demo-o-file", lambda s, t: ["demo", "-o", _s(_file(t, "demo"))], 2, "is a file"),
    Case("demo-small", lambda s, t: ["demo", "--height", "64", "-o", _s(t / "demo")], 2, "too small"),
    Case("demo-pairs-empty", lambda s, t: ["demo", "--pairs", _s(_dir(t, "p")), "-o", _s(t / "demo")], 2,
         "no fov120_N / fov60_N"),
    Case("demo-ckpt-folder", lambda s, t: ["demo", "-c", _s(_dir(t, "c.pth")), "-o", _s(t / "demo")], 2, "is a folder"),
]


def test_the_table_is_large_and_covers_every_command():
    assert len(CASES) >= 60
    assert len({c.id for c in CASES}) == len(CASES)
    commands = {c.id.split("-")[0] for c in CASES}
    assert {"export", "quantize", "build", "bench", "infer", "demo", "root"} <= commands


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, shared: Shared, tmp_path, monkeypatch):
    monkeypatch.delenv("SEMSHARE_CHECKPOINT", raising=False)
    argv = case.argv(shared, tmp_path)
    before = _snapshot(tmp_path, shared.root)
    res = runner.invoke(app, argv)
    assert res.exception is None or isinstance(res.exception, SystemExit), f"traceback: {res.exception!r}"
    assert res.exit_code == case.code, res.output
    lines = [x for x in res.output.splitlines() if x.strip()]
    assert len(lines) == case.lines and all(len(x) <= MAX_LINE for x in lines), res.output
    assert "Traceback" not in res.output and re.search(case.message, res.output), res.output
    if case.lines == 1:
        assert lines[0].startswith("error: "), lines[0]
    assert _snapshot(tmp_path, shared.root) == before, "the files around the command changed"


# --- what works ------------------------------------------------------------------------------------------


def test_version_alone():
    from semshare import __version__

    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.output.strip() == __version__


def test_flags_show_no_value_in_help():
    for cmd in ("export", "bench", "build-engine", "infer"):
        res = runner.invoke(app, [cmd, "--help"], terminal_width=200)
        assert res.exit_code == 0
        assert "<bool>" not in res.output and "BOOLEAN" not in res.output, res.output


def test_fp16_report_is_written_on_the_synthetic_pair(shared: Shared, tmp_path):
    src = _copy_export(shared, tmp_path)
    report = tmp_path / "rep" / "r.json"
    res = runner.invoke(app, ["quantize", str(src), "-p", "fp16", "--report", str(report)])
    assert res.exit_code == 0, res.output
    data = json.loads(report.read_text())
    assert data["pairs"] == ["synthetic"] and "synthetic pair" in res.output
    out = tmp_path / "m.fp16.onnx"
    from semshare.engine.manifest import read_export_manifest

    assert read_export_manifest(out)["model_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()


def test_memory_estimate_refuses_beyond_what_the_machine_has():
    from semshare.validate import check_memory, estimate_bytes

    need = check_memory("export", 1216, 1920, available=64 * 2**30)
    assert 2 * 2**30 < need < 5 * 2**30  # measured peak: 2.8 GiB (mobilenetv3)
    with pytest.raises(SemshareError, match=r"needs about .* GiB but this machine has 2\.0 GiB.*--height (\d+) --width"):
        check_memory("export", 1216 * 2, 1920 * 2, available=2 * 2**30)
    with pytest.raises(SemshareError) as err:
        check_memory("export", 2432, 3840, available=2 * 2**30)
    h, w = map(int, re.search(r"--height (\d+) --width (\d+)", str(err.value)).groups())
    assert estimate_bytes("export", h, w) <= 2 * 2**30 < estimate_bytes("export", h + 64, w + 64)
    with pytest.raises(SemshareError, match="not even the smallest input"):
        check_memory("infer", 1216, 1920, available=2**20)
    with pytest.raises(SemshareError, match="smaller --batch"):
        check_memory("bench", 1216, 1920, batch=64, available=8 * 2**30)


def test_huge_export_is_refused_fast():
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "semshare", "export", "mobilenetv3", "-o", "/tmp/never.onnx",
                          "--height", "100000", "--width", "100000"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "beyond the 8192 px" in res.stderr and not Path("/tmp/never.onnx").exists()
    assert time.perf_counter() - t < 30  # no model is built: ~1 s


# --- the atomic writer ----------------------------------------------------------------------------------


def _pair(folder: Path, tag: bytes) -> dict[Path, bytes]:
    return {folder / "m.onnx": tag * 1000, folder / "m.json": b'{"tag": "' + tag + b'"}'}


def test_pre_existing_pair_survives_a_failing_manifest(tmp_path, monkeypatch):
    from semshare import io

    old = _pair(tmp_path, b"old")
    io.write_atomic(old)
    os.chmod(tmp_path / "m.onnx", 0o640)
    before = _snapshot(tmp_path)
    real = os.replace
    calls = []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the manifest's rename fails after the model's succeeded
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(io.os, "replace", flaky)
    with pytest.raises(io.OutputError, match=r"cannot write .*m\.json \(No space left on device\)"):
        io.write_atomic(_pair(tmp_path, b"new"))
    monkeypatch.setattr(io.os, "replace", real)
    assert _snapshot(tmp_path) == before  # the previous pair, bytes and modes, and no temp or backup file


def test_manifest_path_is_a_folder(tmp_path):
    from semshare import io

    (tmp_path / "m.onnx").write_bytes(b"previous model")
    (tmp_path / "m.json").mkdir()
    before = _snapshot(tmp_path)
    with pytest.raises(io.OutputError, match=r"cannot write .*m\.json \(a folder of that name is in the way\)"):
        io.write_atomic(_pair(tmp_path, b"new"))
    assert _snapshot(tmp_path) == before


def test_created_folders_are_removed_on_failure(tmp_path):
    from semshare import io

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "m.json").mkdir()
    with pytest.raises(io.OutputError):
        io.write_atomic({tmp_path / "new" / "deep" / "x.onnx": b"1", tmp_path / "a" / "m.json": b"2"})
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == ["a", "a/m.json"]


def test_permissions_follow_the_umask(tmp_path):
    from semshare import io

    old = os.umask(0o027)
    try:
        io.atomic_write_bytes(tmp_path / "a.bin", b"1")
        assert (tmp_path / "a.bin").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
    io.atomic_write_bytes(tmp_path / "b.bin", b"1")
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o666 & ~old
    os.chmod(tmp_path / "b.bin", 0o600)
    io.atomic_write_bytes(tmp_path / "b.bin", b"2")  # a replaced file keeps its own mode
    assert (tmp_path / "b.bin").stat().st_mode & 0o777 == 0o600


_WRITER = textwrap.dedent("""
    import hashlib, sys
    from pathlib import Path
    from semshare.io import write_atomic
    folder, tag, n, size = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    print("ready", flush=True)
    for i in range(n):
        data = (f"{tag}{i}".encode() * size)[:size]
        write_atomic({folder / "m.onnx": data, folder / "m.json": hashlib.sha256(data).hexdigest().encode()})
""")


def _writer(folder: Path, tag: str, n: int, size: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    return subprocess.Popen([sys.executable, "-c", _WRITER, str(folder), tag, str(n), str(size)],
                            stdout=subprocess.PIPE, env=env)


def _consistent(folder: Path) -> bool:
    model, manifest = folder / "m.onnx", folder / "m.json"
    return hashlib.sha256(model.read_bytes()).hexdigest().encode() == manifest.read_bytes()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_a_signal_during_a_write_leaves_a_complete_pair(tmp_path, sig):
    from semshare.io import write_atomic

    data = b"previous" * 1000
    write_atomic({tmp_path / "m.onnx": data, tmp_path / "m.json": hashlib.sha256(data).hexdigest().encode()})
    proc = _writer(tmp_path, "new", 1000, 8 << 20)  # 8 MB pairs, written over and over
    assert proc.stdout.readline().strip() == b"ready"
    time.sleep(1.0)
    proc.send_signal(sig)
    proc.wait(timeout=60)
    assert proc.returncode != 0
    assert _consistent(tmp_path)  # the previous pair or a complete new one, never a mix or a partial file
    names = {p.name for p in tmp_path.iterdir()}
    assert {"m.onnx", "m.json"} <= names
    if sig == signal.SIGINT:  # a Ctrl-C cleans up; a SIGKILL may leave a hidden temp file, never a partial target
        assert names == {"m.onnx", "m.json"}, names
    else:
        assert all(n.startswith(".m.") for n in names - {"m.onnx", "m.json"}), names


def test_two_writers_at_once_leave_one_complete_pair(tmp_path):
    writers = [_writer(tmp_path, tag, 30, 1 << 20) for tag in ("a", "b")]
    for w in writers:
        w.wait(timeout=120)
        assert w.returncode == 0
    assert _consistent(tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"m.onnx", "m.json"}
