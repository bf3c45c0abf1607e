"""The difficulty sweep's derived presets and its table, without training."""
import math

import numpy as np
import pandas as pd
import pytest
import yaml

from attnet import sweep, viz
from attnet.config import ConfigError, load_config


def test_a_derived_preset_is_the_base_with_a_difficulty_its_own_root_and_name(tmp_path):
    path = sweep.difficulty_preset("synthetic-smoke", 1.5, tmp_path / "presets")
    assert path.name == "synthetic-smoke-d1.5.yaml" and yaml.safe_load(path.read_text())["base"] == "synthetic-smoke"
    cfg, base = load_config(path), load_config("synthetic-smoke")
    assert cfg.preset == "synthetic-smoke-d1.5" and cfg.data.root == base.data.root + "-d1.5"
    assert cfg.data.synthetic == {**base.data.synthetic, "difficulty": 1.5}
    assert cfg.model == base.model and cfg.optim == base.optim
    assert load_config(sweep.difficulty_preset("synthetic-smoke", 0, tmp_path, data_root="/d")).data.root == "/d-d0"


def test_only_synthetic_presets_and_non_negative_difficulties_are_swept(tmp_path):
    with pytest.raises(ValueError, match="needs a synthetic preset, its data.name is 'hmdb51'"):
        sweep.difficulty_preset("hmdb51", 1, tmp_path)
    with pytest.raises(ValueError, match="difficulty must be >= 0"):
        sweep.difficulty_preset("synthetic-smoke", -1, tmp_path)
    with pytest.raises(ConfigError, match="unknown preset"):
        sweep.difficulty_preset("no-such-preset", 1, tmp_path)


def test_the_difficulty_table_has_one_interval_per_difficulty_and_configuration(tmp_path):
    runs = pd.DataFrame({"difficulty": [0.0] * 4 + [1.0] * 3,
                         "config": ["GP only"] * 3 + ["full model"] + ["GP only"] * 3,
                         "seed": [0, 1, 2, 0, 0, 1, 2], "status": ["done"] * 6 + ["failed"],
                         "test.top1": [80.0, 90.0, 85.0, 95.0, 50.0, 70.0, np.nan]})
    table = sweep.difficulty_table(runs).set_index(["difficulty", "configuration"])
    # 80, 90, 85: mean 85, sd 5, half-width 4.302653 * 5 / sqrt(3) = 12.4207
    row = table.loc[(0.0, "GP only")]
    assert row["top1"] == 85 and row["high"] == pytest.approx(97.4207, abs=1e-4) and row["seeds"] == "3/3"
    assert math.isnan(table.loc[(0.0, "full model"), "low"]) and table.loc[(0.0, "full model"), "top-1"] == "95.0"
    # 50, 70 (the failed seed 2 left out): mean 60, sd 14.1421, t_{0.975,1} = 12.7062 -> half-width 127.06
    assert table.loc[(1.0, "GP only"), "seeds"] == "2/3"
    assert table.loc[(1.0, "GP only"), "low"] == pytest.approx(60 - 12.7062 * 14.1421 / math.sqrt(2), abs=1e-2)
    fig = viz.difficulty_chart(sweep.difficulty_table(runs), path=tmp_path / "d.png")
    assert (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["GP only", "full model"]


def test_the_pooling_probe_loses_the_class_in_the_global_average_but_not_in_the_actors_box():
    easy = sweep.pooling_probe(0.0, train=10, test=10, frames=8, size=64)
    hard = sweep.pooling_probe(1.0, train=10, test=10, frames=8, size=64)
    assert easy["test_videos"] == hard["test_videos"] == 80
    assert hard["global"] < easy["global"] - 15 and hard["global"] < 30      # chance is 12.5 %
    assert min(easy["actor"], hard["actor"]) > 70 and hard["actor"] > hard["global"] + 40
