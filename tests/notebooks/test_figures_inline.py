"""Each figure a notebook draws is shown in it (an image/png output), not only saved (00's here;
01's, 05's and 06's: tests/notebooks/test_paper_presets.py, 04's: tests/notebooks/test_notebooks.py)."""
import pytest

from tests.notebooks import inline_images, run_notebook

pytest.importorskip("papermill")


def test_the_quickstart_shows_its_figure_inline(tmp_path):
    out = tmp_path / "00_quickstart.ipynb"
    run_notebook("00_quickstart", out, {"preset": "synthetic-smoke", "data_root": str(tmp_path / "data"),
                                        "results_dir": str(tmp_path / "results")})
    images = inline_images(out)
    assert len(images) == 1 and len(images[0]) > 2000   # a real picture, not an empty canvas
