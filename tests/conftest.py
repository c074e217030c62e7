import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SEMSHARE_SHARED_DATA", ROOT.parent / "shared" / "data"))

#: The smallest input the architecture allows (the LR-ASPP pooling needs H, W >= 784): fast CPU tests.
SMALL = (784, 800)


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
