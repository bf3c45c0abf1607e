"""The cause experiments: each changes one thing of the full model; the table's intervals and
paired differences by hand; the coverage pretraining learns."""
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from attnet.config import derived_preset, load_config
from attnet.models import build_backbone
from studies.attention_causes import causes


def _flat(cfg) -> dict:
    d = cfg.to_dict()
    return {f"{section}.{key}": value for section in ("data", "model", "optim", "run") for key, value in d[section].items()}


def test_every_cause_changes_exactly_one_thing_of_the_full_model(tmp_path):
    weights = tmp_path / "w.pth"
    torch.save(build_backbone("tiny").state_dict(), weights)
    base = load_config("synthetic-smoke")
    context = {"data_root": None, "epochs": base.optim.epochs, "pretrained": str(weights)}
    expected = {"receptive field": {"model.backbone"}, "object-aware features": {"model.pretrained"},
                "lighting cue": {"data.root", "data.synthetic"}, "training budget": {"optim.epochs"}}
    assert set(causes.CAUSES) == {*expected, "g redundancy", "GA gradient into GP"}
    for name, cause in causes.CAUSES.items():
        if cause.preset is None:                  # an ablation spec: one key, set against its default
            (key, value), = cause.spec.items()
            assert getattr(base.model, key) != value, name
            continue
        assert not cause.spec, name
        derived = load_config(derived_preset("synthetic-smoke", cause.tag, cause.preset(base, context), tmp_path))
        changed = {k for k, v in _flat(derived).items() if _flat(base)[k] != v}
        assert changed == expected[name], name
    derived = {n: load_config(tmp_path / f"synthetic-smoke-{c.tag}.yaml") for n, c in causes.CAUSES.items() if c.preset}
    assert derived["receptive field"].model.backbone == "patch"
    assert derived["training budget"].optim.epochs == 3 * base.optim.epochs
    assert derived["lighting cue"].data.root == base.data.root + "-nolight"
    assert derived["lighting cue"].data.synthetic == {**base.data.synthetic, "lighting": False}


def _runs() -> pd.DataFrame:
    rows = []
    # reference: SA mass 3, 4, 5; LA mass 4, 4, 4
    for seed, (top1, sa, la) in enumerate([(60, 3, 4), (70, 4, 4), (80, 5, 4)]):
        rows.append({"config": "full model", "seed": seed, "status": "done", "test.top1": top1,
                     "sa.mass": sa, "sa.hit": 10.0, "la.mass": la, "la.hit": 20.0})
    # experiment: SA mass 5, 7, 9 (paired differences 2, 3, 4); LA 4, 5, 3 (0, 1, -1); SA pointing
    # 25, 30, 35 (differences 15, 20, 25); seed 3 failed
    for seed, (top1, sa, la, hit) in enumerate([(60, 5, 4, 25.0), (60, 7, 5, 30.0), (60, 9, 3, 35.0)]):
        rows.append({"config": "lighting cue", "seed": seed, "status": "done", "test.top1": top1,
                     "sa.mass": sa, "sa.hit": hit, "la.mass": la, "la.hit": 20.0})
    rows.append({"config": "lighting cue", "seed": 3, "status": "failed", "test.top1": np.nan,
                 "sa.mass": np.nan, "sa.hit": np.nan, "la.mass": np.nan, "la.hit": np.nan})
    return pd.DataFrame(rows)


def test_the_table_gives_t_intervals_and_paired_differences_computed_by_hand():
    bounds = {"uniform.mass": 4.44, "uniform.hit": 4.1, "oracle.mass": 61.0, "oracle.hit": 90.0}
    table = causes.causes_table(_runs(), bounds).set_index("experiment")
    half = 4.302653 / np.sqrt(3)             # t(0.975, df 2) * sd 1 / sqrt(3) = 2.484
    ref, exp = table.loc["full model"], table.loc["lighting cue"]
    assert ref["seeds"] == "3/3" and exp["seeds"] == "3/4"
    assert ref["top-1"] == f"70.0 [{70 - 10 * half:.1f}, {70 + 10 * half:.1f}]"        # sd 10
    assert ref["SA mass in box"] == "4.0 [1.5, 6.5]" and ref["SA mass call"] == ref["SA pointing call"] == "reference"
    assert ref["sa_low"] == pytest.approx(4 - half, abs=1e-4)
    assert exp["SA mass in box"] == "7.0 [2.0, 12.0]"                                  # sd 2
    assert exp["Δ SA mass"] == "+3.0 [+0.5, +5.5]" and exp["SA mass call"] == "better"
    assert exp["dsa_low"] == pytest.approx(3 - half, abs=1e-4)
    assert exp["Δ LA mass"] == "+0.0 [-2.5, +2.5]" and exp["LA mass call"] == "no difference"
    # pointing, sd 5: half-width 4.302653 * 5 / sqrt(3) = 12.42; the same LA pointing on every seed: no difference
    assert exp["SA pointing"] == "30.0 [17.6, 42.4]"
    assert exp["Δ SA pointing"] == "+20.0 [+7.6, +32.4]" and exp["SA pointing call"] == "better"
    assert exp["Δ LA pointing"] == "+0.0 [+0.0, +0.0]" and exp["LA pointing call"] == "no difference"
    assert table.loc["uniform attention (floor)", "SA pointing call"] == ""
    assert list(table.index[-2:]) == ["uniform attention (floor)", "oracle attention (ceiling)"]
    assert table.loc["uniform attention (floor)", "LA mass in box"] == "4.4"
    assert table.loc["oracle attention (ceiling)", "SA pointing"] == "90.0"
    assert list(causes.causes_table(_runs(), bounds).columns[:len(causes.TEXT_COLUMNS)]) == causes.TEXT_COLUMNS


def test_a_worse_experiment_is_called_worse():
    runs = _runs()
    runs.loc[runs["config"] == "lighting cue", "la.mass"] = [2.0, 2.5, 1.5, np.nan]    # differences -2, -1.5, -2.5
    row = causes.causes_table(runs, {"uniform.mass": 4, "uniform.hit": 4, "oracle.mass": 60, "oracle.hit": 90}
                              ).set_index("experiment").loc["lighting cue"]
    assert row["LA mass call"] == "worse" and row["Δ LA mass"].startswith("-2.0 [")


def test_run_causes_refuses_an_unknown_cause_and_a_dataset_without_boxes(tmp_path):
    with pytest.raises(ValueError, match="unknown experiment.*'lightning cue'"):
        causes.run_causes([0], "synthetic-smoke", str(tmp_path), causes=["lightning cue"])
    with pytest.raises(ValueError, match="synthetic preset"):
        causes.run_causes([0], "hmdb51", str(tmp_path))


def test_the_coverage_pretraining_loss_decreases_and_its_backbone_loads(tmp_path):
    out = tmp_path / "pre" / "coverage.pth"
    report = causes.pretrain_coverage("synthetic-smoke", out, data_root=str(tmp_path / "data"), epochs=4, device="cpu")
    assert report["loss_last_epoch"] < 0.8 * report["loss_first_epoch"]
    assert report["train_videos"] == 4 * 6 and 0 < report["val_frames"] <= 4 * 2 * 4   # classes x videos x segments
    assert 0 <= report["val_mass_in_box"] <= 100 and 0 <= report["uniform_mass_in_box"] <= 100
    saved = torch.load(out, weights_only=True)
    loaded = build_backbone("tiny", str(out))
    assert torch.equal(loaded[0].weight, saved["0.weight"])
    assert json.loads(out.with_suffix(".json").read_text()) == report
    stamp = out.stat().st_mtime_ns
    assert causes.pretrain_coverage("synthetic-smoke", out, data_root=str(tmp_path / "data"), epochs=4) == report
    assert out.stat().st_mtime_ns == stamp                      # a finished pretraining is reused


def test_the_pretrained_preset_names_the_weights_as_results_dir_does_relative_to_the_checkout(tmp_path, monkeypatch):
    # a relative results_dir (what `attnet reproduce` passes inside the checkout) gives a relative
    # model.pretrained, like data.root: the committed preset names no path of the machine that ran it
    monkeypatch.chdir(tmp_path)
    calls = []
    monkeypatch.setattr(causes, "pretrain_coverage", lambda preset, out_file, *a, **k: {"file": str(out_file)})
    monkeypatch.setattr(causes.synthetic, "ensure", lambda *a, **k: None)
    monkeypatch.setattr(causes, "run_ablation", lambda configs, seeds, preset, *a, **k: calls.append(preset) or
                        pd.DataFrame({"config": list(configs), "seed": [0], "run": ["r"], "status": ["failed"]}))
    with pytest.raises(RuntimeError, match="finished for no seed"):
        causes.run_causes([0], "synthetic-smoke", "results", causes=["object-aware features"])
    derived = yaml.safe_load(open("results/presets/synthetic-smoke-objpre.yaml"))
    assert derived["model"]["pretrained"] == "results/pretrained/synthetic-smoke-coverage.pth"
    assert calls[-1] == str((tmp_path / "results/presets/synthetic-smoke-objpre.yaml").resolve())


@pytest.mark.slow
def test_a_clone_scores_reused_runs_from_their_files_and_stops_before_training_where_one_has_neither(
        tmp_path, monkeypatch):
    results, runs = str(tmp_path / "results"), tmp_path / "results" / "runs"
    kwargs = dict(data_root=str(tmp_path / "data"), causes=["g redundancy"], epochs=1, device="cpu")
    first = causes.run_causes([0], "synthetic-smoke", results, **kwargs)
    reference, nofusion = (runs / name for name in first.runs["run"])
    assert reference.name == "synthetic-smoke_gp+sa+la_sru_seed0"
    for run in (reference, nofusion):              # what a clone holds: *.pt is not committed
        shutil.rmtree(run / "checkpoints")
    again = causes.run_causes([0], "synthetic-smoke", results, **kwargs)
    columns = ["config", "run", "status", "test.top1", "sa.mass", "sa.hit", "la.mass", "la.hit"]
    pd.testing.assert_frame_equal(again.runs[columns], first.runs[columns])
    assert again.bounds == first.bounds and set(first.bounds) == {"uniform.mass", "uniform.hit", "oracle.mass", "oracle.hit"}

    monkeypatch.setattr(causes, "run_ablation", lambda *a, **k: pytest.fail("trained before the check"))
    monkeypatch.setattr(causes, "pretrain_coverage", lambda *a, **k: pytest.fail("pretrained before the check"))
    kept = (reference / "localization.json").read_text()
    (reference / "localization.json").unlink()     # the reference trained, never scored
    with pytest.raises(RuntimeError, match=rf"{re.escape(str(reference))}: finished, but neither its localization.json "
                                           rf"\(max_videos=None\) .*; retrain it: remove {re.escape(str(reference))} and run "
                                           r"python -m studies.attention_causes --preset synthetic-smoke$"):
        causes.run_causes([0], "synthetic-smoke", results, **kwargs)
    (reference / "localization.json").write_text(kept)
    bounds = json.loads((reference / "attention_bounds.json").read_text())
    (reference / "attention_bounds.json").write_text(json.dumps({**bounds, "max_videos": 2}))   # scored on fewer videos
    with pytest.raises(RuntimeError, match=r"neither its attention_bounds.json \(max_videos=None\)"):
        causes.run_causes([0], "synthetic-smoke", results, **kwargs)
    (reference / "attention_bounds.json").write_text(json.dumps(bounds))
    (nofusion / "localization.json").unlink()      # a cause's own run: named, with the same remedy
    with pytest.raises(RuntimeError, match=rf"{re.escape(nofusion.name)}: .* run python -m studies.attention_causes"):
        causes.run_causes([0], "synthetic-smoke", results, **kwargs)


def test_causes_chart_draws_every_experiment_between_floor_and_ceiling(tmp_path):
    runs = pd.DataFrame([{"config": c, "seed": s, "status": "done", "test.top1": 50.0, "sa.mass": m + s,
                          "sa.hit": 10.0, "la.mass": m, "la.hit": 5.0}
                         for c, m in (("full model", 4.0), ("lighting cue", 9.0)) for s in (0, 1, 2)])
    table = causes.causes_table(runs, {"uniform.mass": 4.4, "uniform.hit": 4.1, "oracle.mass": 60.0, "oracle.hit": 90.0})
    fig = causes.causes_chart(table, path=tmp_path / "causes.png")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["full model", "lighting cue"]
    assert sorted(line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() in (":", "--")) == [4.4, 60.0]
    assert (tmp_path / "causes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
