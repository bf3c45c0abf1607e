"""Multi-clip evaluation: per-video scores of every stream, gathered across processes."""
from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import Dataset

from attnet.config import Config
from attnet.data import DataError, build_loader, to_device
from attnet.data.transforms import collate
from attnet.files import write_csv

from . import checkpoint, distributed, runtime
from .build import build_datasets, build_model, check_labelled, dataset_root
from .metrics import summarize
from .progress import Progress


class _Indexed(Dataset):
    """(clip, label[, boxes], index): the index lets gathered predictions drop the sampler's padding.
    With `skip`, an unreadable video gives clip None (dropped by `_collate`) instead of another
    video's clip: evaluation scores only the videos it read."""

    def __init__(self, dataset: Dataset, skip: bool = False) -> None:
        self.dataset, self.skip = dataset, skip

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int, uint8: bool = False):
        try:
            item = self.dataset.uint8_item(i) if uint8 else self.dataset[i]
        except DataError as err:
            if not self.skip:
                raise
            warnings.warn(f"skipped bad video (left out of the metrics): {err}", stacklevel=2)
            return None, -1, i
        return (*item, i)

    def uint8_item(self, i: int):
        """What build_loader fetches from a ClipDataset: its uint8 item, with the index."""
        return self.__getitem__(i, uint8=True)


def _collate(items):
    """(clips, labels, indices) of the videos read, and the indices of those skipped."""
    read = [item for item in items if item[0] is not None]
    return (collate(read) if read else None), [item[-1] for item in items if item[0] is None]


@torch.no_grad()
def predict(model: torch.nn.Module, dataset: Dataset, cfg: Config, info: runtime.Runtime,
            desc: str = "eval") -> tuple[torch.Tensor, dict[str, torch.Tensor], list[int]]:
    """(labels [N], scores {"fused"|stream: [N, K]} averaged over clips, dataset indices),
    over the whole dataset whatever the number of processes, under the runtime's autocast. With
    data.on_bad_video=skip an unreadable video is left out: the indices missing from the returned ones
    were skipped."""
    if getattr(dataset, "on_bad_video", "error") != "error":
        raise ValueError("predict needs a dataset built with on_bad_video='error' (build_datasets does this for "
                         "val and test): it leaves bad videos out itself rather than scoring a substitute")
    # the training batch per process, in videos of this subset's clips (one for validation)
    per_video = getattr(dataset, "num_clips", cfg.data.num_clips)
    batch = cfg.data.eval_batch_size or max(1, cfg.data.batch_size // info.world_size // per_video)
    loader = build_loader(_Indexed(dataset, skip=cfg.data.on_bad_video == "skip"), batch, train=False,
                          workers=cfg.data.workers, distributed=info.enabled, drop_last=False, collate_fn=_collate)
    model.eval()
    parts: list[tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]] = []   # per batch: indices, labels, scores
    progress = Progress(len(loader), desc, cfg.run.log_every, enabled=info.is_main)
    for batch_read, _ in loader:
        if batch_read is None:                        # every video of the batch was skipped
            continue
        clips, labels, *boxes, indices = batch_read   # boxes: only for the oracle stream
        clips = to_device(clips, info.device)
        multi = clips.dim() == 6                      # [B, clips, T, 3, H, W]
        b, n = clips.shape[0], clips.shape[1] if multi else 1
        boxes = [bx.to(info.device, non_blocking=True).flatten(0, int(multi)) for bx in boxes]
        with info.autocast():
            out = model(clips.flatten(0, 1) if multi else clips, *boxes)
        scores = {"fused": out.logits, **out.stream_logits}
        parts.append((indices, labels, {k: v.float().view(b, n, -1).mean(1).cpu() for k, v in scores.items()}))
        progress.update(b)
    progress.close()
    # one stacked tensor per stream and rank is gathered (not a view of a batch per video)
    mine = [(torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts]),
             {k: torch.cat([p[2][k] for p in parts]) for k in parts[0][2]})] if parts else []
    gathered = [part for rank in distributed.gather(mine, info) for part in rank]
    if not gathered:
        raise DataError(f"{desc}: every one of the {len(dataset)} videos was unreadable and skipped; "
                        "run `attnet data check` on the dataset")
    indices = torch.cat([part[0] for part in gathered])
    where = {index: j for j, index in enumerate(indices.tolist())}    # padding repeats an index: kept once
    order = sorted(where)
    rows = torch.tensor([where[i] for i in order])
    labels = torch.cat([part[1] for part in gathered])[rows]
    return labels, {k: torch.cat([part[2][k] for part in gathered])[rows] for k in gathered[0][2]}, order


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
    info = runtime.from_config(cfg)
    # under torchrun / srun an error on one rank (a bad video, a checkpoint it cannot read) ends every rank
    with distributed.fail_together(info, lambda text: print(text, file=sys.stderr, end="", flush=True)):
        root = dataset_root(cfg, info)
        dataset = build_datasets(cfg, (subset,), root)[subset]
        check_labelled(cfg, root, subset, dataset)
        model = build_model(cfg, len(dataset.classes), info.device, init=False)
        state = checkpoint.load(Path(checkpoint_path), fix="pass another --checkpoint (best, last or a path)")
        model.load_state_dict(state["model"] if "model" in state else state)
        labels, scores, order = predict(model, dataset, cfg, info, desc=subset)
        metrics = summarize(scores, labels, len(dataset.classes), skipped=len(dataset) - len(order))
        if scores_path is not None and info.is_main:
            write_csv(scores_frame(dataset, labels, scores, order), Path(scores_path))
    return metrics
