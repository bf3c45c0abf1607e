"""Multi-clip evaluation: per-video scores of every stream, gathered across processes."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import Dataset

from attnet.config import Config
from attnet.data import build_loader

from . import checkpoint, distributed
from .build import autocast, build_datasets, build_model, dataset_root
from .distributed import DistInfo
from .metrics import summarize
from .progress import Progress


class _Indexed(Dataset):
    """(clip, label[, boxes], index): the index lets gathered predictions drop the sampler's padding."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        return (*self.dataset[i], i)


@torch.no_grad()
def predict(model: torch.nn.Module, dataset: Dataset, cfg: Config, info: DistInfo,
            desc: str = "eval") -> tuple[torch.Tensor, dict[str, torch.Tensor], list[int]]:
    """(labels [N], scores {"fused"|stream: [N, K]} averaged over clips, dataset indices),
    over the whole dataset whatever the number of processes."""
    batch = cfg.data.eval_batch_size or max(1, cfg.data.batch_size // max(1, cfg.data.num_clips))
    loader = build_loader(_Indexed(dataset), batch, train=False, workers=cfg.data.workers,
                          distributed=info.enabled, drop_last=False)
    model.eval()
    rows: list[tuple[int, int, dict[str, torch.Tensor]]] = []
    progress = Progress(len(loader), desc, cfg.run.log_every, enabled=info.is_main)
    for clips, labels, *boxes, indices in loader:     # boxes: only for the oracle stream
        clips = clips.to(info.device, non_blocking=True)
        multi = clips.dim() == 6                      # [B, clips, T, 3, H, W]
        b, n = clips.shape[0], clips.shape[1] if multi else 1
        boxes = [bx.to(info.device, non_blocking=True).flatten(0, int(multi)) for bx in boxes]
        with autocast(cfg, info.device):
            out = model(clips.flatten(0, 1) if multi else clips, *boxes)
        scores = {"fused": out.logits, **out.stream_logits}
        scores = {k: v.float().view(b, n, -1).mean(1).cpu() for k, v in scores.items()}
        for j in range(b):
            rows.append((int(indices[j]), int(labels[j]), {k: v[j] for k, v in scores.items()}))
        progress.update(b)
    progress.close()
    merged = {}
    for part in distributed.gather(rows, info):
        for index, label, s in part:
            merged[index] = (label, s)                # padding repeats an index: kept once
    order = sorted(merged)
    labels = torch.tensor([merged[i][0] for i in order])
    keys = merged[order[0]][1].keys()
    return labels, {k: torch.stack([merged[i][1][k] for i in order]) for k in keys}, order


def scores_frame(dataset, labels: torch.Tensor, scores: dict[str, torch.Tensor], order: list[int]) -> pd.DataFrame:
    """One row per (video, stream): raw clip-averaged logits s0..s{K-1}, for score fusions in pandas."""
    frames = []
    for stream, s in scores.items():
        df = pd.DataFrame(s.numpy(), columns=[f"s{k}" for k in range(s.shape[1])])
        df.insert(0, "stream", stream)
        df.insert(0, "label", labels.numpy())
        df.insert(0, "video", [str(dataset.records[i].path) for i in order])
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def evaluate(cfg: Config, checkpoint_path: str | Path, subset: str = "test",
             scores_path: str | Path | None = None) -> dict:
    """Test a checkpoint: top-1 / top-5 (fused and per stream), mean class accuracy, confusion.
    Writes per-video scores to `scores_path` (csv or csv.gz) when given, from rank 0."""
    info = distributed.setup(cfg.run.device, cfg.run.threads)
    dataset = build_datasets(cfg, (subset,), dataset_root(cfg, info))[subset]
    model = build_model(cfg, len(dataset.classes), info.device, init=False)
    state = checkpoint.load(Path(checkpoint_path))
    model.load_state_dict(state["model"] if "model" in state else state)
    labels, scores, order = predict(model, dataset, cfg, info, desc=subset)
    metrics = summarize(scores, labels, len(dataset.classes))
    if scores_path is not None and info.is_main:
        scores_frame(dataset, labels, scores, order).to_csv(scores_path, index=False, float_format="%.6g")
    return metrics
