"""TensorBoard events of a run, written by rank 0 under <run>/tensorboard/ (`make tensorboard`).

Two event folders, one per x axis, so that a resume can purge each at its own step:
`steps/` holds the loss, its parts, the learning rate and clips/s every run.log_every steps
at the global step; `epochs/` holds every number of the epoch's metrics.csv row as
epoch/<column> and the SA / LA maps of the first validation videos, at the epoch number. An
epoch's events are flushed before its checkpoint is saved, and a resumed run discards what
came after that checkpoint (SummaryWriter's purge_step), so each step and epoch shows once.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from attnet.data import DataError

from .runtime import Runtime

VIDEOS = 2                                         # validation videos whose attention is drawn each epoch


class Board:
    """The run's two SummaryWriters; every method does nothing when `enabled` is false
    (run.tensorboard=false, or a rank other than 0). Use it as a context manager: the
    writers are closed however training ends."""

    def __init__(self, run_dir: Path, enabled: bool, start_epoch: int, steps_per_epoch: int) -> None:
        self.steps = self.epochs = None
        self.videos = None                         # what attention() draws, read on its first call
        if not enabled:
            return
        from torch.utils.tensorboard import SummaryWriter
        root = Path(run_dir) / "tensorboard"
        self.steps = SummaryWriter(root / "steps", purge_step=start_epoch * steps_per_epoch + 1)
        self.epochs = SummaryWriter(root / "epochs", purge_step=start_epoch + 1)

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def step(self, step: int, values: dict[str, float | torch.Tensor]) -> None:
        """Scalars step/<name> at global step `step` (counted from 1); tensors are read here,
        so call it only on the steps that are logged."""
        if self.steps is not None:
            for name, value in values.items():
                self.steps.add_scalar(f"step/{name}", float(value), step)

    def epoch(self, row: dict) -> None:
        """The epoch's metrics row as epoch/<column> at the epoch number, then everything
        flushed: call it before the epoch's checkpoint is saved."""
        if self.epochs is not None:
            for name, value in row.items():
                if name != "epoch":
                    self.epochs.add_scalar(f"epoch/{name}", value, row["epoch"])
            self.steps.flush()
            self.epochs.flush()

    @torch.no_grad()
    def attention(self, model: torch.nn.Module, dataset, info: Runtime, epoch: int) -> None:
        """attention/sa and attention/la at `epoch`: the first readable videos of `dataset` (read
        once), one row of frames each, darkened where the stream looks away (the paper's
        rendering without its Gaussian smoothing, too slow to repeat every epoch at full size)."""
        streams = [s for s in ("sa", "la") if s in model.streams]
        if self.epochs is None or dataset is None or not streams:
            return
        from attnet.viz import darken, smooth_maps, to_images   # matplotlib and seaborn: only when drawing
        if self.videos is None:
            clips, boxes = _first_videos(dataset)
            self.videos = clips, boxes, [to_images(clip) for clip in clips]
        clips, boxes, images = self.videos
        model.eval()
        with info.autocast():
            out = model(clips.to(info.device), *(b.to(info.device) for b in boxes))
        for s in streams:
            rows = [np.concatenate(list(darken(frames, smooth_maps(maps, clips.shape[-2:], blur=False))), axis=1)
                    for frames, maps in zip(images, out.attention[s])]
            self.epochs.add_image(f"attention/{s}", np.concatenate(rows), epoch, dataformats="HWC")

    def close(self) -> None:
        for writer in (self.steps, self.epochs):
            if writer is not None:
                writer.close()


def _first_videos(dataset) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(clips [B, T, 3, H, W], actor boxes for the oracle stream) of the first VIDEOS readable
    videos, the first clip of each."""
    items = []
    for i in range(len(dataset)):
        try:
            items.append(dataset[i])
        except DataError:                          # data.on_bad_video=skip: left out here as in validation
            continue
        if len(items) == VIDEOS:
            break
    clips, _, *boxes = torch.utils.data.default_collate(items)
    if clips.dim() == 6:                           # [B, clips, T, 3, H, W]
        clips, boxes = clips[:, 0], [b[:, 0] for b in boxes]
    return clips, boxes
