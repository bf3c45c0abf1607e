import warnings
from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def pytest_addoption(parser):
    parser.addoption("--lab-screenshot", default=None, metavar="PNG",
                     help="tests/notebooks/test_lab.py saves the browser's view of 00_quickstart in JupyterLab here")


def pytest_collection_modifyitems(items):
    """Tests that need the `sru` package are slow: it compiles its C++ kernel on first import
    (about a minute on a fresh 2-core machine). `make test` leaves slow tests out; CI runs them."""
    for item in items:
        if "sru_package" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def sru_package():
    """The `sru` 2.6 package, the reference for our SRU (compiles C++ once, about a minute)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pytest.importorskip("sru")


@pytest.fixture(scope="session")
def authors_keys():
    """(key, shape, dtype) rows of the authors' released checkpoint."""
    rows = []
    for line in (FIXTURES / "authors_checkpoint_keys.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, rest = line.split(" ", 1)
            shape, dtype = rest.rsplit(" ", 1)
            rows.append((key, tuple(int(d) for d in shape.strip("()").split(",") if d.strip()), dtype))
    return rows
