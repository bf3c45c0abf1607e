"""Config -> datasets, model, optimizer: the pieces training and evaluation share."""
from __future__ import annotations

from pathlib import Path

import torch

from attnet.config import Config
from attnet.data import ClipDataset, build_dataset, synthetic
from attnet.data.datasets import has_validation
from attnet.models import GLKANet

from . import checkpoint, distributed
from .distributed import DistInfo


def dataset_root(cfg: Config, info: DistInfo) -> Path:
    """The data root; the synthetic dataset is generated there on first use (by rank 0)."""
    root = Path(cfg.data.root)
    if cfg.data.name == "synthetic":
        if info.is_main:
            synthetic.ensure(root, **cfg.data.synthetic)
        distributed.barrier(info)
    return root


def build_datasets(cfg: Config, subsets: tuple[str, ...], root: Path) -> dict[str, ClipDataset]:
    """The asked subsets; "val" is left out when the dataset has none (`has_validation`)."""
    d = cfg.data
    if not has_validation(d.name, d.val_fraction, d.select_on_test):
        subsets = tuple(s for s in subsets if s != "val")
    lists = {"train": d.train_list, "val": d.val_list, "test": d.test_list}
    return {
        subset: build_dataset(d.name, root, split=d.split, subset=subset, segments=d.segments,
                              num_clips=1 if subset == "val" else d.num_clips, size=d.size, resize=d.resize,
                              list_file=lists[subset], frame_template=d.frame_template, frame_start=d.frame_start,
                              three_crop=d.three_crop and subset == "test", hflip=d.hflip, cache=d.cache,
                              boxes="oracle" in cfg.model.streams, val_fraction=d.val_fraction,
                              select_on_test=d.select_on_test,
                              # val / test: predict leaves bad videos out; only training substitutes
                              on_bad_video=d.on_bad_video if subset == "train" else "error")
        for subset in subsets
    }


def build_model(cfg: Config, num_classes: int, device: torch.device, init: bool = True) -> GLKANet:
    """GLKANet from cfg.model on `device` (channels_last when asked); with `init`, the
    ImageNet backbone or the transfer checkpoint of model.init_checkpoint."""
    m = cfg.model
    model = GLKANet(num_classes, backbone=m.backbone, pretrained=m.pretrained if init else None,
                    streams=m.streams, fusion_layer=m.fusion_layer, temporal=m.temporal,
                    hidden_size=m.hidden_size, num_layers=m.num_layers, dropout=m.dropout,
                    score_fusion=m.score_fusion)
    if init and m.init_checkpoint:
        fresh = checkpoint.load_init_weights(model, m.init_checkpoint)
        print(f"initialised from {m.init_checkpoint}; freshly initialised: {', '.join(fresh) or 'nothing'}")
    memory_format = torch.channels_last if m.channels_last else torch.contiguous_format
    return model.to(device, memory_format=memory_format)


def build_optimizer(cfg: Config, model: torch.nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum (the authors' recipe) or AdamW (the CPU presets), from cfg.optim."""
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=o.lr, weight_decay=o.weight_decay)
