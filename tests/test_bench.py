"""semshare bench: statistics, the warm-up rule, the report schema, --check, and the one-line errors."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import SMALL, assert_one_line_error, realistic_checkpoint
from semshare.bench.run import SCHEMA, BenchConfig, check_failed, run_bench
from semshare.bench.timing import STAT_KEYS, measure, summarize
from semshare.cli import app
from semshare.errors import SemshareError
from semshare.runtime.backends import _BACKENDS, BackendSpec, TorchBackend, register_backend

runner = CliRunner()
H, W = SMALL
FAST = ["--height", str(H), "--width", str(W), "--warmup", "1", "--iterations", "2"]


# ------------------------------------------------------------------------------------------ arithmetic


def test_percentiles_on_known_timings():
    s = summarize([0.004, 0.001, 0.003, 0.002], batch=2)  # seconds, unsorted on purpose
    assert (s.n, s.min, s.max) == (4, 1.0, 4.0)
    assert s.median == pytest.approx(2.5) and s.mean == pytest.approx(2.5)
    assert s.p90 == pytest.approx(3.7)  # 1 + 0.9 * 3 = rank 3.7 -> 3 + 0.7 * (4 - 3)
    assert s.p99 == pytest.approx(3.97)
    assert s.fps == pytest.approx(2 * 4 / 0.010)  # pairs per second over the timed loop
    t = summarize(np.arange(1, 101) / 1e3)  # 1..100 ms
    assert t.median == pytest.approx(50.5) and t.p90 == pytest.approx(90.1) and t.p99 == pytest.approx(99.01)


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_warmup_iterations_are_excluded():
    clock, calls = FakeClock(), []

    def step():  # warm-up calls are slow (100 s), timed ones 1 s, 2 s, 3 s
        calls.append(1)
        clock.now += 100.0 if len(calls) <= 3 else float(len(calls) - 3)
        return {"gpu": 0.5}

    ticks = []
    series = measure(step, warmup=3, iterations=3, clock=clock, progress=ticks.append)
    assert len(calls) == 6 and len(ticks) == 6
    assert series.seconds == [1.0, 2.0, 3.0] and series.extra == {"gpu": [0.5, 0.5, 0.5]}
    stats = summarize(series.seconds)
    assert stats.max == 3000.0 and stats.n == 3


def test_duration_mode_stops_after_the_duration():
    clock = FakeClock()

    def step():
        clock.now += 0.3

    series = measure(step, warmup=2, iterations=None, duration=1.0, clock=clock)
    assert len(series.seconds) == 4  # 0.3, 0.6, 0.9, 1.2 >= 1.0


@pytest.mark.parametrize("kw, msg", [(dict(warmup=0, iterations=0), "--iterations must be >= 1"),
                                     (dict(warmup=-1, iterations=2), "--warmup must be >= 0"),
                                     (dict(warmup=0, iterations=2, duration=0.0), "--duration must be > 0")])
def test_bad_counts(kw, msg):
    with pytest.raises(SemshareError, match=msg):
        measure(lambda: None, **kw)


def test_spec_parsing():
    assert BackendSpec.parse("torch").label == "torch:cpu:fp32"
    assert BackendSpec.parse("torch:cuda:fp16").label == "torch:cuda:fp16"
    assert BackendSpec.parse("ort:trt:fp16").label == "onnxruntime:tensorrt:fp16"
    assert BackendSpec.parse("tensorrt:graphs").cuda_graphs
    with pytest.raises(SemshareError, match="unknown backend 'tvm'"):
        BackendSpec.parse("tvm")
    with pytest.raises(SemshareError, match="unknown option 'gpu'"):
        BackendSpec.parse("torch:gpu")


# ---------------------------------------------------------------------------------------- --check


@register_backend("perturbed")
class PerturbedTorch(TorchBackend):
    """The torch backend with class 2 of the 60-camera logits pushed up: a deliberately wrong backend."""

    devices = ("cpu",)

    def outputs(self):
        a, b = super().outputs()
        b = b.copy()
        b[:, 2] += 10.0
        return a, b


def test_check_catches_a_perturbed_backend(tmp_path):
    try:
        cfg = BenchConfig(backends=["torch", "perturbed"], variant="mobilenetv3_tightly", height=H, width=W,
                          checkpoint=realistic_checkpoint("mobilenetv3_tightly", tmp_path),
                          warmup=0, iterations=1, check=True)
        report = run_bench(cfg)
    finally:
        _BACKENDS.pop("perturbed", None)
    (c,) = report["check"]
    assert c["backend"] == "perturbed:cpu:fp32" and c["reference"] == "torch:cpu:fp32"
    assert not c["passed"] and c["max_abs_error"] == pytest.approx(10.0, rel=1e-4)
    seg120, seg60 = c["outputs"]
    assert seg120["max_abs_error"] == 0.0 and seg120["argmax_agreement"] == 1.0
    assert seg60["argmax_agreement"] < 0.9 and seg60["margin_agreement"] < 0.999 and not seg60["passed"]
    assert check_failed(report) == [c]


# ------------------------------------------------------------------------------- the CPU backends


@pytest.fixture(scope="module")
def small_artefacts(tmp_path_factory):
    """A realistic-weights checkpoint and its small target-onnx export (the same network)."""
    from semshare.export import export_onnx

    d = tmp_path_factory.mktemp("onnx")
    ckpt = realistic_checkpoint("mobilenetv3_tightly", d)
    out = d / "tightly_small.onnx"
    export_onnx("mobilenetv3_tightly", out, checkpoint=ckpt, target="onnx", height=H, width=W, verify=False)
    return out, ckpt


@pytest.fixture
def small_onnx(small_artefacts):
    return small_artefacts[0]


def test_bench_torch_and_onnxruntime_on_cpu_reports_every_metric(small_artefacts, tmp_path):
    small_onnx, ckpt = small_artefacts
    js, cs = tmp_path / "r.json", tmp_path / "r.csv"
    res = runner.invoke(app, ["bench", "-b", "torch,onnxruntime", "--onnx", str(small_onnx), "-c", str(ckpt), *FAST, "--check",
                              "--threads", "2", "--json", str(js), "--csv", str(cs)])
    assert res.exit_code == 0, res.output
    assert "torch:cpu:fp32" in res.output and "onnxruntime:cpu:fp32" in res.output
    r = json.loads(js.read_text())
    assert r["schema"] == SCHEMA
    assert set(r) == {"schema", "config", "conditions", "backends", "ratios", "check", "warnings", "notes"}
    assert r["config"]["variant"] == "mobilenetv3_tightly"  # from the ONNX manifest
    assert (r["config"]["height"], r["config"]["width"], r["config"]["batch"]) == (H, W, 1)
    cond = r["conditions"]
    for key in ("date", "cpu_model", "cpu_count", "threads", "gpu", "versions", "jetson", "nvpmodel",
                "clocks_locked", "temperatures_before", "temperatures_after", "load_average_before", "unavailable"):
        assert key in cond
    assert cond["versions"]["torch"] and cond["versions"]["onnxruntime"] and cond["threads"] == 2
    for k, v in cond.items():  # every null is explained
        if v is None and k not in ("temperatures_after",):
            assert k in cond["unavailable"] or any(u.startswith(k) for u in cond["unavailable"]), k
    assert [e["name"] for e in r["backends"]] == ["torch:cpu:fp32", "onnxruntime:cpu:fp32"]
    for e in r["backends"]:
        assert e["iterations"] == 2 and e["warmup"] == 1
        lat = e["latency_ms"]
        assert all(isinstance(lat[k], float) and lat[k] > 0 for k in STAT_KEYS)
        assert lat["min"] <= lat["median"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert e["fps"] == pytest.approx(1000.0 / lat["mean"])
        assert e["memory"]["host_peak_rss_mb"] > 0
        assert e["gpu_compute_ms"] is None and "gpu_compute_ms" in e["unavailable"]
        assert e["memory"]["gpu_peak_mb"] is None and "memory.gpu_peak_mb" in e["unavailable"]
    assert r["backends"][0]["info"]["threads"] == 2
    assert r["ratios"][0]["speedup_median"] == 1.0 and r["ratios"][1]["speedup_median"] > 0
    (c,) = r["check"]
    assert c["passed"] and c["rel_error"] < 1e-4 and c["margin_agreement"] == 1.0 and c["argmax_agreement"] >= 0.999
    rows = cs.read_text().splitlines()
    assert len(rows) == 3 and rows[0].startswith("backend,kind,device,precision")


def test_infer_with_the_onnxruntime_backend(small_onnx, tmp_path):
    from semshare.data import write_synthetic_pair

    write_synthetic_pair(tmp_path / "in")
    res = runner.invoke(app, ["infer", str(tmp_path / "in"), "-b", "onnxruntime", "--onnx", str(small_onnx),
                              "-o", str(tmp_path / "out"), "--no-overlay"])
    assert res.exit_code == 0, res.output
    from PIL import Image

    for cam in ("120", "60"):  # masks come back at the camera images' size, not the model's
        with Image.open(tmp_path / "in" / f"fov{cam}_00000.png") as src, \
                Image.open(tmp_path / "out" / f"00000_fov{cam}_mask.png") as mask:
            assert mask.size == src.size != (W, H)


# --------------------------------------------------------------------------------------- errors




def test_errors_are_one_line(tmp_path):
    assert_one_line_error(runner.invoke(app, ["bench", "-m", "mobilenetv3_tightly", "-n", "0"]), 2, "--iterations must be >= 1")
    assert_one_line_error(runner.invoke(app, ["bench", "--onnx", str(tmp_path / "no.onnx")]), 2, "does not exist")
    fake = tmp_path / "plain.onnx"
    fake.write_bytes(b"\x08\x07")
    assert_one_line_error(runner.invoke(app, ["bench", "--onnx", str(fake)]), 2, "not a semshare export", "plain.json")
    (tmp_path / "plain.json").write_text(json.dumps({"producer": "someone-else"}))
    assert_one_line_error(runner.invoke(app, ["bench", "--onnx", str(fake)]), 2, "not a semshare export")
    assert_one_line_error(runner.invoke(app, ["bench", "-b", "torch", "-m", "mobilenetv3_tightly",
                                              "--engine", str(tmp_path / "no.engine")]), 2, "does not exist")
    eng = tmp_path / "m.engine"
    eng.write_bytes(b"not really an engine")
    assert_one_line_error(runner.invoke(app, ["bench", "-b", "torch", "-m", "mobilenetv3_tightly", "--engine", str(eng)]), 2,
                          "no manifest m.engine.json")
    profile = [{"name": "img120", "min": [1, 3, H, W], "opt": [2, 3, H, W], "max": [2, 3, H, W]}]
    manifest = {"format": "semshare-engine/1", "producer": "semshare", "precision": "fp16", "preset": "orin",
                "tensorrt_version": "10.3.0", "cuda_version": "12.6", "gpu_name": "Orin", "compute_capability": "8.7",
                "source_onnx": "m.onnx", "source_onnx_sha256": "0", "prepared_onnx_sha256": "0",
                "plugin_library": None, "plugin_library_sha256": None, "calibration_sha256": None,
                "calibration_pairs": 0, "hardware_compatibility": "none", "dla_core": None, "profiles": [profile],
                "variant": "mobilenetv3_tightly"}
    (tmp_path / "m.engine.json").write_text(json.dumps(manifest))
    assert_one_line_error(runner.invoke(app, ["bench", "-b", "tensorrt", "--engine", str(eng)]), 3,
                          "tensorrt", "pip install")  # TensorRT is not installed on the CPU machines
    assert_one_line_error(runner.invoke(app, ["bench", "-b", "torch", "-m", "mobilenetv3_tightly", "--engine", str(eng),
                                              "--batch", "4"]), 2, "larger than the engine's profile", "max batch 2")
    assert_one_line_error(runner.invoke(app, ["bench", "-b", "onnxruntime:cuda", "-m", "mobilenetv3_tightly"]), 3,
                          "CUDAExecutionProvider", "onnxruntime-gpu")
    assert_one_line_error(runner.invoke(app, ["bench", "-b", "torch,torch:cpu", "-m", "mobilenetv3_tightly"]), 2, "twice")
