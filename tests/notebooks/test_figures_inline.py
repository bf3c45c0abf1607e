"""Each figure a notebook draws is shown in it (an image/png output), and no kernel warning is."""
import json
from pathlib import Path

import pytest

from tests.notebooks import run_notebook

pytest.importorskip("papermill")


def outputs(path):
    return [o for cell in json.loads(path.read_text())["cells"] for o in cell.get("outputs", [])]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    base = tmp_path_factory.mktemp("figs")
    return {"preset": "synthetic-smoke", "data_root": str(base / "data"), "results_dir": str(base / "results")}


@pytest.mark.parametrize("name, params, figures, files", [
    ("00_quickstart", {}, 1, []),
    pytest.param("01_data", {}, 2, ["data_samples_synthetic-smoke.png", "tsn_sampling.png"], marks=pytest.mark.slow),
    pytest.param("04_attention", {"videos": [0, 1], "device": "cpu"}, 2,
                 ["attention_synthetic-smoke_video0.png", "attention_synthetic-smoke_video1.png"], marks=pytest.mark.slow),
])
def test_every_figure_is_inline_and_saved(workspace, tmp_path, name, params, figures, files):
    out = tmp_path / f"{name}.ipynb"
    run_notebook(name, out, {**workspace, **params})
    images = [o for o in outputs(out) if "image/png" in o.get("data", {})]
    assert len(images) == figures, f"{name}: {len(images)} inline images, expected {figures}"
    for image in images:
        assert len(image["data"]["image/png"]) > 2000        # base64 of a real picture, not an empty canvas
    for file in files:
        assert (Path(workspace["results_dir"]) / "figures" / file).is_file(), file


@pytest.mark.slow
@pytest.mark.parametrize("name", ["03_ablation", "06_transfer"])
def test_executed_notebooks_carry_no_kernel_warnings(workspace, tmp_path, name):
    """03 once ran 02 in kernels of its own, whose log landed in 03's cells; 06 trains three runs."""
    out = tmp_path / f"{name}.ipynb"
    run_notebook(name, out, {**workspace, "configs": ["GP only"], "epochs": 1})
    text = "".join("".join(o.get("text", "")) for o in outputs(out) if o.get("name") == "stderr")
    assert "WARNING" not in text and "without encryption" not in text, text[:500]
