import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SEMSHARE_SHARED_DATA", ROOT.parent / "shared" / "data"))

#: The smallest input the architecture allows (the LR-ASPP pooling needs H, W >= 784): fast CPU tests.
SMALL = (784, 800)


#: The project's own test data (in the repository): the authors' state-dict key lists and the reference outputs of
#: the spatial_correlation_sampler package. The authors' camera pairs, labels and predictions (research-use
#: licence) are NOT copied here: they stay in ../shared and the tests that compare against them skip without it.
PROJECT_DATA = ROOT / "tests" / "data"


def project_data(name: str) -> Path:
    """A file of tests/data (always present)."""
    return PROJECT_DATA / name


def shared_data(*parts: str) -> Path:
    """A file of the shared test data (real camera pairs, reference outputs); skip when it is absent."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared test data not found at {p} (set SEMSHARE_SHARED_DATA)")
    return p


@pytest.fixture(autouse=True)
def _torch_threads():
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(0)


REAL_PAIRS = SHARED_DATA / "rig_samples" / "pairs"


def camera_pair(size: tuple[int, int] = SMALL, key: str = "02450"):
    """``(img120, img60)`` (1, 3, H, W): the authors' pair ``key`` when the shared data is present, else the
    synthetic pair (:func:`semshare.data.synthetic_pair`). For tests that need realistic images, not the
    authors' material itself."""
    from semshare.data import load_pair, preprocess, synthetic_pair

    path = REAL_PAIRS / f"fov120_{key}.jpg"
    if path.is_file():
        return load_pair(path, size)
    im120, im60 = synthetic_pair(seed=int(key) if key.isdigit() else 0)
    return preprocess(im120, size), preprocess(im60, size)


#: The keys of the authors' sample pairs; synthetic stand-ins get the same keys (and the key as their seed).
PAIR_KEYS = ("00001", "02450", "21000")


def camera_pairs_folder(tmp_factory) -> Path:
    """A folder of fov120_N/fov60_N pairs: the authors' (../shared) when present, else synthetic pairs rendered
    into a temp folder under the same keys. For tests that need realistic pairs (calibration), not labels."""
    if REAL_PAIRS.is_dir():
        return REAL_PAIRS
    from semshare.data import write_synthetic_pair

    folder = tmp_factory.mktemp("synthetic_pairs")
    for key in PAIR_KEYS:
        write_synthetic_pair(folder, key, seed=int(key))
    return folder


_REALISTIC: dict = {}


def realistic(variant: str, size: tuple[int, int] = SMALL, perturb: float = 0.1):
    """A variant with realistic weights (:func:`semshare.models.realistic.realistic_model`): BatchNorm
    statistics calibrated on :func:`camera_pair`, affine parameters drawn around (1, 0). Cached per test run;
    treat it as read-only."""
    from semshare.models.realistic import realistic_model

    key = (variant, size, perturb)
    if key not in _REALISTIC:
        _REALISTIC[key] = realistic_model(variant, camera_pair(size), perturb=perturb, input_size=size)
    return _REALISTIC[key]


def realistic_checkpoint(variant: str, folder: Path, size: tuple[int, int] = SMALL) -> Path:
    """:func:`realistic`'s weights saved as a checkpoint in ``folder`` (what a user passes to --checkpoint)."""
    import torch

    path = Path(folder) / f"{variant}_realistic_{size[0]}x{size[1]}.pth"
    if not path.is_file():
        torch.save(realistic(variant, size).state_dict(), path)
    return path


def assert_one_line_error(res, code: int, *needles: str) -> None:
    """A CLI result (typer's CliRunner) that failed with exit ``code`` and exactly one ``error: ...`` line
    holding every needle."""
    assert res.exit_code == code, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    for n in needles:
        assert n in lines[0], lines[0]
