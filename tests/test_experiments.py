"""The notebooks' computations as functions: a trained run loaded for inspection, the transfer target."""
import json
import shutil

import pandas as pd
import pytest
import torch

from attnet.experiments import run_overrides, stand_in_target, trained_run, transfer_experiment, video_attention
from attnet.files import CheckpointError


def test_run_overrides_point_the_run_at_the_registry():
    assert run_overrides("res", resume=False, data_root="d") == \
        ["run.out_dir=res/runs", "run.resume=False", "run.overwrite=True", "data.root=d"]
    assert run_overrides("res") == ["run.out_dir=res/runs", "run.resume=True", "run.overwrite=False"]
    assert run_overrides("res", epochs=3) == ["run.out_dir=res/runs", "run.resume=True", "run.overwrite=False",
                                              "optim.epochs=3"]


def test_stand_in_target_is_a_smaller_synthetic_dataset():
    root, spec = stand_in_target("synthetic-smoke")
    assert root == "data.root=data/synthetic-smoke-target"
    spec = json.loads(spec.removeprefix("data.synthetic="))
    # the smoke preset has 4 classes and 6 training videos per class: min(6, 4) and max(2, 6 // 3)
    assert spec["num_classes"] == 4 and spec["videos_per_class"] == {"train": 2, "val": 4, "test": 8}
    assert spec["seed"] == 1 and spec["size"] == 64


def test_trained_run_holds_the_best_checkpoint_in_eval_mode(tmp_path):
    run = trained_run("synthetic-smoke", str(tmp_path / "res"), data_root=str(tmp_path / "data"), device="cpu")
    best = torch.load(run.run_dir / "checkpoints" / "best.pt", weights_only=True)["model"]
    assert run.device == torch.device("cpu") and not run.model.training
    for key, value in run.model.state_dict().items():
        assert torch.equal(value, best[key]), key
    shown = video_attention(run, 0)
    assert shown.images.shape == (4, 64, 64, 3) and shown.boxes.shape == (4, 4)     # T = 4 segments
    assert set(shown.maps) == {"sa", "la", "gradcam"}
    for maps in shown.maps.values():                       # one distribution over the 4x4 grid per frame
        assert maps.shape == (4, 4, 4)
        torch.testing.assert_close(maps.sum(dim=(1, 2)), torch.ones(4))
    assert shown.title.startswith(run.test.records[0].path.name + ": true ")


def test_a_run_trained_for_fewer_epochs_is_what_04_and_06_use_when_given_them(tmp_path):
    """`attnet reproduce --epochs 1`: 03 trains the full model for 1 epoch; 04 and 06 reuse it."""
    where = dict(results_dir=str(tmp_path / "res"), data_root=str(tmp_path / "data"))
    first = trained_run("synthetic-smoke", device="cpu", epochs=1, **where)
    assert pd.read_csv(first.run_dir / "metrics.csv")["epoch"].tolist() == [1]
    finished = (first.run_dir / "final.json").stat().st_mtime_ns
    with pytest.raises(ValueError, match=r"optim.epochs: 1 -> 4\); retrain it .*\(attnet reproduce --fresh\)"):
        trained_run("synthetic-smoke", device="cpu", **where)           # the preset's 4 epochs: not this run
    assert trained_run("synthetic-smoke", device="cpu", epochs=1, **where).run_dir == first.run_dir
    transfer = transfer_experiment("synthetic-smoke", epochs=1, **where)
    assert transfer.init_checkpoint == str(first.run_dir / "checkpoints" / "best.pt")
    assert {start: run.name for start, run in transfer.runs.items()} == {
        "fine-tuned": "synthetic-smoke_transfer_fine-tuned", "from scratch": "synthetic-smoke_transfer_from-scratch"}
    assert transfer.table["top-1"].tolist() == [round(json.loads((run / "final.json").read_text())["test"]["top1"], 1)
                                                for run in transfer.runs.values()]
    assert (first.run_dir / "final.json").stat().st_mtime_ns == finished        # reused, never retrained
    shutil.rmtree(first.run_dir / "checkpoints")             # a finished run as results/ commits it: no weights
    with pytest.raises(CheckpointError, match=r"best.pt: checkpoint not found; this finished run kept no checkpoint"
                                              r" .*retrain it with run.overwrite=true \(attnet reproduce --fresh\)$"):
        trained_run("synthetic-smoke", device="cpu", epochs=1, **where)
