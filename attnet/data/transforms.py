"""Clip transforms in two halves: a loader worker decodes uint8 frames and draws each clip's crop
and flip (`ClipTransform.crops`); `to_device` then resizes, crops, flips, scales and normalises
whole batches on the training device, where a worker would spend most of its time on them.

The worker draws from torch's global RNG with the calls v2.RandomCrop and
v2.RandomHorizontalFlip make, and the device applies torchvision's functional ops in the
authors' order (resize the shorter side with antialias, crop, flip, ToDtype(scale), Normalize):
on CPU a batch equals the per-clip v2.Compose pipeline bit for bit. On a GPU, torchvision
resizes uint8 through float32 and rounds, so a pixel may differ from the CPU's by one level.
"""
from __future__ import annotations

import dataclasses

import torch
from torch.utils.data import default_collate
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resized_size(height: int, width: int, resize: int) -> tuple[int, int]:
    """(H, W) after v2.Resize(resize): the shorter side becomes `resize`, the aspect ratio is kept."""
    return tuple(F.resize(tv_tensors.BoundingBoxes(torch.zeros(0, 4), format="XYXY", canvas_size=(height, width)),
                          [resize]).canvas_size)


@dataclasses.dataclass(frozen=True)
class ClipTransform:
    """Training: resize the shorter side, random crop, horizontal flip (the authors' recipe; turn
    the flip off where mirroring changes the class). Testing: resize and the centre crop, or with
    three_crop three square crops along the longer side (start, centre, end)."""

    size: int = 224
    resize: int = 256
    train: bool = False
    normalize: bool = True
    hflip: bool = True
    three_crop: bool = False

    def crops(self, height: int, width: int, clips: int = 1) -> torch.Tensor:
        """int64 [clips * crops, 4]: (clip, top, left, flip) of each output clip in the resized
        frames of a [clips, T, 3, height, width] item. Training draws here, in the worker."""
        h, w, s = *resized_size(height, width, self.resize), self.size
        if self.train:
            crop = v2.RandomCrop(s).make_params([torch.empty(0, h, w)])
            flip = self.hflip and bool(torch.rand(1) < 0.5)          # v2.RandomHorizontalFlip's draw
            return torch.tensor([[0, crop["top"], crop["left"], flip]])
        if not self.three_crop:                                     # v2.CenterCrop's anchor
            anchors = [(int(round((h - s) / 2.0)), int(round((w - s) / 2.0)))]
        elif w >= h:
            anchors = [((h - s) // 2, x) for x in (0, (w - s) // 2, w - s)]
        else:
            anchors = [(y, (w - s) // 2) for y in (0, (h - s) // 2, h - s)]
        return torch.tensor([[j, top, left, 0] for j in range(clips) for top, left in anchors])

    def crop(self, frames: torch.Tensor, crops: torch.Tensor) -> torch.Tensor:
        """uint8 [B, clips, T, 3, H, W] -> [B, m, T, 3, S, S]: resized (a whole batch at once), then
        each of the m output clips cut out and flipped as its row of crops [B, m, 4] says."""
        frames = F.resize(frames, [self.resize], antialias=True)
        s = self.size

        def cut(b: int, j: int, top: int, left: int, flip: int) -> torch.Tensor:
            clip = frames[b, j, ..., top:top + s, left:left + s]
            return clip.flip(-1) if flip else clip
        return torch.stack([torch.stack([cut(b, *row) for row in rows]) for b, rows in enumerate(crops.tolist())])

    def scale(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 -> float32 in [0, 1], normalised with the ImageNet statistics when asked."""
        clips = F.to_dtype(clips, torch.float32, scale=True)
        return F.normalize(clips, IMAGENET_MEAN, IMAGENET_STD) if self.normalize else clips

    def boxes(self, boxes: tv_tensors.BoundingBoxes, crop: list[int]) -> tv_tensors.BoundingBoxes:
        """Actor boxes [T, 4] of one clip through the resize, crop and flip of its frames."""
        _, top, left, flip = crop
        boxes = F.resize(boxes, [self.resize])
        if not self.train or tuple(boxes.canvas_size) != (self.size, self.size):   # as v2.RandomCrop skips
            boxes = F.crop(boxes, top, left, self.size, self.size)
        return F.horizontal_flip(boxes) if flip else boxes


@dataclasses.dataclass
class Clips:
    """uint8 clips as a loader worker returns them: an item's frames [clips, T, 3, H, W] as decoded
    (or a batch's, with a leading B), the crops that `ClipTransform.crop` cuts from them, and the
    transform. crops is None once the worker has cropped (a batch of videos of different sizes)."""

    frames: torch.Tensor
    crops: torch.Tensor | None
    transform: ClipTransform

    def pin_memory(self) -> Clips:
        return dataclasses.replace(self, frames=self.frames.pin_memory())


def collate(items: list) -> list:
    """default_collate, except that the Clips of a batch stack at their decoded size, or, where
    the videos differ in size, resized and cropped here (in the worker) to the common crop size."""
    if not isinstance(items[0][0], Clips):
        return default_collate(items)
    clips = [item[0] for item in items]
    transform = clips[0].transform
    if len({c.frames.shape for c in clips}) == 1:
        batch = Clips(torch.stack([c.frames for c in clips]), torch.stack([c.crops for c in clips]), transform)
    else:
        batch = Clips(torch.stack([transform.crop(c.frames[None], c.crops[None])[0] for c in clips]), None, transform)
    return [batch, *default_collate([item[1:] for item in items])]


def to_device(clips: torch.Tensor | Clips, device: torch.device | str) -> torch.Tensor:
    """The model's input on `device`: float32 [B, T, 3, S, S] ([B, m, T, 3, S, S] for m clips or
    crops per video). uint8 Clips are copied there and transformed there; tensors are copied."""
    if isinstance(clips, torch.Tensor):
        return clips.to(device, non_blocking=True)
    frames = clips.frames.to(device, non_blocking=True)
    if clips.crops is not None:
        frames = clips.transform.crop(frames, clips.crops)
    out = clips.transform.scale(frames)
    return out[:, 0] if out.shape[1] == 1 else out
