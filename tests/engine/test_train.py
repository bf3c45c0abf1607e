"""fit / evaluate on the synthetic-smoke preset: repeatability, resume, divergence, transfer."""
import json
import math

import pandas as pd
import pytest
import torch
import yaml

from attnet.engine import RunExists, TrainingDiverged, evaluate, fit
from attnet.engine import train as train_module
from attnet.losses import GLKALoss
from attnet.results import load_runs


def weights(run_dir, name="last"):
    return torch.load(run_dir / "checkpoints" / f"{name}.pt", weights_only=True)["model"]


def test_same_seed_same_metrics_and_the_loss_decreases(smoke_cfg):
    a = fit(smoke_cfg("run.name=a", "optim.epochs=6"))
    b = fit(smoke_cfg("run.name=b", "optim.epochs=6"))
    ma, mb = pd.read_csv(a / "metrics.csv"), pd.read_csv(b / "metrics.csv")
    timing = ["seconds", "clips_per_s"]
    pd.testing.assert_frame_equal(ma.drop(columns=timing), mb.drop(columns=timing))
    assert json.loads((a / "final.json").read_text())["test"] == json.loads((b / "final.json").read_text())["test"]
    assert ma["loss"].iloc[-1] < ma["loss"].iloc[0]
    assert set(ma.columns) >= {"epoch", "lr", "loss", "loss_ce", "loss_ga_sa", "loss_ga_la", "train_top1",
                               "train_gp_top1", "val_top1", "val_sa_top1", "seconds", "clips_per_s"}
    scores = pd.read_csv(a / "scores.csv.gz")
    assert set(scores["stream"]) == {"fused", "gp", "sa", "la"} and len(scores) == 4 * 8
    runs = load_runs(a.parent)
    assert list(runs["run"]) == ["a", "b"] and set(runs["status"]) == {"done"}
    assert runs.loc[0, "model.streams"] == "gp+sa+la" and runs.loc[0, "test.top1"] == \
        json.loads((a / "final.json").read_text())["test"]["top1"]


def test_resume_after_interruption_gives_identical_weights(smoke_cfg, monkeypatch):
    whole = fit(smoke_cfg("run.name=whole", "optim.epochs=3"))
    original = train_module.train_one_epoch

    def interrupted(*args, **kwargs):
        if args[7] == 1:                      # epoch index 1: killed after epoch 1 was saved
            raise KeyboardInterrupt
        return original(*args, **kwargs)
    monkeypatch.setattr(train_module, "train_one_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fit(smoke_cfg("run.name=cut", "optim.epochs=3"))
    cut = whole.parent / "cut"
    assert torch.load(cut / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 0
    assert not (cut / "final.json").exists()
    monkeypatch.setattr(train_module, "train_one_epoch", original)
    with pytest.raises(RunExists, match="run.resume=true"):
        fit(smoke_cfg("run.name=cut", "optim.epochs=3"))
    fit(smoke_cfg("run.name=cut", "optim.epochs=3", "run.resume=true"))
    for key, value in weights(whole).items():
        assert torch.equal(value, weights(cut)[key]), key
    timing = ["seconds", "clips_per_s"]
    pd.testing.assert_frame_equal(pd.read_csv(whole / "metrics.csv").drop(columns=timing),
                                  pd.read_csv(cut / "metrics.csv").drop(columns=timing))


def test_nan_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(smoke_cfg, monkeypatch):
    calls = {"n": 0}
    forward = GLKALoss.forward

    def poisoned(self, out, target):
        calls["n"] += 1
        total, parts = forward(self, out, target)
        return (total * float("nan"), parts) if calls["n"] == 4 else (total, parts)   # 3 steps an epoch
    monkeypatch.setattr(GLKALoss, "forward", poisoned)
    with pytest.raises(TrainingDiverged, match=r"non-finite loss at epoch 2, step 1 \(ce=.*last\.pt"):
        fit(smoke_cfg("run.name=nan", "optim.epochs=3", "run.log_every=2"))
    assert calls["n"] == 5           # read at the log step after it (epoch 2, step 2), not at every step
    run = smoke_cfg().run.out_dir
    state = torch.load(f"{run}/nan/checkpoints/last.pt", weights_only=True)
    assert state["epoch"] == 0 and all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_transfer_replaces_heads_for_another_class_count(smoke_cfg, smoke_data, tmp_path):
    source = fit(smoke_cfg("run.name=source", "optim.epochs=1"))
    ckpt = source / "checkpoints" / "best.pt"
    three = [f"data.root={tmp_path / 'three'}", "data.synthetic={num_classes: 3, frames: 12, size: 64, "
             "videos_per_class: {train: 3, val: 1, test: 1}}", f"model.init_checkpoint={ckpt}", "optim.epochs=1"]
    target = fit(smoke_cfg("run.name=target", *three))
    before, after = weights(source, "best"), torch.load(target / "checkpoints" / "best.pt", weights_only=True)["model"]
    assert after["temporal.gp.fc.weight"].shape[0] == 3 and before["temporal.gp.fc.weight"].shape[0] == 4
    from attnet.engine.build import build_model
    model = build_model(smoke_cfg(*three), 3, torch.device("cpu"))
    assert torch.equal(model.state_dict()["backbone.0.weight"], before["backbone.0.weight"])
    assert not torch.equal(model.state_dict()["temporal.sa.fc.bias"][:3], before["temporal.sa.fc.bias"][:3])


def test_evaluate_a_checkpoint_matches_the_run(smoke_cfg):
    run = fit(smoke_cfg("run.name=ev", "optim.epochs=1"))
    metrics = evaluate(smoke_cfg("run.name=ev"), run / "checkpoints" / "best.pt", scores_path=run / "again.csv")
    final = json.loads((run / "final.json").read_text())["test"]
    assert metrics == final
    assert (run / "again.csv").is_file()


def _conv_dtypes():
    """The output dtypes of every Conv2d forward until handle.remove() (what autocast decides)."""
    seen = set()
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda module, args, out: seen.add(out.dtype) if isinstance(module, torch.nn.Conv2d) else None)
    return seen, handle


def _cut_after_first_epoch(monkeypatch):
    original = train_module.train_one_epoch

    def cut(*args, **kwargs):
        if args[7] == 1:
            raise KeyboardInterrupt
        return original(*args, **kwargs)
    monkeypatch.setattr(train_module, "train_one_epoch", cut)
    return original


# model.temporal=mean: the SRU runs its own kernels in the parameters' float32 and fails under
# autocast until the models keep it in float32; the convolutions and heads still autocast.
@pytest.mark.parametrize("amp, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)])
def test_amp_on_cpu_trains_in_that_dtype_and_records_it(smoke_cfg, amp, dtype, monkeypatch):
    from attnet import machine
    monkeypatch.setattr(machine, "_cpuinfo", lambda: ["model name : CPU X", "cpu family : 6", "model : 143", ""])
    seen, handle = _conv_dtypes()
    try:
        run = fit(smoke_cfg(f"run.name={amp}", "optim.epochs=1", "model.temporal=mean", f"optim.amp={amp}"))
    finally:
        handle.remove()
    assert seen == {dtype}                                   # training, validation and test all autocast
    final = json.loads((run / "final.json").read_text())
    assert final["precision"] == amp and final["cpu"] == "CPU X (family 6, model 143)"   # the CPU behind its digits
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    assert ("scaler" in state) == (amp == "fp16")           # only fp16 has a loss scaler
    if amp == "fp16":                                       # an enabled scaler (a disabled one saves {})
        scale = state["scaler"]["scale"]                    # 2^16, halved at each overflowing step
        assert scale <= 2.0 ** 16 and math.log2(scale).is_integer()
    assert all(v.dtype == torch.float32 for v in state["model"].values() if v.is_floating_point())


@pytest.mark.parametrize("first, then, precision", [
    pytest.param("bf16", "fp16", "fp16", marks=pytest.mark.slow),     # emulated bf16 on CPUs without its units
    ("fp16", "off", "fp32")])
def test_resume_under_another_amp(smoke_cfg, monkeypatch, first, then, precision):
    original = _cut_after_first_epoch(monkeypatch)
    common = ["run.name=switch", "optim.epochs=2", "model.temporal=mean"]
    with pytest.raises(KeyboardInterrupt):
        fit(smoke_cfg(*common, f"optim.amp={first}"))
    run = smoke_cfg().run.out_dir + "/switch"
    state = torch.load(f"{run}/checkpoints/last.pt", weights_only=True)
    assert state["epoch"] == 0 and ("scaler" in state) == (first == "fp16")
    monkeypatch.setattr(train_module, "train_one_epoch", original)
    fit(smoke_cfg(*common, f"optim.amp={then}", "run.resume=true"))
    final = json.loads(open(f"{run}/final.json").read())
    assert final["precision"] == precision
    assert list(pd.read_csv(f"{run}/metrics.csv")["epoch"]) == [1, 2]
    state = torch.load(f"{run}/checkpoints/last.pt", weights_only=True)
    assert state["epoch"] == 1 and ("scaler" in state) == (then == "fp16")


def test_final_json_names_how_the_tested_checkpoint_was_chosen():
    from attnet.config import load_config
    from attnet.engine.train import _summary
    assert _summary(load_config("ucf101"))["selection"] == "val"                      # held out of the training list
    assert _summary(load_config("hmdb51", ["data.select_on_test=true"]))["selection"] == "test"
    assert _summary(load_config("hmdb51", ["data.val_fraction=0"]))["selection"] == "last epoch"
    assert _summary(load_config("synthetic", ["data.val_fraction=0"]))["selection"] == "val"   # its own val.txt


def test_a_finished_run_is_reused_only_for_the_settings_it_was_trained_with(smoke_cfg, tmp_path, monkeypatch):
    """A preset that changes its epochs must not find its old runs passed off as new ones; where
    the data or the runs folder live, and how many threads trained it, do not make a run stale.
    optim.amp=auto is recorded as the precision it ran in; auto asked again on a machine that
    resolves it otherwise reuses the run, an explicit other precision does not."""
    from attnet.engine import runtime
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    run = fit(smoke_cfg("run.name=r", "optim.epochs=1", "optim.amp=auto"))
    final = (run / "final.json").read_text()
    assert yaml.safe_load((run / "config.yaml").read_text())["optim"]["amp"] == "off"
    facts = json.loads(final)
    assert facts["precision"] == "fp32" and (facts["world_size"], facts["device_batch_size"]) == (1, 8)
    assert {"torchcodec", "ffmpeg_major"} <= set(facts["versions"]) and "gpu" not in facts
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded.pop("launch") == {"world_size": 1, "device_batch_size": 8}
    (run / "config.yaml").write_text(yaml.safe_dump(recorded, sort_keys=False))   # recorded before launch was
    assert fit(smoke_cfg("run.name=r", "optim.epochs=1", "run.resume=true", "run.threads=1", "data.workers=0")) == run
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)      # a CPU with bfloat16 units: auto is bf16 here
    assert fit(smoke_cfg("run.name=r", "optim.epochs=1", "optim.amp=auto", "run.resume=true")) == run
    with pytest.raises(ValueError, match=r"other settings \(optim.amp: 'off' -> 'bf16'\)"):
        fit(smoke_cfg("run.name=r", "optim.epochs=1", "optim.amp=bf16", "run.resume=true"))
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    with pytest.raises(ValueError, match=r"config.yaml: this finished run was trained with other settings "
                                         r"\(optim.epochs: 1 -> 2\); retrain it with run.overwrite=true"):
        fit(smoke_cfg("run.name=r", "optim.epochs=2", "run.resume=true"))
    assert (run / "final.json").read_text() == final          # refused, not retrained
    fit(smoke_cfg("run.name=r", "optim.epochs=1", "run.resume=true"))     # the lock was released


def test_the_authors_frame_folders_train_through_the_hmdb51_frames_preset(tmp_path):
    """Their layout as shipped (0-based {}.jpg frames, lists under list/ with frame counts), no
    validation list: `attnet train --preset hmdb51-frames` needs only data.root (and CPU sizes)."""
    from attnet.cli import main
    from attnet.data import build_dataset
    from attnet.config import load_config
    from ..data.conftest import HMDB_CLIPS, authors_hmdb, decoded_index
    root = authors_hmdb(tmp_path / "Datasets", frames=12, size=64)
    sized = ["data.segments=4", "data.size=64", "data.resize=64", "data.num_clips=1", "data.batch_size=4",
             "data.workers=0", "data.val_fraction=0.25", "model.backbone=tiny", "model.pretrained=null",
             "model.hidden_size=16", "model.num_layers=1", "optim.epochs=1", "optim.amp=off", "run.device=cpu",
             "run.tensorboard=false", f"run.out_dir={tmp_path / 'runs'}", "run.name=frames"]
    main(["train", "--preset", "hmdb51-frames", f"data.root={root}", *sized])
    run = tmp_path / "runs" / "frames"
    final = json.loads((run / "final.json").read_text())
    assert final["config"]["selection"] == "val" and final["test"]["num_videos"] == 2
    assert "val_top1" in pd.read_csv(run / "metrics.csv").columns
    scores = pd.read_csv(run / "scores.csv.gz")
    assert {p.split("/")[-1] for p in scores["video"]} == {clips[-1] for clips in HMDB_CLIPS.values()}
    # frame k is k.jpg: the test offsets of 12 frames in 4 segments are the segment centres
    d = load_config("hmdb51-frames", [f"data.root={root}"]).data
    test = build_dataset(d.name, root, subset="test", segments=4, size=64, resize=64, normalize=False,
                         test_list=d.test_list, frame_template=d.frame_template, frame_start=d.frame_start)
    assert [decoded_index(f) for f in test[0][0]] == [1, 4, 7, 10]


def test_predict_batches_by_the_subsets_clips_and_gathers_stacked_tensors(smoke_cfg, monkeypatch):
    import importlib
    from attnet.engine import distributed, runtime
    from attnet.engine.build import build_datasets, build_model, dataset_root
    evaluate_module = importlib.import_module("attnet.engine.evaluate")     # the package exports the function
    cfg = smoke_cfg("data.eval_batch_size=null", "data.num_clips=2")       # batch_size 8
    info = runtime.from_config(cfg)
    data = build_datasets(cfg, ("val", "test"), dataset_root(cfg, info))
    model = build_model(cfg, 4, info.device)
    batches, sent = [], []
    loader = evaluate_module.build_loader
    monkeypatch.setattr(evaluate_module, "build_loader", lambda ds, b, **kw: batches.append(b) or loader(ds, b, **kw))
    gather = distributed.gather
    monkeypatch.setattr(distributed, "gather", lambda obj, info: sent.append(obj) or gather(obj, info))
    labels, scores, order = evaluate_module.predict(model, data["val"], cfg, info)
    evaluate_module.predict(model, data["test"], cfg, info)
    assert batches == [8, 4]                  # one clip per validation video: 8 videos a step; 2 per test video: 4
    (indices, sent_labels, sent_scores), = sent[0]      # one stacked tensor each, not a row per video
    assert indices.tolist() == order == list(range(8)) and torch.equal(sent_labels, labels)
    for stream, tensor in sent_scores.items():
        assert tensor.shape == (8, 4) and torch.equal(tensor, scores[stream])
        assert tensor.untyped_storage().nbytes() == tensor.numel() * tensor.element_size()   # owns its bytes
