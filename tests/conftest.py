import warnings
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared"   # the steering repo's shared/, beside the checkout


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def sru_package():
    """The `sru` 2.6 package, the reference for our SRU (compiles C++ once, ~45 s)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("sru")


@pytest.fixture(scope="session")
def authors_keys():
    """(key, shape, dtype) rows of the authors' released checkpoint."""
    path = SHARED / "reference" / "authors_checkpoint_keys.txt"
    if not path.is_file():
        pytest.skip(f"{path} not found (shared/ is expected beside the checkout)")
    rows = []
    for line in path.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, rest = line.split(" ", 1)
            shape, dtype = rest.rsplit(" ", 1)
            rows.append((key, tuple(int(d) for d in shape.strip("()").split(",") if d.strip()), dtype))
    return rows
