"""The run record survives faults and bad input: kills at the epoch boundary, divergence,
changed settings on resume, concurrent processes, bad checkpoints, bad videos and lists."""
import dataclasses
import fcntl
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from attnet.config import LaunchConfig
from attnet.data import DataError
from attnet.engine import TrainingDiverged, evaluate, fit, record
from attnet.engine import train as train_module
from attnet.engine.checkpoint import load
from attnet.files import CheckpointError, atomic_path, save_atomic
from attnet.results import load_runs

TIMING = ["seconds", "clips_per_s"]
ROOT = Path(__file__).resolve().parents[2]


def finite(path):
    return not record.non_finite(torch.load(path, weights_only=True))


# --- item 2: a kill at any instant of the epoch boundary ------------------------------------
def _train(args, crash=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "faults"), str(ROOT)])}
    env.pop("ATTNET_CRASH_AT", None)
    if crash:
        env["ATTNET_CRASH_AT"] = crash
    return subprocess.run([sys.executable, "-m", "attnet", "train", "--preset", "synthetic-smoke", *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


@pytest.mark.slow
def test_sigkill_at_each_point_of_the_epoch_boundary_then_resume_gives_the_uninterrupted_record(smoke_cfg):
    cfg = smoke_cfg("run.name=whole", "optim.epochs=3", "run.threads=1")
    whole = fit(cfg)
    args = [f"data.root={cfg.data.root}", f"run.out_dir={cfg.run.out_dir}", "run.name=cut", "optim.epochs=3",
            "run.threads=1"]
    cut = whole.parent / "cut"
    # epoch 1 after best.pt (before last.pt), then after last.pt (no metrics.csv yet); epoch 2 after
    # metrics.csv; epoch 3 after last.pt, before its metrics row
    for crash, resume in (("after_best:1", []), ("after_checkpoint:1", ["--resume"]),
                          ("after_metrics:2", ["--resume"]), ("after_checkpoint:3", ["--resume"])):
        done = _train(args + resume, crash)
        assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
        assert not (cut / "final.json").exists()
    assert len(pd.read_csv(cut / "metrics.csv")) == 2          # killed before epoch 3's row was written
    done = _train(args + ["--resume"])
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = pd.read_csv(cut / "metrics.csv")
    assert metrics["epoch"].tolist() == [1, 2, 3]                     # every epoch exactly once
    pd.testing.assert_frame_equal(pd.read_csv(whole / "metrics.csv").drop(columns=TIMING), metrics.drop(columns=TIMING))
    assert json.loads((cut / "final.json").read_text())["test"] == json.loads((whole / "final.json").read_text())["test"]
    assert not list(cut.rglob("*.tmp"))
    board = EventAccumulator(str(cut / "tensorboard" / "epochs"))      # each epoch once: what the kills left is purged
    board.Reload()
    for column in metrics.columns.drop("epoch"):
        assert [e.step for e in board.Scalars(f"epoch/{column}")] == [1, 2, 3], column
        np.testing.assert_allclose([e.value for e in board.Scalars(f"epoch/{column}")], metrics[column], rtol=1e-5)


# --- item 3: divergence --------------------------------------------------------------------
@pytest.mark.parametrize("lr", ["1e6", "1e30"])
def test_a_diverging_run_saves_nothing_non_finite_and_names_an_existing_checkpoint(smoke_cfg, lr):
    with pytest.raises(TrainingDiverged) as err:
        fit(smoke_cfg(f"run.name=div{lr}", f"optim.lr={lr}", "optim.epochs=3"))
    ckpt = Path(smoke_cfg().run.out_dir) / f"div{lr}" / "checkpoints"
    saved = sorted(ckpt.glob("*.pt"))
    assert all(finite(p) for p in saved)
    if (ckpt / "last.pt").is_file():
        assert f"the last good checkpoint is {ckpt / 'last.pt'}" in str(err.value)
    else:
        assert "no checkpoint was saved" in str(err.value) and "run.overwrite=true" in str(err.value)
        assert "last.pt" not in str(err.value)


def test_resume_after_divergence_uses_the_new_lr_and_notes_it(smoke_cfg, monkeypatch):
    original = train_module.train_one_epoch

    def stop_in_epoch_2(*args, **kwargs):
        if args[7] == 1:
            raise KeyboardInterrupt
        return original(*args, **kwargs)
    monkeypatch.setattr(train_module, "train_one_epoch", stop_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        fit(smoke_cfg("run.name=lr", "optim.epochs=3"))
    monkeypatch.setattr(train_module, "train_one_epoch", original)
    run = Path(smoke_cfg().run.out_dir) / "lr"
    with pytest.raises(TrainingDiverged, match=f"the last good checkpoint is {run / 'checkpoints' / 'last.pt'}"):
        fit(smoke_cfg("run.name=lr", "optim.epochs=3", "run.resume=true", "optim.lr=1e30"))
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 0
    assert all(finite(p) for p in (run / "checkpoints").glob("*.pt"))
    fit(smoke_cfg("run.name=lr", "optim.epochs=3", "run.resume=true", "optim.lr=2e-3"))
    lrs = pd.read_csv(run / "metrics.csv")["lr"].tolist()
    # smoke preset: AdamW 1.5e-3, cosine over 3 epochs: lr(e) = 0.5 (1 + cos(pi e / 3)) base = base, .75 base, .25 base
    assert lrs == pytest.approx([1.5e-3, 0.75 * 2e-3, 0.25 * 2e-3])
    text = (run / "config.yaml").read_text()
    assert yaml.safe_load(text)["optim"]["lr"] == 2e-3                  # what ran
    assert "# resumed after epoch 1: optim.lr: 0.0015 -> 1e+30" in text
    assert "# resumed after epoch 1: optim.lr: 1e+30 -> 0.002" in text


# --- item 4: resume with changed settings, concurrent processes, stale errors -----------------
def test_resume_refuses_a_change_the_checkpoint_is_made_of(smoke_cfg, monkeypatch):
    monkeypatch.setattr(train_module, "train_one_epoch", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        fit(smoke_cfg("run.name=fixed"))
    run = Path(smoke_cfg().run.out_dir) / "fixed"
    (run / "checkpoints").mkdir()
    save_atomic({"epoch": 0}, run / "checkpoints" / "last.pt")
    before = (run / "config.yaml").read_text()
    with pytest.raises(ValueError, match=r"cannot resume with a different model.hidden_size, model.num_layers "
                                         r".*run.overwrite=true"):
        fit(smoke_cfg("run.name=fixed", "run.resume=true", "model.hidden_size=16", "model.num_layers=1",
                      "run.threads=1"))
    assert (run / "config.yaml").read_text() == before


def test_a_second_process_on_a_locked_run_exits_with_one_line_and_touches_nothing(smoke_cfg, tmp_path):
    from attnet.cli import main
    run = Path(smoke_cfg().run.out_dir) / "busy"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("the winner's\n")
    with open(run / record.LOCK_NAME, "w") as holder:          # another open file: as another process would
        fcntl.flock(holder, fcntl.LOCK_EX)
        before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
        for extra in ([], ["--resume"], ["run.overwrite=true"]):
            with pytest.raises(SystemExit, match=r"^error: .*busy: another process is training this run"):
                main(["train", "--preset", "synthetic-smoke", f"data.root={smoke_cfg().data.root}",
                      f"run.out_dir={run.parent}", "run.name=busy", *extra])
            assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before


def test_temporary_files_are_unique_per_writer_and_never_left(tmp_path):
    target = tmp_path / "best.pt"
    with atomic_path(target) as a, atomic_path(target) as b:
        assert a != b and a.parent == b.parent == tmp_path
        torch.save({"w": torch.ones(1)}, a)
        torch.save({"w": torch.zeros(1)}, b)
    assert torch.equal(load(target)["w"], torch.ones(1))               # a (renamed last) wins, whole
    with pytest.raises(RuntimeError), atomic_path(target) as c:
        c.write_bytes(b"half")
        raise RuntimeError("killed mid-write")
    assert torch.equal(load(target)["w"], torch.ones(1)) and sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]


def test_a_failed_run_resumed_to_the_end_keeps_no_stale_error(smoke_cfg):
    from attnet.cli import main
    common = ["train", "--preset", "synthetic-smoke", f"data.root={smoke_cfg().data.root}",
              f"run.out_dir={smoke_cfg().run.out_dir}", "run.name=again", "optim.epochs=1"]
    with pytest.raises(SystemExit, match="exceeds the"):
        main([*common, "data.batch_size=1000"])
    run = Path(smoke_cfg().run.out_dir) / "again"
    assert load_runs(run.parent).set_index("run").loc["again", "status"] == "failed"
    main([*common, "--resume"])                               # the preset's batch size: it trains
    assert (run / "final.json").is_file() and not (run / "error.txt").exists()
    assert load_runs(run.parent).set_index("run").loc["again", "status"] == "done"
    assert "# resumed" not in (run / "config.yaml").read_text()   # nothing had trained: the config is just replaced
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["batch_size"] == 8


def test_a_run_that_failed_before_training_does_not_block_its_name(smoke_cfg, tmp_path):
    from attnet.cli import main
    from attnet.engine import record
    common = ["train", "--preset", "synthetic-smoke", f"data.root={smoke_cfg().data.root}",
              f"run.out_dir={smoke_cfg().run.out_dir}", "run.name=retry", "optim.epochs=1"]
    with pytest.raises(SystemExit, match="exceeds the"):
        main([*common, "data.batch_size=1000"])
    run = Path(smoke_cfg().run.out_dir) / "retry"
    assert sorted(p.name for p in run.iterdir()) == [".lock", "config.yaml", "error.txt"]
    assert record.has_run(run) and not record.has_progress(run)
    main(common)                                   # the same name again, without --resume or overwrite
    assert (run / "final.json").is_file() and not (run / "error.txt").exists()
    assert record.has_progress(run)
    (run / "final.json").unlink()                  # a checkpoint alone is progress too
    assert record.has_progress(run) and not record.has_progress(tmp_path / "none")


# --- item 5: every checkpoint failure is one line -------------------------------------------
class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_bad_checkpoints_are_refused_naming_the_file_and_never_run_code(tmp_path):
    good = tmp_path / "good.pt"
    torch.save({"model": {"w": torch.ones(2)}, "epoch": 1}, good)
    truncated, empty, evil = tmp_path / "truncated.pt", tmp_path / "empty.pt", tmp_path / "evil.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    empty.write_bytes(b"")
    torch.save({"model": _Payload(tmp_path / "pwned")}, evil)
    pickle.loads(pickle.dumps(_Payload(tmp_path / "proof")))          # the payload does run when unpickled
    assert (tmp_path / "proof").exists()
    for path, reason in ((truncated, "truncated or corrupt"), (empty, "empty checkpoint file"),
                         (evil, "not a plain checkpoint; attnet never unpickles code"),
                         (tmp_path / "none.pt", "checkpoint not found")):
        with pytest.raises(CheckpointError) as err:
            load(path)
        text = str(err.value)
        assert text.startswith(f"{path}: {reason}") and "\n" not in text and "weights_only" not in text
        assert "use best.pt, or pass run.overwrite=true" in text
    assert not (tmp_path / "pwned").exists()
    assert load(good)["epoch"] == 1


# --- item 1: skipped videos are left out of every metric ------------------------------------
def test_skipped_test_videos_are_counted_and_never_scored(smoke_cfg, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(smoke_cfg().data.root, data) if Path(smoke_cfg().data.root).is_dir() else None
    fit(smoke_cfg(f"data.root={data}", "run.name=gen", "optim.epochs=1"))   # makes the dataset when absent
    lines = (data / "test.txt").read_text().split("\n")
    bad = [data / line.split()[0] for line in lines[:3]]
    bad[0].unlink()                                           # missing
    bad[1].write_bytes(b"")                                   # empty
    bad[2].write_bytes(b"not a video")                        # corrupt
    capsys.readouterr()
    with pytest.warns(UserWarning, match="skipped bad video"):
        run = fit(smoke_cfg(f"data.root={data}", "run.name=skip", "optim.epochs=1", "data.on_bad_video=skip"))
    assert "over 5 videos, 3 unreadable skipped" in capsys.readouterr().out
    final = json.loads((run / "final.json").read_text())
    assert final["test"]["num_videos"] == 5 and final["test"]["skipped_videos"] == 3
    assert sorted(final["skipped_test_videos"]) == sorted(map(str, bad))
    assert sum(map(sum, final["test"]["confusion"])) == 5
    scores = pd.read_csv(run / "scores.csv.gz")
    assert not set(scores["video"]) & set(map(str, bad)) and len(scores) == 4 * 5
    assert load_runs(run.parent).set_index("run").loc["skip", "test.skipped_videos"] == 3
    # the oracle: the same checkpoint on a list of the 5 good videos alone
    (data / "good.txt").write_text("\n".join(lines[3:]))
    oracle = evaluate(smoke_cfg(f"data.root={data}", f"data.test_list={data / 'good.txt'}"),
                      run / "checkpoints" / "best.pt")
    assert {**oracle, "skipped_videos": 3} == final["test"]


# --- item 7: every list of a run is checked before the first step ------------------------------
def _lists(tmp_path, smoke_cfg, edit):
    """The smoke dataset as a list dataset without classes.txt, its lists edited by edit(subset, lines)."""
    source = Path(smoke_cfg().data.root)
    if not (source / "train.txt").is_file():
        fit(smoke_cfg("run.name=gen", "optim.epochs=1"))
    root = tmp_path / "lists"
    shutil.copytree(source / "videos", root / "videos")
    for name in ("train", "val", "test"):
        lines = (source / f"{name}.txt").read_text().split()
        lines = [f"{path} {label}" for path, label in zip(lines[::2], lines[1::2])]
        (root / f"{name}.txt").write_text("\n".join(edit(name, lines)) + "\n")
    return smoke_cfg("data.name=list", f"data.root={root}", "run.name=lists")


@pytest.mark.parametrize("edit, message", [
    (lambda n, ls: ls[:-1] + [ls[-1].rsplit(" ", 1)[0] + " 9"] if n == "train" else ls,
     r"train.txt: labels run to 9 but label\(s\) 4, 5, 6, 7, 8 have no training video"),
    (lambda n, ls: ls + [ls[-1].rsplit(" ", 1)[0] + " 6"] if n == "test" else ls,
     r"test.txt: its 7 classes differ from the 4 of .*train.txt"),
    (lambda n, ls: ls + ["no-label-here"] if n == "test" else ls, r"test.txt:9: expected 'relative/path label'"),
])
def test_bad_lists_fail_before_the_first_training_step(tmp_path, smoke_cfg, monkeypatch, edit, message):
    cfg = _lists(tmp_path, smoke_cfg, edit)
    monkeypatch.setattr(train_module, "train_one_epoch", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(DataError, match=message):
        fit(cfg)


def test_an_unlabelled_kinetics_test_csv_is_refused_before_training(tmp_path, smoke_cfg, monkeypatch):
    root = tmp_path / "k400"
    (root / "annotations").mkdir(parents=True)
    labelled = "label,youtube_id,time_start,time_end,split\nabseiling,aaa,0,10,train\nzumba,zzz,0,10,train\n"
    (root / "annotations" / "train.csv").write_text(labelled)
    (root / "annotations" / "validate.csv").write_text(labelled)
    (root / "annotations" / "test.csv").write_text("youtube_id,time_start,time_end,split\nttt,0,10,test\nuuu,0,10,test\n")
    for name in ("aaa", "zzz", "ttt", "uuu"):
        (root / f"{name}_000000_000010.mp4").write_bytes(b"")
    monkeypatch.setattr(train_module, "train_one_epoch", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(DataError, match=rf"^{root / 'annotations' / 'test.csv'}: 2 rows without a label; the test "
                                        r"subset is scored, so put a labelled CSV there \(e.g. a copy of validate.csv\)$"):
        fit(smoke_cfg("data.name=kinetics400", f"data.root={root}", "run.name=k400"))


def test_a_table_reads_a_finished_run_without_its_launch_a_process_about_to_train_with_it(smoke_cfg):
    """What a run was trained with is the experiment; the world size matters to the process that
    would resume it (its batch would split otherwise), not to a table reading the run afterwards."""
    recorded = smoke_cfg().to_dict() | {"launch": {"world_size": 2, "device_batch_size": 4}}
    asked = smoke_cfg()                                       # a table's config: launch not resolved
    assert asked.launch.device_batch_size is None
    assert record.config_changes(recorded, asked) == {}
    resolved = dataclasses.replace(asked, launch=LaunchConfig(1, 8))
    assert record.config_changes(recorded, resolved) == {"launch.world_size": (2, 1),
                                                         "launch.device_batch_size": (4, 8)}
    epochs = smoke_cfg("optim.epochs=3")
    assert record.config_changes(recorded, epochs) == {"optim.epochs": (recorded["optim"]["epochs"], 3)}
