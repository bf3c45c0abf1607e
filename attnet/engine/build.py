"""Config -> datasets, model, optimizer: the pieces training and evaluation share."""
from __future__ import annotations

from pathlib import Path

import torch

from attnet.config import Config
from attnet.data import ClipDataset, DataError, build_dataset, lists, synthetic
from attnet.data.datasets import validation
from attnet.data.lists import kinetics_csv
from attnet.models import GLKANet
from attnet.optim import OPTIMIZERS, SCHEDULES

from . import checkpoint, distributed
from .distributed import DistInfo


def dataset_root(cfg: Config, info: DistInfo) -> Path:
    """The data root; the synthetic dataset is generated there on first use (by rank 0, its
    error raised on every rank)."""
    root = Path(cfg.data.root)
    if cfg.data.name == "synthetic":
        distributed.on_main(lambda: synthetic.ensure(root, **cfg.data.synthetic), info)
    return root


def build_datasets(cfg: Config, subsets: tuple[str, ...], root: Path) -> dict[str, ClipDataset]:
    """The asked subsets; "val" is left out when the dataset has none (`validation`)."""
    d = cfg.data
    if validation(d.name, root, d.val_fraction, d.select_on_test, d.val_list) == "none":
        subsets = tuple(s for s in subsets if s != "val")
    return {
        subset: build_dataset(d.name, root, split=d.split, subset=subset, segments=d.segments,
                              num_clips=1 if subset == "val" else d.num_clips, size=d.size, resize=d.resize,
                              train_list=d.train_list, val_list=d.val_list, test_list=d.test_list,
                              frame_template=d.frame_template, frame_start=d.frame_start,
                              three_crop=d.three_crop and subset == "test", hflip=d.hflip, cache=d.cache,
                              boxes="oracle" in cfg.model.streams, val_fraction=d.val_fraction,
                              select_on_test=d.select_on_test,
                              # val / test: predict leaves bad videos out; only training substitutes
                              on_bad_video=d.on_bad_video if subset == "train" else "error")
        for subset in subsets
    }


def model_args(cfg: Config) -> dict:
    """GLKANet's keyword arguments (all but num_classes) from cfg.model: what training, export and
    the torch.hub presets build."""
    m = cfg.model
    return dict(backbone=m.backbone, pretrained=m.pretrained, streams=m.streams, fusion_layer=m.fusion_layer,
                temporal=m.temporal, hidden_size=m.hidden_size, num_layers=m.num_layers, dropout=m.dropout,
                score_fusion=m.score_fusion)


def build_model(cfg: Config, num_classes: int, device: torch.device, init: bool = True) -> GLKANet:
    """GLKANet from cfg.model on `device` (channels_last when asked); with `init`, the
    ImageNet backbone or the transfer checkpoint of model.init_checkpoint."""
    m = cfg.model
    model = GLKANet(num_classes, **model_args(cfg) | ({} if init else {"pretrained": None}))
    if init and m.init_checkpoint:
        fresh = checkpoint.load_init_weights(model, m.init_checkpoint)
        print(f"initialised from {m.init_checkpoint}; freshly initialised: {', '.join(fresh) or 'nothing'}")
    memory_format = torch.channels_last if m.channels_last else torch.contiguous_format
    return model.to(device, memory_format=memory_format)


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    """optim.name's optimizer (OPTIMIZERS) over the model's parameters."""
    return OPTIMIZERS.get(cfg.optim.name)(model.parameters(), cfg.optim)


def build_scheduler(cfg: Config, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    """optim.schedule's per-epoch learning-rate factor (SCHEDULES), stepped once an epoch."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, SCHEDULES.get(cfg.optim.schedule)(cfg.optim.epochs))


def list_source(cfg: Config, root: Path, subset: str) -> Path:
    """The file a subset's videos and labels are read from (the root for official layouts)."""
    d = cfg.data
    if d.name in ("list", "synthetic"):
        given = {"train": d.train_list, "val": d.val_list, "test": d.test_list}[subset]
        return lists.list_path(given, root, d.split) or root / f"{subset}.txt"
    if d.name.startswith("kinetics"):
        return kinetics_csv(root, subset)
    return root


def check_labelled(cfg: Config, root: Path, subset: str, dataset: ClipDataset) -> None:
    """Scores need labels: rows without one (Kinetics' official test.csv has none) are refused
    before any work, not met by the metrics after the last epoch."""
    unlabelled = sum(r.label < 0 for r in dataset.records)
    if unlabelled:
        raise DataError(f"{list_source(cfg, root, subset)}: {unlabelled} rows without a label; the {subset} subset is "
                        "scored, so put a labelled CSV there (e.g. a copy of validate.csv)")


def check_lists(cfg: Config, root: Path, data: dict[str, ClipDataset]) -> dict[str, ClipDataset]:
    """Before the first step: every list of the run (train, val, test) reads, and they agree on
    the classes; with classes inferred from labels (no classes.txt), every class has training
    videos. Returns data with "test" added."""
    data = {**data, **build_datasets(cfg, tuple(s for s in ("train", "val", "test") if s not in data), root)}
    classes = data["train"].classes
    train_list = list_source(cfg, root, "train")
    for subset, dataset in data.items():
        inferred = dataset.classes == [str(i) for i in range(len(dataset.classes))]   # no classes.txt
        same = classes[: len(dataset.classes)] == dataset.classes if inferred else dataset.classes == classes
        check_labelled(cfg, root, subset, dataset)
        if not same or any(r.label >= len(classes) for r in dataset.records):
            raise DataError(f"{list_source(cfg, root, subset)}: its {len(dataset.classes)} classes differ from the "
                            f"{len(classes)} of {train_list}; give every list the same classes.txt")
    if cfg.data.name in ("list", "synthetic") and not (train_list.parent / "classes.txt").is_file():
        present = {r.label for r in data["train"].records}
        empty = [c for i, c in enumerate(classes) if i not in present]
        if empty:
            raise DataError(f"{train_list}: labels run to {len(classes) - 1} but label(s) {', '.join(empty[:5])} have "
                            "no training video; fix the labels or add a classes.txt beside the list naming every class")
    return data
