"""TSN segment sampling (Wang et al. 2016), as METHOD.md describes it.

A video of n frames is cut into T equal segments [i*n/T, (i+1)*n/T). One frame is taken
from each at a fraction u of the segment:

    index_i = floor((i + u_i) * n / T)

Training draws u_i uniformly in [0, 1) per segment; testing takes clip j of `clips` at
u = (j + 0.5) / clips for every segment (one clip: the segment centres). The same formula
covers videos shorter than T: segments then share frames, so frames repeat in order.
"""
from __future__ import annotations

import torch


def _indices(num_frames: int, segments: int, offsets: torch.Tensor) -> torch.Tensor:
    steps = torch.arange(segments, dtype=torch.float64) + offsets.to(torch.float64)
    return torch.floor(steps * num_frames / segments).long().clamp_(0, num_frames - 1)


def train_indices(num_frames: int, segments: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """[T] random frame indices, one inside each segment."""
    return _indices(num_frames, segments, torch.rand(segments, generator=generator, dtype=torch.float64))


def eval_indices(num_frames: int, segments: int, clips: int = 1) -> torch.Tensor:
    """[clips, T] deterministic indices, clips spread evenly inside the segments."""
    offsets = (torch.arange(clips, dtype=torch.float64) + 0.5) / clips
    return torch.stack([_indices(num_frames, segments, offsets[j].expand(segments)) for j in range(clips)])
