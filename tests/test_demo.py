"""semshare demo at the smallest input size: every artefact lands in the one output folder."""

import json

from typer.testing import CliRunner

from conftest import SMALL
from semshare.cli import app

runner = CliRunner()


def test_demo_small_leaves_everything_in_one_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("SEMSHARE_CHECKPOINT", raising=False)
    out = tmp_path / "demo"
    h, w = SMALL
    res = runner.invoke(app, ["demo", "-o", str(out), "--height", str(h), "--width", str(w),
                              "--warmup", "0", "--iterations", "1"])
    assert res.exit_code == 0, res.output
    assert "RANDOM weights" in res.output
    assert "TensorRT engine skipped" in res.output or "tensorrt" in res.output
    for name in ("model.onnx", "model.json", "report.json", "pair/fov120_00000.png", "pair/fov60_00000.png",
                 "masks/00000_fov120_mask.png", "masks/00000_fov60_mask.png", "masks/00000_fov120_overlay.png"):
        assert (out / name).is_file(), name
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "semshare-demo/1" and report["random_weights"] is True
    assert report["steps"]["export"]["verification"] is not None
    bench = report["bench"]
    assert [b["name"] for b in bench["backends"]][:2] == ["torch:cpu:fp32", "onnxruntime:cpu:fp32"]
    assert bench["check"] and all(c["passed"] for c in bench["check"])
    assert str(out) in res.output
