import pytest

from attnet.config import load_config


@pytest.fixture(scope="session")
def smoke_data(tmp_path_factory):
    """One synthetic-smoke dataset for the whole session (generated on first use by fit)."""
    return tmp_path_factory.mktemp("data") / "synthetic-smoke"


@pytest.fixture
def smoke_cfg(smoke_data, tmp_path):
    def make(*overrides):
        return load_config("synthetic-smoke", [f"data.root={smoke_data}", f"run.out_dir={tmp_path / 'runs'}",
                                               *overrides])
    return make
