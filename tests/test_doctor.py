"""semshare doctor: reports everything, exits 0, and parses Jetson release files."""

from typer.testing import CliRunner

from semshare.cli import app
from semshare.doctor import Check, _jetson, format_checks, jetpack_for, parse_tegra_release, run_checks


def test_doctor_reports_and_exits_zero():
    r = CliRunner().invoke(app, ["doctor"])
    assert r.exit_code == 0, r.output
    for name in ("python", "torch", "onnxruntime", "tensorrt", "plugin library", "cuda binding", "gpu", "jetson"):
        assert name in r.output
    checks = run_checks()
    assert all(c.hint for c in checks if c.ok is False), "every problem comes with a fix hint"


def test_jetson_release_parsing(tmp_path):
    rel = tmp_path / "nv_tegra_release"
    rel.write_text("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8\n")
    model = tmp_path / "model"
    model.write_bytes(b"NVIDIA Jetson AGX Orin Developer Kit\x00")
    assert parse_tegra_release(rel.read_text()) == "36.4.3" and jetpack_for("36.4.3") == "6.1/6.2"
    jetson = _jetson(rel, model)[0]
    assert jetson.ok and jetson.detail == "NVIDIA Jetson AGX Orin Developer Kit, L4T 36.4.3 (JetPack 6.1/6.2)"
    assert _jetson(tmp_path / "absent", model)[0].ok is None


def test_format_shows_fix_hints():
    text = format_checks([Check("tensorrt", False, "missing", "pip install semshare[trt]"), Check("python", True, "3.11")])
    assert "!!  tensorrt" in text and "fix: pip install semshare[trt]" in text and "ok  python" in text
