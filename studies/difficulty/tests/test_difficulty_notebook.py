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
def test_difficulty_notebook_sweeps_writes_its_table_and_shows_the_figure(workspace, tmp_path):
    import nbformat
    out = tmp_path / "difficulty.ipynb"
    execute(ROOT / "studies" / "difficulty" / "difficulty.ipynb", out, {**workspace, "difficulties": [0, 1], "seeds": [0], "epochs": 1,
                                   "sweep_configs": ["GP only"], "probe_videos": 3}, ROOT)
    table = pd.read_csv(f"{workspace['results_dir']}/tables/difficulty_synthetic-smoke.csv")
    assert list(zip(table["difficulty"], table["configuration"])) == [(0.0, "GP only"), (1.0, "GP only")]
    assert table["seeds"].eq("1/1").all() and table["top-1"].astype(float).between(0, 100).all()   # one seed: no interval
    assert table["call"].eq("reference").all() and table["last-epoch train top-1 (min)"].between(0, 100).all()
    probe = pd.read_csv(f"{workspace['results_dir']}/tables/difficulty_probe_synthetic-smoke.csv")
    assert probe["difficulty"].tolist() == [0, 1] and probe["test_videos"].eq(24).all()   # 8 classes x 3
    runs = sorted(os.listdir(f"{workspace['results_dir']}/runs"))
    # one per difficulty: at the preset's own difficulty, the preset's own run (the ablation's, when it exists)
    assert {"synthetic-smoke_gp_sru_seed0", "synthetic-smoke-d1_gp_sru_seed0"} <= set(runs)
    meta = json.loads(open(f"{workspace['data_root']}-d1/meta.json").read())
    assert meta["difficulty"] == 1.0 and meta["num_classes"] == 4      # the smoke set, made harder
    images = [o for cell in nbformat.read(out, as_version=4).cells if cell.cell_type == "code"
              for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 1                                            # the figure, inline
    assert open(f"{workspace['results_dir']}/figures/difficulty_synthetic-smoke.png", "rb").read()[:4] == b"\x89PNG"
