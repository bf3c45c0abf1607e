"""Shared by the studies' tests: a smoke workspace for running a study notebook end to end."""
import pytest


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    base = tmp_path_factory.mktemp("study")
    return {"preset": "synthetic-smoke", "data_root": str(base / "data"), "results_dir": str(base / "results")}
