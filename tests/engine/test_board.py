"""TensorBoard events of a run equal its record: per step, per epoch (metrics.csv value for
value), the attention maps of the epoch's weights, and once each across a kill and resume."""
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from attnet.engine import fit, record
from attnet.engine import train as train_module
from attnet.engine.build import build_datasets, build_model, dataset_root
from attnet.engine.runtime import from_config
from attnet.losses import GLKALoss
from attnet.viz import darken, smooth_maps, to_images

# synthetic-smoke: 24 training videos in batches of 8, 3 steps an epoch; logged at steps 2 and 3
COMMON = ["optim.epochs=2", "model.temporal=mean", "run.log_every=2"]
LOGGED = [2, 3, 5, 6]


def events(run, folder):
    acc = EventAccumulator(str(run / "tensorboard" / folder), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def scalars(acc, tag):
    return [e.step for e in acc.Scalars(tag)], [e.value for e in acc.Scalars(tag)]


def assert_epochs_are_the_record(run):
    """epoch/<column> holds each epoch once, at its number, equal to metrics.csv (written to 6
    digits) and to the float32 of the checkpoint's rows (the record metrics.csv is written from)."""
    metrics = pd.read_csv(run / "metrics.csv")
    rows = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["rows"]
    acc = events(run, "epochs")
    columns = [c for c in metrics.columns if c != "epoch"]
    assert sorted(acc.Tags()["scalars"]) == sorted(f"epoch/{c}" for c in columns)
    for column in columns:
        steps, values = scalars(acc, f"epoch/{column}")
        assert steps == list(metrics["epoch"]), column
        np.testing.assert_allclose(values, metrics[column], rtol=1e-5, err_msg=column)
        assert values == [np.float32(row[column]) for row in rows], column
    for stream in ("sa", "la"):
        assert [e.step for e in acc.Images(f"attention/{stream}")] == list(metrics["epoch"])


def test_events_are_the_run_record(smoke_cfg, monkeypatch):
    losses = []                                   # every training step's loss and parts, in order
    forward = GLKALoss.forward

    def recorded(self, out, target):
        total, parts = forward(self, out, target)
        losses.append({"loss": total.item()} | {f"loss_{k}": v.item() for k, v in parts.items()})
        return total, parts
    monkeypatch.setattr(GLKALoss, "forward", recorded)
    cfg = smoke_cfg("run.name=tb", *COMMON)
    run = fit(cfg)
    assert_epochs_are_the_record(run)

    acc = events(run, "steps")
    rows = torch.load(run / "checkpoints" / "last.pt", weights_only=True)["rows"]
    assert sorted(acc.Tags()["scalars"]) == sorted(f"step/{k}" for k in [*losses[0], "lr", "clips_per_s"])
    for name in losses[0]:
        steps, values = scalars(acc, f"step/{name}")
        assert steps == LOGGED and values == [np.float32(losses[s - 1][name]) for s in LOGGED], name
    assert scalars(acc, "step/lr") == (LOGGED, [np.float32(row["lr"]) for row in rows for _ in range(2)])
    steps, rates = scalars(acc, "step/clips_per_s")
    assert steps == LOGGED and all(r > 0 for r in rates)

    # the last image is the maps of the last epoch's weights over the first two validation videos
    info = from_config(cfg)
    val = build_datasets(cfg, ("val",), dataset_root(cfg, info))["val"]
    model = build_model(cfg, len(val.classes), info.device, init=False).eval()
    model.load_state_dict(torch.load(run / "checkpoints" / "last.pt", weights_only=True)["model"])   # epoch 2
    clips = torch.stack([val[0][0], val[1][0]])
    with torch.no_grad(), info.autocast():
        maps = model(clips).attention
    images = events(run, "epochs")
    for stream in ("sa", "la"):
        drawn = np.asarray(Image.open(io.BytesIO(images.Images(f"attention/{stream}")[-1].encoded_image_string)))
        expected = np.concatenate([np.concatenate(list(darken(to_images(c), smooth_maps(m, (64, 64), blur=False))), axis=1)
                                   for c, m in zip(clips, maps[stream])])
        assert drawn.shape == expected.shape == (2 * 64, 4 * 64, 3)
        assert np.abs(drawn.astype(int) - expected).max() <= 1, stream


def test_a_resumed_run_purges_what_the_killed_one_wrote_after_its_checkpoint(smoke_cfg, monkeypatch):
    """Killed after epoch 2's events were flushed, before its last.pt: the resumed run trains
    epoch 2 again, and its events replace the orphaned ones instead of adding to them."""
    save = train_module.save_atomic

    def killed(state, path):
        if path.name == "last.pt" and state["epoch"] == 1:
            raise KeyboardInterrupt
        save(state, path)
    monkeypatch.setattr(train_module, "save_atomic", killed)
    with pytest.raises(KeyboardInterrupt):
        fit(smoke_cfg("run.name=cut", *COMMON))
    cut = Path(smoke_cfg().run.out_dir) / "cut"
    assert scalars(events(cut, "steps"), "step/loss")[0] == LOGGED    # epoch 2's events are on disk
    assert scalars(events(cut, "epochs"), "epoch/loss")[0] == [1, 2]
    monkeypatch.setattr(train_module, "save_atomic", save)
    run = fit(smoke_cfg("run.name=cut", *COMMON, "run.resume=true"))
    assert len(list((run / "tensorboard" / "steps").glob("events.out.tfevents.*"))) == 2
    assert_epochs_are_the_record(run)
    acc = events(run, "steps")
    for tag in acc.Tags()["scalars"]:
        assert scalars(acc, tag)[0] == LOGGED, tag


def test_off_writes_nothing_and_changes_no_number(smoke_cfg):
    on = fit(smoke_cfg("run.name=on", "optim.epochs=1", "model.temporal=mean", "run.log_every=1"))
    off = fit(smoke_cfg("run.name=off", "optim.epochs=1", "model.temporal=mean", "run.log_every=1",
                        "run.tensorboard=false"))
    assert list(on.rglob("events.out.tfevents.*")) and not list(off.rglob("*tfevents*"))
    assert not (off / "tensorboard").exists()
    timing = ["seconds", "clips_per_s"]
    pd.testing.assert_frame_equal(pd.read_csv(on / "metrics.csv").drop(columns=timing),
                                  pd.read_csv(off / "metrics.csv").drop(columns=timing))
    weights = [torch.load(r / "checkpoints" / "last.pt", weights_only=True)["model"] for r in (on, off)]
    assert all(torch.equal(v, weights[1][k]) for k, v in weights[0].items())


def test_the_switch_is_no_change_of_the_experiment(smoke_cfg):
    """A run recorded before run.tensorboard existed, or with it flipped, resumes and is reused as is."""
    cfg = smoke_cfg()
    before = cfg.to_dict()
    del before["run"]["tensorboard"]
    assert record.config_changes(before, cfg) == {}
    assert record.config_changes(smoke_cfg("run.tensorboard=false").to_dict(), cfg) == {}
