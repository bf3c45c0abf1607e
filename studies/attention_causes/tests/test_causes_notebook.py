"""The study's notebook end to end on the smoke preset."""
import json
import os
from pathlib import Path

import pandas as pd
import pytest

from attnet.reproduce import execute

pytest.importorskip("papermill")
ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_causes_notebook_writes_its_table_and_figure(workspace, tmp_path):
    import nbformat
    chosen = ["object-aware features", "lighting cue"]   # a pretraining, a derived dataset (a spec: test_causes.py)
    out = tmp_path / "08.ipynb"
    execute(ROOT / "studies" / "attention_causes" / "attention_causes.ipynb", out,
            {**workspace, "seeds": [0, 1], "epochs": 1, "causes": chosen}, ROOT)
    tables = f"{workspace['results_dir']}/tables"
    table = pd.read_csv(f"{tables}/attention_causes_synthetic-smoke.csv")
    assert table["experiment"].tolist() == ["full model", *chosen, "uniform attention (floor)",
                                            "oracle attention (ceiling)"]
    assert table["seeds"].iloc[:3].eq("2/2").all() and table["SA mass call"].iloc[0] == "reference"
    runs = pd.read_csv(f"{tables}/attention_causes_runs_synthetic-smoke.csv")
    assert runs[["sa.mass", "la.mass"]].notna().all().all() and runs["sa.mass"].between(0, 100).all()
    assert set(runs["run"]) >= {"synthetic-smoke-objpre_gp+sa+la_sru_seed1",
                                "synthetic-smoke-nolight_gp+sa+la_sru_seed1"}
    assert json.loads(open(f"{workspace['data_root']}-nolight/meta.json").read())["lighting"] is False
    pretraining = pd.read_csv(f"{tables}/attention_causes_pretraining_synthetic-smoke.csv")
    assert pretraining["epochs"].tolist() == [1] and pretraining["train videos"].tolist() == [24]
    images = [o for cell in nbformat.read(out, as_version=4).cells if cell.cell_type == "code"
              for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 1
    assert open(f"{workspace['results_dir']}/figures/attention_causes_synthetic-smoke.png", "rb").read()[:4] == b"\x89PNG"
