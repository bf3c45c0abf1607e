"""Clip transforms with torchvision.transforms.v2 on uint8 [T, 3, H, W].

A v2 transform called on one [T, 3, H, W] tensor draws its random parameters once, so
every frame of a clip gets the same crop and flip, as temporal models need.
"""
from __future__ import annotations

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _tail(normalize: bool) -> list:
    tail = [v2.ToDtype(torch.float32, scale=True)]
    return tail + [v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)] if normalize else tail


def train_transform(size: int = 224, resize: int = 256, normalize: bool = True, hflip: bool = True) -> v2.Compose:
    """Resize the shorter side, random crop, horizontal flip (the authors' recipe). Turn the
    flip off where mirroring changes the class (left vs right motion)."""
    flip = [v2.RandomHorizontalFlip()] if hflip else []
    return v2.Compose([v2.Resize(resize, antialias=True), v2.RandomCrop(size), *flip, *_tail(normalize)])


def eval_transform(size: int = 224, resize: int = 256, normalize: bool = True,
                   three_crop: bool = False) -> v2.Compose:
    """Resize + centre crop -> [T, 3, S, S]; with three_crop, [3, T, 3, S, S] (start, centre,
    end of the longer side)."""
    crop = ThreeCrop(size) if three_crop else v2.CenterCrop(size)
    return v2.Compose([v2.Resize(resize, antialias=True), crop, *_tail(normalize)])


class ThreeCrop(torch.nn.Module):
    """Three square crops along the longer side, stacked on a new leading dimension."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, clip: torch.Tensor) -> torch.Tensor:
        h, w = clip.shape[-2:]
        s = self.size
        if w >= h:
            top = (h - s) // 2
            return torch.stack([clip[..., top:top + s, x:x + s] for x in (0, (w - s) // 2, w - s)])
        left = (w - s) // 2
        return torch.stack([clip[..., y:y + s, left:left + s] for y in (0, (h - s) // 2, h - s)])
