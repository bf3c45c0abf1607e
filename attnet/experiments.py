"""What notebooks 04 (attention) and 06 (transfer) compute, as functions, so that a notebook cell
is a call and a picture, and the computation is tested like the rest of the package.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch
import yaml

from attnet.config import Config, load_config
from attnet.data import ClipDataset, synthetic
from attnet.engine import checkpoint, fit, runtime
from attnet.engine.build import build_datasets, build_model, dataset_root
from attnet.localization import grad_cam, localization_scores
from attnet.models import GLKANet
from attnet.results import RETRAINED, load_scores, run_config, run_final
from attnet.viz import to_images


def run_overrides(results_dir: str, resume: bool = True, data_root: str | None = None,
                  epochs: int | None = None) -> list[str]:
    """The overrides every notebook passes: its run registry, resume or start afresh, the data root
    and the epochs (None: the preset's)."""
    out = [f"run.out_dir={results_dir}/runs", f"run.resume={resume}", f"run.overwrite={not resume}"]
    return out + ([f"data.root={data_root}"] if data_root else []) + ([f"optim.epochs={epochs}"] if epochs else [])


def notebook_param(name: str, value, kind: type):
    """A notebook parameter as `kind` (list or dict): `papermill -p` passes lists and mappings as
    strings, which are read as YAML (so JSON too); a bare string or number is a one-item list."""
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ValueError(f"parameter {name}: {value!r} is not a valid YAML / JSON {kind.__name__}") from None
    if kind is list and isinstance(value, (str, int, float)):
        value = [value]
    if not isinstance(value, kind):
        raise ValueError(f"parameter {name}: expected a {kind.__name__}, got {value!r}")
    return value


@dataclass
class TrainedRun:
    """A finished run's best model on `device`, in eval mode, with the test set it is scored on."""
    cfg: Config
    run_dir: Path
    model: GLKANet
    test: ClipDataset
    root: Path
    device: torch.device
    record: Path | None = None         # the run this one trained again, that run having kept no checkpoint

    def boxes_of(self) -> Callable | None:
        """record -> actor boxes [F, 4] on the synthetic dataset (the only one that has them), else None."""
        if self.cfg.data.name != "synthetic":
            return None
        return lambda record: synthetic.load_boxes(self.root, record.path.relative_to(self.root))

    def describe(self) -> str:
        """Which model this is; for a retrained one, how it compares with its record."""
        if self.record is None:
            return f"run {self.run_dir} on {self.device}"
        return (f"run {self.run_dir} on {self.device}: {self.record} kept no checkpoint, so its config was "
                f"trained again here; {retrain_agreement(self.record, self.run_dir)}")


BEST = Path("checkpoints") / "best.pt"


def trained_run(preset: str, results_dir: str = "results/smoke", resume: bool = True, data_root: str | None = None,
                run_name: str | None = None, device: str = "auto", epochs: int | None = None) -> TrainedRun:
    """The preset's run (the full model, seed 0, unless `run_name` names another), trained first
    (for `epochs`, else the preset's) if absent, its best checkpoint loaded through the engine's
    loader onto `device`. A named run that has finished is shown as it was trained, whatever the
    preset says now. A finished run that kept no checkpoint (results/ commits none) is trained
    again beside its record, which stays as it is (see `retrained`)."""
    named = Path(results_dir) / "runs" / run_name if run_name else None
    if named is not None and (named / "final.json").is_file():
        run_dir = named
    else:
        overrides = run_overrides(results_dir, resume, data_root, epochs) + [f"run.device={device}"]
        run_dir = fit(load_config(preset, overrides + ([f"run.name={run_name}"] if run_name else [])))
    if (run_dir / BEST).is_file():
        return finished_run(run_dir, device)
    return replace(finished_run(retrained(run_dir, results_dir, data_root, device), device), record=run_dir)


def retrained(run_dir: Path, results_dir: str, data_root: str | None = None, device: str = "auto") -> Path:
    """The finished run `run_dir`, which kept no checkpoint, trained again from its config.yaml in
    <results_dir>/retrained/<its name>: continued there if stopped, started again if it too lost its
    checkpoint. The recorded mixed precision is kept where this machine runs it natively; elsewhere
    (bf16 on a CPU without bfloat16 units: emulated, 10-50x slower) optim.amp=auto chooses."""
    cfg = run_config(run_dir)
    cfg.run.name, cfg.run.out_dir, cfg.run.device = run_dir.name, f"{results_dir}/{RETRAINED}", device
    cfg.data.root = data_root or cfg.data.root
    if cfg.optim.amp != "off" and runtime.native_amp(runtime.resolve_device(device)) != cfg.optim.amp:
        cfg.optim.amp = "auto"
    again = Path(cfg.run.out_dir) / cfg.run.name
    cfg.run.overwrite = (again / "final.json").is_file() and not (again / BEST).is_file()
    cfg.run.resume = not cfg.run.overwrite
    return fit(cfg)


def retrain_agreement(record: Path, again: Path) -> str:
    """A retrained run against its record: precision and CPU, test top-1, the test videos whose fused
    prediction agrees, and whether the per-video scores repeat digit for digit."""
    finals = [run_final(run) for run in (record, again)]
    said = [f"{f['precision']} on {f.get('cpu') or f['device']}, test top-1 {f['test']['top1']:.1f} %" for f in finals]
    fused = [s[s["stream"] == "fused"].set_index("video").sort_index() for s in map(load_scores, (record, again))]
    predicted = [f.filter(regex=r"^s\d+$").to_numpy().argmax(1) for f in fused]
    agree = int((predicted[0] == predicted[1]).sum())
    return (f"{said[1]} (the record: {said[0]}); the fused prediction agrees on {agree} of {len(predicted[0])} "
            f"test videos and the scores {'repeat' if fused[0].equals(fused[1]) else 'do not repeat'} digit for digit")


def finished_run(run_dir: str | Path, device: str = "auto") -> TrainedRun:
    """A finished run's best checkpoint in the model its config.yaml records (whatever preset,
    ablation or backbone made it), loaded through the engine's loader onto `device`."""
    run_dir = Path(run_dir)
    cfg = run_config(run_dir)
    cfg.run.device, cfg.run.threads = device, None      # where to run it now; torch's own thread count
    rt = runtime.from_config(cfg)                 # the device (and process group) training used
    root = dataset_root(cfg, rt)
    test = build_datasets(cfg, ("test",), root)["test"]
    model = build_model(cfg, len(test.classes), rt.device, init=False).eval()
    model.load_state_dict(checkpoint.load(run_dir / BEST, fix=(
        "this finished run kept no checkpoint (the committed results/ hold none); retrain it with "
        "run.overwrite=true (attnet reproduce --fresh)"))["model"])
    return TrainedRun(cfg, run_dir, model, test, root, rt.device)


@dataclass
class VideoAttention:
    images: np.ndarray                 # uint8 [T, H, W, 3], the sampled frames of the first test clip
    maps: dict[str, torch.Tensor]      # stream (and "gradcam") -> [T, h, w]
    boxes: np.ndarray | None           # actor boxes of those frames [T, 4] (synthetic only)
    title: str


@torch.no_grad()
def video_attention(run: TrainedRun, index: int) -> VideoAttention:
    """Test video `index` through the model: its frames, SA / LA maps, the Grad-CAM of its fused
    prediction, actor boxes, and a title naming the true and the predicted class."""
    clip, label = run.test[index]
    clip = clip if clip.dim() == 4 else clip[0]
    out = run.model(clip[None].to(run.device))
    record = run.test.records[index]
    boxes_of = run.boxes_of()
    boxes = boxes_of(record)[run.test.frame_indices(index)[0].numpy()] if boxes_of else None
    predicted = run.test.classes[out.logits.argmax(1).item()]
    maps = {s: a[0].cpu() for s, a in out.attention.items()}
    maps["gradcam"] = grad_cam(run.model, clip.to(run.device)).cpu()
    return VideoAttention(to_images(clip), maps, boxes,
                          f"{record.path.name}: true {run.test.classes[label]}, predicted {predicted}")


def oracle_model(run: TrainedRun) -> GLKANet:
    """The oracle stream beside GP with `run`'s backbone: its weights are the actor box's coverage
    of each map cell and have no parameters, so untrained it already gives the ceiling's maps."""
    cfg = run.cfg.model
    return GLKANet(len(run.test.classes), backbone=cfg.backbone, streams=("gp", "oracle"),
                   hidden_size=cfg.hidden_size, num_layers=1).to(run.device)


def localization_summary(run: TrainedRun, max_videos: int | None = None) -> pd.DataFrame:
    """Per stream of the run and its Grad-CAM, between the oracle (ceiling) and uniform attention
    (floor, what GP does): frames scored, mean mass inside the actor box (%) and pointing-game accuracy (%)."""
    scores = localization_scores(run.model, run.test, run.boxes_of(), max_videos=max_videos, gradcam=True)
    oracle = localization_scores(oracle_model(run), run.test, run.boxes_of(), max_videos=max_videos)
    scores = pd.concat([oracle[oracle["stream"] == "oracle"], scores])
    summary = scores.groupby("stream", sort=False).agg(frames=("mass", "size"), mass_in_box=("mass", "mean"),
                                                       pointing_accuracy=("hit", "mean")).reset_index()
    summary["mass_in_box"] = (100 * summary["mass_in_box"]).round(1)
    summary["pointing_accuracy"] = (100 * summary["pointing_accuracy"]).round(1)
    return summary


@dataclass
class Transfer:
    table: pd.DataFrame                # one row per start ("fine-tuned", "from scratch"): test top-1 fused and per stream
    init_checkpoint: str               # what the fine-tuned run started from
    target_name: str                   # the target's preset (names the runs and the table)
    runs: dict[str, Path]              # start -> its run directory


def stand_in_target(preset: str) -> list[str]:
    """Overrides making a second synthetic dataset the transfer target: 6 of the classes, a new
    generator seed, a third of the training videos."""
    base = load_config(preset)
    spec = dict(base.data.synthetic)
    spec.update(num_classes=min(6, spec.get("num_classes", 8)), seed=1,
                videos_per_class={"train": max(2, spec.get("videos_per_class", {}).get("train", 30) // 3),
                                  "val": 4, "test": 8})
    return [f"data.root={base.data.root}-target", f"data.synthetic={json.dumps(spec)}"]


def transfer_experiment(preset: str, results_dir: str = "results/smoke", resume: bool = True,
                        data_root: str | None = None, target_preset: str | None = None,
                        target_root: str | None = None, init_checkpoint: str | None = None,
                        epochs: int | None = None) -> Transfer:
    """Fine-tune from `init_checkpoint` (heads replaced) against training from scratch on the
    target, each for `epochs` (else the target preset's). Without a checkpoint the preset's full
    model (seed 0, trained for `epochs` if absent) is the pre-trained model; without a target
    preset the target is a synthetic stand-in (synthetic presets) or the preset itself (a real
    dataset, e.g. fine-tuning the authors' Kinetics model)."""
    common = run_overrides(results_dir, resume, epochs=epochs)
    if init_checkpoint is None:
        source = load_config(preset, run_overrides(results_dir, resume, data_root, epochs))
        init_checkpoint = str(fit(source) / BEST)
    if target_preset is None and load_config(preset).data.name == "synthetic":
        target, target_name = stand_in_target(preset), preset
    else:                   # a real dataset: the target preset, or the preset itself on its own data
        target_name = target_preset or preset
        root = target_root or (data_root if target_preset is None else None)
        target = [f"data.root={root}"] if root else []
    rows, runs = [], {}
    for label, start in (("fine-tuned", f"model.init_checkpoint={init_checkpoint}"),
                         ("from scratch", "model.init_checkpoint=null")):
        name = f"run.name={target_name}_transfer_{label.replace(' ', '-')}"
        run_dir = runs[label] = fit(load_config(target_preset or preset, common + target + [start, name]))
        test = run_final(run_dir)["test"]
        rows.append({"start": label, "top-1": round(test["top1"], 1),
                     **{s.upper(): round(test[f"{s}_top1"], 1) for s in ("gp", "sa", "la") if f"{s}_top1" in test}})
    return Transfer(pd.DataFrame(rows), init_checkpoint, target_name, runs)
