import subprocess
import sys
import time

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from semshare.cli import app
from semshare.data import PALETTE

runner = CliRunner()


def test_help_is_instant_and_imports_no_torch():
    code = "import sys, semshare.cli; sys.exit(1 if 'torch' in sys.modules or 'onnxruntime' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "semshare", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "infer" in out.stdout
    assert time.perf_counter() - t < 5  # generous for a loaded CI machine; ~0.3 s here


def test_cli_variant_list_is_the_registry():
    """The CLI spells the variants out (``--help`` must not import torch); they are the registry's."""
    from semshare.cli import VARIANTS
    from semshare.models import list_models

    assert list(VARIANTS) == list_models()


def _pair(folder, key="00001", size=(800, 784)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for cam in ("120", "60"):
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), np.uint8)).save(folder / f"fov{cam}_{key}.png")


def test_infer_writes_masks_and_overlays_for_a_tree(tmp_path):
    _pair(tmp_path / "in" / "a")
    _pair(tmp_path / "in" / "b", key="00002")
    (tmp_path / "in" / "b" / "fov120_00009.png").write_bytes(b"broken")
    res = runner.invoke(app, ["infer", str(tmp_path / "in"), "-m", "mobilenetv3_tightly", "-o", str(tmp_path / "out"),
                              "--height", "784", "--width", "800"])
    assert res.exit_code == 1, res.output  # one file had no partner: reported, non-zero
    assert "RANDOM weights" in res.output
    assert "fov120_00009.png: no partner fov60_00009" in res.output
    for sub, key in (("a", "00001"), ("b", "00002")):
        for cam in ("120", "60"):
            mask = np.asarray(Image.open(tmp_path / "out" / sub / f"{key}_fov{cam}_mask.png").convert("RGB"))
            assert mask.shape == (784, 800, 3)
            assert {tuple(c) for c in mask.reshape(-1, 3)} <= {tuple(c) for c in PALETTE}
            assert (tmp_path / "out" / sub / f"{key}_fov{cam}_overlay.png").exists()
    assert not list((tmp_path / "out").rglob(".*"))  # no temp files left


def test_infer_errors_are_one_line(tmp_path):
    res = runner.invoke(app, ["infer", str(tmp_path / "missing"), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "does not exist" in res.output
    res = runner.invoke(app, ["infer", str(tmp_path), "-m", "resnet"])
    assert res.exit_code == 2 and "unknown variant 'resnet'" in res.output
    _pair(tmp_path / "p")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"nope")
    res = runner.invoke(app, ["infer", str(tmp_path / "p"), "-c", str(bad), "-o", str(tmp_path / "o")])
    assert res.exit_code == 2 and "cannot be read" in res.output
    assert not (tmp_path / "o").exists()
