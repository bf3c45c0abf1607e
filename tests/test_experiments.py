"""The notebooks' computations as functions: a trained run loaded for inspection, the transfer target."""
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from attnet import experiments
from attnet.config import load_config
from attnet.experiments import (retrain_agreement, run_overrides, stand_in_target, trained_run, transfer_experiment,
                                video_attention)


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
    record = {f.name: f.read_bytes() for f in first.run_dir.iterdir() if f.is_file()}
    again = trained_run("synthetic-smoke", device="cpu", epochs=1, **where)
    assert again.record == first.run_dir and again.run_dir == tmp_path / "res" / "retrained" / first.run_dir.name
    assert {f.name: f.read_bytes() for f in first.run_dir.iterdir() if f.is_file()} == record   # left as it was
    n = len(again.test)                 # one machine, the record's settings: the same model, digit for digit
    assert again.describe().endswith(f"agrees on {n} of {n} test videos and the scores repeat digit for digit")
    finished = (again.run_dir / "final.json").stat().st_mtime_ns
    assert trained_run("synthetic-smoke", device="cpu", epochs=1, **where).run_dir == again.run_dir
    assert (again.run_dir / "final.json").stat().st_mtime_ns == finished        # the retrain is reused
    shutil.rmtree(again.run_dir / "checkpoints")                                # as a committed retrain: started again
    assert (trained_run("synthetic-smoke", device="cpu", epochs=1, **where).run_dir / "checkpoints" / "best.pt").is_file()


def test_a_record_in_bf16_is_trained_again_in_what_auto_picks_where_bf16_would_be_emulated(tmp_path, monkeypatch):
    record = tmp_path / "res" / "runs" / "r"
    record.mkdir(parents=True)
    cfg = load_config("synthetic-smoke", ["optim.amp=bf16", "run.threads=1"])
    (record / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    seen = []
    monkeypatch.setattr(experiments, "fit", lambda cfg: seen.append(cfg) or Path(cfg.run.out_dir) / cfg.run.name)
    for native, amp in (("off", "auto"), ("bf16", "bf16")):          # a CPU without / with bfloat16 units
        monkeypatch.setattr(experiments.runtime, "native_amp", lambda device: native)
        assert experiments.retrained(record, str(tmp_path / "res"), "d", "cpu") == tmp_path / "res" / "retrained" / "r"
        c = seen.pop()
        assert (c.optim.amp, c.run.name, c.run.out_dir, c.data.root) == (amp, "r", f"{tmp_path}/res/retrained", "d")
        assert (c.run.device, c.run.threads, c.run.resume, c.run.overwrite) == ("cpu", 1, True, False)
    again = tmp_path / "res" / "retrained" / "r"
    again.mkdir(parents=True)
    (again / "final.json").write_text("{}")                          # a retrain that lost its checkpoint
    experiments.retrained(record, str(tmp_path / "res"))
    c = seen.pop()
    assert c.run.overwrite and not c.run.resume


def test_retrain_agreement_counts_agreeing_predictions_and_equal_scores(tmp_path):
    def run(name, precision, logits):
        d = tmp_path / name
        d.mkdir()
        (d / "final.json").write_text(json.dumps({"precision": precision, "device": "cpu (2 threads)", "cpu": name,
                                                  "test": {"top1": 100 * sum(np.argmax(x) == 0 for x in logits) / 3}}))
        rows = [{"video": f"v{i}", "label": 0, "stream": stream, "s0": x[0], "s1": x[1]}
                for i, x in enumerate(logits) for stream in ("fused", "sa")]
        pd.DataFrame(rows).to_csv(d / "scores.csv.gz", index=False)
        return d
    a = run("A", "bf16", [(2.0, 1.0), (0.5, 1.5), (3.0, 0.0)])
    b = run("B", "fp32", [(2.0, 1.0), (1.5, 0.5), (3.0, 0.25)])     # video 1 now predicted 0
    assert retrain_agreement(a, b) == ("fp32 on B, test top-1 100.0 % (the record: bf16 on A, test top-1 66.7 %); "
                                       "the fused prediction agrees on 2 of 3 test videos and the scores do not "
                                       "repeat digit for digit")
    assert retrain_agreement(a, a).endswith("agrees on 3 of 3 test videos and the scores repeat digit for digit")
