"""The difficulty sweep's derived presets and its table, without training."""
import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from attnet.config import ConfigError, load_config
from studies.difficulty import sweep

PRESETS = Path(__file__).resolve().parents[1] / "presets"


def test_a_derived_preset_is_the_base_with_a_difficulty_its_own_root_and_name(tmp_path):
    path = sweep.difficulty_preset("synthetic-smoke", 1.5, tmp_path / "presets")
    assert path.name == "synthetic-smoke-d1.5.yaml" and yaml.safe_load(path.read_text())["base"] == "synthetic-smoke"
    cfg, base = load_config(path), load_config("synthetic-smoke")
    assert cfg.preset == "synthetic-smoke-d1.5" and cfg.data.root == base.data.root + "-d1.5"
    assert cfg.data.synthetic == {**base.data.synthetic, "difficulty": 1.5}
    assert cfg.model == base.model
    # harder, longer: 4 epochs x (1 + 1.5); the rest of optim as the base's
    assert cfg.optim.epochs == 10 and dataclasses.replace(cfg.optim, epochs=base.optim.epochs) == base.optim
    assert load_config(sweep.difficulty_preset("synthetic-smoke", 0, tmp_path, data_root="/d")).data.root == "/d-d0"


def test_at_the_presets_own_difficulty_the_sweep_trains_the_preset_itself_so_its_runs_serve(tmp_path):
    assert sweep.sweep_preset("synthetic-smoke", 0, tmp_path / "presets", data_root="/d") == ("synthetic-smoke", "/d")
    assert not (tmp_path / "presets").exists()                 # no derived preset written
    name, root = sweep.sweep_preset("synthetic-smoke", 0.5, tmp_path / "presets", data_root="/d")
    assert root is None and load_config(name).data.root == "/d-d0.5" and load_config(name).optim.epochs == 6
    assert [sweep.difficulty_epochs(20, d) for d in (0, 0.5, 1, 2)] == [20, 30, 40, 60]


@pytest.mark.parametrize("preset, videos, epochs", [("synthetic-train40", 320, 135), ("synthetic-train150", 1200, 36)])
def test_the_training_set_presets_take_the_sweeps_steps_at_difficulty_2(tmp_path, preset, videos, epochs):
    """Their README rows compare with the sweep's difficulty-2 runs at (about) equal optimizer steps:
    600 videos // batch 16 = 37 steps x 72 epochs = 2,664 there; 2,700 with 40 or 150 per class."""
    def steps(name):
        cfg = load_config(sweep.sweep_preset(name, 2, tmp_path / "presets")[0])
        train = cfg.data.synthetic["videos_per_class"]["train"] * cfg.data.synthetic["num_classes"]
        return train, cfg.optim.epochs, train // cfg.data.batch_size * cfg.optim.epochs   # drop_last batches
    assert steps("synthetic") == (600, 72, 2664)
    assert steps(str(PRESETS / f"{preset}.yaml")) == (videos, epochs, 2700)


def test_only_synthetic_presets_and_non_negative_difficulties_are_swept(tmp_path):
    with pytest.raises(ValueError, match="needs a synthetic preset, its data.name is 'hmdb51'"):
        sweep.difficulty_preset("hmdb51", 1, tmp_path)
    with pytest.raises(ValueError, match="difficulty must be >= 0"):
        sweep.difficulty_preset("synthetic-smoke", -1, tmp_path)
    with pytest.raises(ConfigError, match="unknown preset"):
        sweep.difficulty_preset("no-such-preset", 1, tmp_path)


def test_the_difficulty_table_has_one_interval_per_difficulty_and_configuration(tmp_path):
    runs = pd.DataFrame({"difficulty": [0.0] * 7 + [1.0] * 3,
                         "config": ["GP only"] * 3 + ["full model"] + ["SA + GP (fusion layer)"] * 3 + ["GP only"] * 3,
                         "seed": [0, 1, 2, 0, 0, 1, 2, 0, 1, 2], "status": ["done"] * 9 + ["failed"],
                         "test.top1": [80.0, 90.0, 85.0, 95.0, 84.0, 95.0, 89.0, 50.0, 70.0, np.nan],
                         "train.top1": [91.0, 88.0, 95.0, 99.0, 90.0, 92.0, 97.5, 60.0, 75.0, np.nan]})
    assert list(sweep.difficulty_table(runs)[sweep.TEXT_COLUMNS].columns) == sweep.TEXT_COLUMNS
    table = sweep.difficulty_table(runs).set_index(["difficulty", "configuration"])
    # 80, 90, 85: mean 85, sd 5, half-width 4.302653 * 5 / sqrt(3) = 12.4207
    row = table.loc[(0.0, "GP only")]
    assert row["top1"] == 85 and row["high"] == pytest.approx(97.4207, abs=1e-4) and row["seeds"] == "3/3"
    assert row["last-epoch train top-1 (min)"] == 88.0 and row["call"] == "reference"
    assert math.isnan(table.loc[(0.0, "full model"), "low"]) and table.loc[(0.0, "full model"), "top-1"] == "95.0"
    # one pair (seed 0): 95 - 80 = +15, no interval
    assert table.loc[(0.0, "full model"), ["Δ vs GP only", "call"]].tolist() == ["+15.0", "n < 2"]
    # SA + GP minus GP, seed by seed: 4, 5, 4: mean 4.333, sd 0.57735, half-width 4.302653 * 0.57735 / sqrt(3) = 1.4342
    assert table.loc[(0.0, "SA + GP (fusion layer)"), ["Δ vs GP only", "call"]].tolist() == ["+4.3 [+2.9, +5.8]", "better"]
    # 50, 70 (the failed seed 2 left out): mean 60, sd 14.1421, t_{0.975,1} = 12.7062 -> half-width 127.06
    assert table.loc[(1.0, "GP only"), "seeds"] == "2/3"
    assert table.loc[(1.0, "GP only"), "low"] == pytest.approx(60 - 12.7062 * 14.1421 / math.sqrt(2), abs=1e-2)
    fig = sweep.difficulty_chart(sweep.difficulty_table(runs), path=tmp_path / "d.png")
    assert (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"
    # GP only has a seed below 90 % train at both difficulties (88; 60): those points are drawn
    # open, at their means; the full model (99) and SA + GP (90) are not
    from matplotlib.collections import PathCollection
    opened = [c for c in fig.axes[0].collections if isinstance(c, PathCollection)]
    assert len(opened) == 1 and opened[0].get_offsets()[:, 1].tolist() == [85.0, 60.0]
    assert "not converged" in fig.axes[0].get_title()
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["GP only", "full model",
                                                                            "SA + GP (fusion layer)"]


def test_the_pooling_probe_loses_the_class_in_the_global_average_but_not_in_the_actors_box():
    easy = sweep.pooling_probe(0.0, train=10, test=10, frames=8, size=64)
    hard = sweep.pooling_probe(1.0, train=10, test=10, frames=8, size=64)
    assert easy["test_videos"] == hard["test_videos"] == 80
    assert hard["global"] < easy["global"] - 15 and hard["global"] < 30      # chance is 12.5 %
    assert min(easy["actor"], hard["actor"]) > 70 and hard["actor"] > hard["global"] + 40


def _finished(results, preset, config, seed, top1, train, epochs=None):
    """A finished run as fit leaves it (config.yaml, final.json, metrics.csv), trained on `epochs`
    (None: its preset's) without training anything."""
    import json

    from attnet.engine.record import record_config
    from attnet.ablation import ABLATIONS, ablation_run_name, spec_config
    run = results / "runs" / ablation_run_name(preset, ABLATIONS[config], seed)
    run.mkdir(parents=True)
    record_config(run, spec_config(preset, ABLATIONS[config], seed, str(results), epochs=epochs))
    (run / "final.json").write_text(json.dumps({"test": {"top1": top1, "num_videos": 40}, "config": {}}))
    pd.DataFrame({"epoch": [1], "train_top1": [train]}).to_csv(run / "metrics.csv", index=False)


def test_the_finished_runs_give_the_table_so_far_and_runs_of_other_settings_are_left_out(tmp_path, capsys):
    results = tmp_path / "results"
    harder, _ = sweep.sweep_preset("synthetic-smoke", 0.5, results / "presets")
    for seed, gp, full in ((0, 80.0, 84.0), (1, 90.0, 96.0)):           # difficulty 0: the preset itself
        _finished(results, "synthetic-smoke", "GP only", seed, gp, 99.0)
        _finished(results, "synthetic-smoke", "full model", seed, full, 91.0)
    _finished(results, harder, "GP only", 0, 70.0, 95.0)
    _finished(results, harder, "full model", 0, 75.0, 93.0)
    _finished(results, harder, "full model", 1, 99.0, 99.0, epochs=4)    # trained before the budget was x 1.5
    runs = sweep.finished_sweep([0, 0.5], [0, 1], "synthetic-smoke", str(results), configs=["GP only", "full model"])
    table = sweep.difficulty_table(runs).set_index(["difficulty", "configuration"])
    # difficulty 0: full - GP = +4, +6: mean 5, sd 1.41421, half-width 12.7062 * 1.41421 / sqrt(2) = 12.7
    assert table.loc[(0.0, "full model"), ["seeds", "Δ vs GP only", "call"]].tolist() == ["2/2", "+5.0 [-7.7, +17.7]",
                                                                                         "no difference"]
    # difficulty 0.5: GP's seed 1 never ran, the full model's seed 1 ran 4 epochs where the preset now says 6
    assert table.loc[(0.5, "GP only"), "seeds"] == "1/2" and table.loc[(0.5, "full model"), "seeds"] == "1/2"
    assert table.loc[(0.5, "full model"), ["top1", "Δ vs GP only"]].tolist() == [75.0, "+5.0"]
    errors = runs.set_index(["difficulty", "config", "seed"])["error"]
    assert "optim.epochs: 4 -> 6" in errors[(0.5, "full model", 1)] and "not finished" in errors[(0.5, "GP only", 1)]
    sweep.main(["--preset", "synthetic-smoke", "--results", str(results), "--difficulties", "0", "0.5",
                "--seeds", "0", "1"])
    out = capsys.readouterr().out
    assert "| 0.5 | full model | 1/2 | 75.0 | 93.0 | +5.0 | n < 2 |" in out and "6 of 16 runs finished" in out   # the 4 configurations
    assert not list(tmp_path.rglob("*.png"))                             # no figure unless asked for
    figure = tmp_path / "figures" / "d.png"
    sweep.main(["--preset", "synthetic-smoke", "--results", str(results), "--difficulties", "0", "--seeds", "0", "1",
                "--configs", "GP only", "full model", "--figure", str(figure)])
    out = capsys.readouterr().out
    assert "| 0.0 | full model | 2/2 | 90.0 [13.8, 166.2] | 91.0 | +5.0 [-7.7, +17.7] | no difference |" in out
    assert "SA + GP" not in out and "4 of 4 runs finished" in out
    assert f"figure: {figure}" in out and figure.read_bytes()[:4] == b"\x89PNG"


def test_any_ablation_row_can_be_read_and_taken_as_the_reference(tmp_path, capsys):
    results = tmp_path / "results"
    for seed, gp, oracle, full in ((0, 80.0, 95.0, 84.0), (1, 90.0, 97.0, 96.0)):
        _finished(results, "synthetic-smoke", "GP only", seed, gp, 99.0)
        _finished(results, "synthetic-smoke", "oracle + GP (fusion layer)", seed, oracle, 100.0)
        _finished(results, "synthetic-smoke", "full model", seed, full, 91.0)
    configs = ["--configs", "GP only", "oracle + GP (fusion layer)", "full model"]
    sweep.main(["--preset", "synthetic-smoke", "--results", str(results), "--difficulties", "0", "--seeds", "0", "1",
                *configs, "--reference", "oracle + GP (fusion layer)"])
    out = capsys.readouterr().out
    assert "| Δ vs oracle + GP (fusion layer) | call |" in out
    # full - oracle = -11, -1: mean -6, sd 7.07107, half-width 12.7062 * 7.07107 / sqrt(2) = 63.5
    assert "| 0.0 | full model | 2/2 | 90.0 [13.8, 166.2] | 91.0 | -6.0 [-69.5, +57.5] | no difference |" in out
    # GP - oracle = -15, -7: mean -11, sd 5.65685, half-width 12.7062 * 4 = 50.8
    assert "| 0.0 | GP only | 2/2 | 85.0 [21.5, 148.5] | 99.0 | -11.0 [-61.8, +39.8] | no difference |" in out
    assert "| 0.0 | oracle + GP (fusion layer) | 2/2 | 96.0 [83.3, 108.7] | 100.0 |  | reference |" in out
    with pytest.raises(SystemExit) as exit_:
        sweep.main(["--preset", "synthetic-smoke", "--results", str(results), "--difficulties", "0",
                    "--configs", "GP only", "full model", "--reference", "oracle + GP (fusion layer)"])
    assert exit_.value.code == 2 and "is not among --configs" in capsys.readouterr().err
