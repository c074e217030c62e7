"""semshare.runtime.Segmenter: the same masks from every artefact, any image size, batches, the overlapped
stream, video input, and the README's three lines. Realistic weights (conftest.realistic) throughout."""

import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import REAL_PAIRS, ROOT, SMALL, realistic
from semshare.cli import app
from semshare.errors import MissingDependencyError, SemshareError
from semshare.runtime import Segmenter
from semshare.runtime.preprocess import resize_mask

VARIANT = "mobilenetv3_tightly"
H, W = SMALL
MIN_AGREEMENT = 0.9999  # the bar: float noise between backends passes, a preprocessing bug does not
runner = CliRunner()


def raw_pair(key: str = "02450") -> tuple[np.ndarray, np.ndarray]:
    """A uint8 RGB pair at the cameras' own size: the authors' pair when the shared data is present."""
    from semshare.data import read_pair, synthetic_pair

    path = REAL_PAIRS / f"fov120_{key}.jpg"
    im120, im60 = read_pair(path) if path.is_file() else synthetic_pair(seed=int(key))
    return np.asarray(im120), np.asarray(im60)


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float((a == b).mean())


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory):
    """Realistic weights as a .pth, and their exports for both targets (the same network)."""
    import torch

    from semshare.export import export_onnx

    d = tmp_path_factory.mktemp("runtime")
    pth = d / "tightly_realistic.pth"
    torch.save(realistic(VARIANT, SMALL).state_dict(), pth)
    out = {"pth": pth}
    for target in ("onnx", "tensorrt"):
        out[target] = d / f"tightly_{target}.onnx"
        export_onnx(VARIANT, out[target], checkpoint=pth, target=target, height=H, width=W, verify=False)
    return out


@pytest.fixture(scope="module")
def ort(artefacts):
    with Segmenter.load(artefacts["onnx"]) as seg:
        yield seg


@pytest.mark.slow
def test_pth_and_both_onnx_targets_give_the_same_masks(artefacts, ort):
    img120, img60 = raw_pair()
    with Segmenter.load(artefacts["pth"], VARIANT, size=SMALL) as torch_seg, \
            Segmenter.load(artefacts["tensorrt"]) as plugin_seg:
        assert (torch_seg.label, ort.label, plugin_seg.label) == ("torch:cpu:fp32",) + ("onnxruntime:cpu:fp32",) * 2
        assert "reference" in plugin_seg.info["plugin_nodes"]  # the plugin nodes ran as their decompositions
        assert ort.size == plugin_seg.size == SMALL and ort.variant == VARIANT
        ref = torch_seg(img120, img60)
        for seg in (ort, plugin_seg):
            got = seg(img120, img60)
            for cam in ("fov120", "fov60"):
                assert getattr(got, cam).shape == img120.shape[:2]  # at the cameras' size, not the model's
                assert agreement(getattr(got, cam), getattr(ref, cam)) >= MIN_AGREEMENT, (seg.label, cam)
    # The bar catches a real bug, even a small one: the pair shifted by one pixel (an off-by-one crop) agrees on
    # about 70 % of the pixels, the backends on more than 99.999 % (logits within ~2e-4).
    shifted = ort(np.roll(img120, 1, axis=1), np.roll(img60, 1, axis=1))
    assert max(agreement(shifted.fov120, ref.fov120), agreement(shifted.fov60, ref.fov60)) < MIN_AGREEMENT


def test_inputs_of_another_size_are_resized_and_masks_come_back_at_their_size(ort):
    img120, img60 = raw_pair()
    other = (500, 640)  # (H, W): smaller than the model and another aspect ratio
    a, b = (np.asarray(Image.fromarray(x).resize(other[::-1], Image.BILINEAR)) for x in (img120, img60))
    got = ort(Image.fromarray(a), b, logits=True)  # a PIL image and an array
    assert got.fov120.shape == got.fov60.shape == other and got.fov120.dtype == np.uint8
    assert got.logits120.shape == (6, *other) and got.logits120.dtype == np.float32
    # The model saw exactly the bilinear resize of the input to its size; the mask is its nearest resize back.
    at_model = ort(*(np.asarray(Image.fromarray(x).resize((W, H), Image.BILINEAR)) for x in (a, b)))
    assert at_model.fov120.shape == SMALL
    assert np.array_equal(got.fov120, resize_mask(at_model.fov120, other))
    assert np.array_equal(got.fov60, resize_mask(at_model.fov60, other))
    assert len(np.unique(got.fov120)) > 1  # a real segmentation, not one class everywhere


@pytest.mark.slow
def test_a_batch_of_three_pairs_equals_three_single_calls(artefacts, ort):
    pairs = [raw_pair(k) for k in ("00001", "02450", "21000")]
    a = np.stack([p[0] for p in pairs])
    b = [p[1] for p in pairs]  # a 4-D array for one camera, a list for the other
    singles = [ort(x, y) for x, y in pairs]
    with Segmenter.load(artefacts["pth"], VARIANT, size=SMALL) as torch_seg:  # torch runs the 3 in one call
        for seg in (torch_seg, ort):  # the ONNX is batch 1: the runtime runs it in chunks
            calls = len(seg.model_calls)
            batch = seg(a, b)
            assert [n for _, n in seg.model_calls[calls:]] == ([3] if seg is torch_seg else [1, 1, 1])
            assert batch.fov120.shape == (3, *a.shape[1:3])
            for i, single in enumerate(singles):
                assert agreement(batch.fov120[i], single.fov120) >= MIN_AGREEMENT
                assert agreement(batch.fov60[i], single.fov60) >= MIN_AGREEMENT
    # pairs of different sizes in one batch: a list of masks, each at its own size
    small = [np.asarray(Image.fromarray(x).resize((W, H))) for x in pairs[0]]
    mixed = ort([pairs[0][0], small[0]], [pairs[0][1], small[1]])
    assert isinstance(mixed.fov120, list) and [m.shape for m in mixed.fov120] == [pairs[0][0].shape[:2], SMALL]


def test_stream_keeps_the_order_and_reports_a_bad_pair_in_place(ort):
    pairs = {k: raw_pair(k) for k in ("00001", "02450")}

    def load(key):
        if key == "broken":
            raise SemshareError("cannot read image broken.png")
        return pairs[key]

    got = list(ort.stream(["00001", "broken", "02450"], load))
    assert [g[0] for g in got] == ["00001", "broken", "02450"]
    assert isinstance(got[1][2], SemshareError) and "broken.png" in str(got[1][2])
    for key, images, seg in (got[0], got[2]):
        assert images is pairs[key]
        assert np.array_equal(seg.fov120, ort(*pairs[key]).fov120)

    def handle(key, images, seg):  # runs in the post-processing thread; its result is yielded
        if key == "02450":
            raise SemshareError("cannot write 02450")
        return key, seg.fov60.shape

    got = list(ort.stream(["00001", "broken", "02450"], load, handle))
    assert got[0][2] == ("00001", pairs["00001"][1].shape[:2])
    assert [str(g[2]) for g in got[1:]] == ["cannot read image broken.png", "cannot write 02450"]

    def crash(key):
        raise RuntimeError("a bug in the loader")

    with pytest.raises(RuntimeError, match="a bug in the loader"):
        list(ort.stream(["00001"], crash))


def _write_video(path, frames):
    import imageio_ffmpeg

    h, w = frames[0].shape[:2]
    gen = imageio_ffmpeg.write_frames(str(path), (w, h), fps=5, codec="libx264", quality=10, macro_block_size=2,
                                      ffmpeg_log_level="error")
    gen.send(None)
    for f in frames:
        gen.send(np.ascontiguousarray(f))
    gen.close()


@pytest.mark.slow
def test_infer_reads_two_videos_stops_at_the_shorter_and_resumes(artefacts, ort, tmp_path):
    from semshare.runtime.video import VideoReader

    img120, img60 = (np.asarray(Image.fromarray(x).resize((W, H))) for x in raw_pair())
    v120, v60 = tmp_path / "front120.mp4", tmp_path / "front60.mp4"
    _write_video(v120, [np.roll(img120, 8 * i, axis=1) for i in range(4)])
    _write_video(v60, [np.roll(img60, 8 * i, axis=1) for i in range(3)])
    onnx = ["--onnx", str(artefacts["onnx"])]
    res = runner.invoke(app, ["infer", "--video120", str(v120), "--video60", str(v60), *onnx, "-o", str(tmp_path / "v")])
    assert res.exit_code == 0, res.output
    assert "front120.mp4 has more frames than front60.mp4: stopped at the shorter, after 3 frame pairs" in res.output
    assert "3 pair(s)" in res.output and "pairs/s end to end" in res.output
    for name in ("fov120_mask", "fov60_mask", "fov120_overlay", "fov60_overlay"):
        r = VideoReader(tmp_path / "v" / f"{name}.mp4")
        frames = list(r)
        assert len(frames) == 3 and frames[0].shape == (H, W, 3)
    assert not list((tmp_path / "v").glob(".*"))  # no partial file left
    res = runner.invoke(app, ["infer", "--video120", str(v120), "--video60", str(v60), *onnx, "-o", str(tmp_path / "v")])
    assert res.exit_code == 0 and "exist" in res.output and "--overwrite" in res.output

    # --frames: PNG masks per frame pair, equal to the Segmenter on the decoded frames; resumable
    out = tmp_path / "f"
    args = ["infer", "--video120", str(v120), "--video60", str(v60), *onnx, "-o", str(out), "--frames", "--no-overlay"]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    decoded = list(zip(VideoReader(v120), VideoReader(v60), strict=False))
    for i, (a, b) in enumerate(decoded[:3]):
        seg = ort(a, b)
        for cam, mask in (("120", seg.fov120), ("60", seg.fov60)):
            with Image.open(out / f"{i:06d}_fov{cam}_mask.png") as png:
                assert png.mode == "P" and np.array_equal(np.asarray(png), mask)  # pixel values = class indices
    assert not (out / "000003_fov120_mask.png").exists()
    (out / "000001_fov60_mask.png").unlink()
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and "1 pair(s) -> 2 file(s)" in res.output and "2 skipped" in res.output, res.output
    res = runner.invoke(app, [*args, "--overwrite"])
    assert res.exit_code == 0 and "3 pair(s) -> 6 file(s)" in res.output, res.output


def test_infer_on_pairs_is_resumable_and_reports_both_rates(artefacts, tmp_path):
    from semshare.data import save_image_atomic

    for key in ("00001", "00002"):
        for cam, img in zip(("120", "60"), raw_pair(), strict=True):
            save_image_atomic(Image.fromarray(img).resize((W, H)), tmp_path / "in" / f"fov{cam}_{key}.png")
    args = ["infer", str(tmp_path / "in"), "--onnx", str(artefacts["onnx"]), "-o", str(tmp_path / "out")]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert re.search(r"2 pair\(s\) -> 8 file\(s\) .*; [\d.]+ pairs/s end to end, model \d+ ms/pair median "
                     r"\([\d.]+ pairs/s\): the pipeline runs at \d+ % of the model's rate", res.output), res.output
    res = runner.invoke(app, args)
    assert res.exit_code == 0 and "0 pair(s)" in res.output and "2 skipped" in res.output, res.output


def test_the_readme_example_runs(artefacts, tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "semshare.runtime" in b]
    assert blocks, "README has no ```python block using semshare.runtime"
    code = blocks[0]
    assert len([line for line in code.splitlines() if line.strip() and not line.lstrip().startswith("#")]) == 3
    names = set(re.findall(r"Segmenter\.load\(\"([^\"]+)\"", code))
    for name in names:  # the README's file name, served by the small export
        shutil.copy(artefacts["onnx"], tmp_path / name)
        shutil.copy(artefacts["onnx"].with_suffix(".json"), (tmp_path / name).with_suffix(".json"))
    monkeypatch.chdir(tmp_path)
    img120, img60 = raw_pair()
    scope = {"img120": img120, "img60": img60}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["mask120"].shape == scope["mask60"].shape == img120.shape[:2]


def test_infer_and_the_runtime_do_not_import_bench_and_load_lazily():
    code = ("import sys, semshare.infer, semshare.runtime, semshare.runtime.video\n"
            "bad = [m for m in sys.modules if m.startswith('semshare.bench') or m in ('torch', 'onnxruntime', 'tensorrt')]\n"
            "assert not bad, bad\n"
            "import semshare.bench.run\n")  # and no cycle: bench imports the runtime, not the other way
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_load_and_call_errors_are_one_line(ort, tmp_path):
    with pytest.raises(SemshareError, match=r"unknown model file type '.txt'"):
        Segmenter.load(tmp_path / "m.txt")
    with pytest.raises(SemshareError, match="needs its variant"):
        Segmenter.load(tmp_path / "m.pth")
    with pytest.raises(SemshareError, match="does not exist"):
        Segmenter.load(tmp_path / "m.pth", VARIANT)
    with pytest.raises(SemshareError, match=r"backend torch:cpu:fp32 runs a .pth checkpoint .*, not .*m.onnx"):
        Segmenter.load(tmp_path / "m.onnx", backend="torch")
    with pytest.raises(MissingDependencyError, match="pip install"):  # TensorRT is not installed here
        Segmenter.load(tmp_path / "m.engine")
    img120, img60 = raw_pair()
    with pytest.raises(SemshareError, match=r"img60 is a float32 array of shape \(4, 4\); pass a uint8 RGB image"):
        ort(img120, np.zeros((4, 4), np.float32))
    with pytest.raises(SemshareError, match="img120 has 2 image"):
        ort([img120, img120], [img60])
    res = runner.invoke(app, ["infer", "--video120", str(tmp_path / "a.mp4")])
    assert res.exit_code == 2 and "both --video120 A.mp4 and --video60 B.mp4" in res.output
    res = runner.invoke(app, ["infer", "--video120", str(tmp_path / "a.mp4"), "--video60", str(tmp_path / "b.mp4"),
                              "--onnx", str(ort.backend.source.onnx)])
    assert res.exit_code == 2 and "video" in res.output and "does not exist" in res.output
