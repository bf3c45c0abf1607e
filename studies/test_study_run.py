"""`python -m studies.<study>`: the study's notebook runs with its results inside the study's folder."""
from pathlib import Path

import pytest

from studies import run


def test_a_study_runs_its_notebook_into_its_own_results_with_yaml_parameters(monkeypatch):
    calls = []
    monkeypatch.setattr(run, "execute", lambda source, output, params, cwd: calls.append((source, output, params, cwd)))
    notebook = run.ROOT / "studies" / "difficulty" / "difficulty.ipynb"
    run.run_study(notebook, ["--seeds", "0", "1", "--param", "difficulties=[0, 0.5]", "--param", "configs=all"])
    (source, output, params, cwd), = calls
    assert output == run.ROOT / "studies/difficulty/results/notebooks/difficulty.ipynb" and cwd == run.ROOT
    assert params["results_dir"] == str(Path("studies/difficulty/results")) and params["seeds"] == [0, 1]
    assert params["difficulties"] == [0, 0.5] and params["configs"] == "all" and params["preset"] == "synthetic"
    with pytest.raises(SystemExit):
        run.run_study(notebook, ["--param", "difficulties"])          # no '=': one line from argparse
