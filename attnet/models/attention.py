"""The per-frame pooling streams: the paper's GP, SA and LA, and the "oracle" control.

Each module maps a backbone feature map F [N, C, h, w] to a pooled vector [N, C] and the
spatial weights [N, h, w] it used (weights sum to 1 over the h*w positions). With
f_i the C-vector at position i (i = 1..h*w):

    GP      g    = (1/N) sum_i f_i
    SA      s_i  = (1/C) sum_c f_{i,c}^2,   a = softmax_i(alpha * s_i + beta),   v = sum_i a_i f_i
    LA      e_i  = tanh(w2 . tanh(W1 f_i + b1) + b2),   a = softmax_i(e_i),      v = sum_i a_i f_i
    oracle  a_i  = |cell_i ∩ B| / sum_j |cell_j ∩ B|  (B: the ground-truth actor box), v = sum_i a_i f_i

The oracle is not in the paper: a positive control telling what attending to the actor is worth.
`STREAMS` maps each stream name to the builder of its pooling module, in canonical order.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from attnet.registry import Registry


def _positions(feats: Tensor) -> Tensor:
    """[N, C, h, w] -> [N, h*w, C]; a free view when the map is channels_last."""
    n, c, h, w = feats.shape
    return feats.permute(0, 2, 3, 1).reshape(n, h * w, c)


def _attend(positions: Tensor, scores: Tensor, shape: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Softmax over positions (in float32: maps sum to 1 under autocast too), then the weighted
    sum of the position vectors."""
    return _pool(positions, torch.softmax(scores, dim=-1, dtype=torch.float32), shape)


def _pool(positions: Tensor, weights: Tensor, shape: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """The weighted sum of the position vectors [N, h*w, C] by weights [N, h*w], in the
    features' dtype (the autocast dtype under autocast); the maps keep the weights' dtype."""
    pooled = torch.bmm(weights.unsqueeze(1).to(positions.dtype), positions).squeeze(1)
    return pooled, weights.view(-1, *shape)


class GlobalPooling(nn.Module):
    """GP: the plain spatial average, i.e. uniform attention."""

    def forward(self, feats: Tensor) -> tuple[Tensor, Tensor]:
        n, _, h, w = feats.shape
        weights = feats.new_full((n, h, w), 1.0 / (h * w))
        return feats.mean(dim=(2, 3)), weights


class StatisticAttention(nn.Module):
    """SA: positions with high mean squared activation get the weight.

    The learned part is a single scalar affine (alpha, beta), stored as the authors'
    1x1 convolution with one input and one output channel so their weights load as is.
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, kernel_size=1)

    def forward(self, feats: Tensor) -> tuple[Tensor, Tensor]:
        n, _, h, w = feats.shape
        positions = _positions(feats)
        energy = positions.pow(2).mean(dim=-1)                       # s_i  [N, h*w]
        scores = energy * self.conv.weight.view(()) + self.conv.bias  # alpha * s_i + beta
        return _attend(positions, scores, (h, w))


class LearnedAttention(nn.Module):
    """LA: a two-layer tanh MLP scores each position (bottleneck 128 in the paper)."""

    def __init__(self, channels: int, bottleneck: int = 128) -> None:
        super().__init__()
        # Indices 0 and 2 match the authors' `linear` Sequential, so their keys map 1:1.
        self.linear = nn.Sequential(
            nn.Linear(channels, bottleneck), nn.Tanh(), nn.Linear(bottleneck, 1), nn.Tanh()
        )

    def forward(self, feats: Tensor) -> tuple[Tensor, Tensor]:
        n, _, h, w = feats.shape
        positions = _positions(feats)
        scores = self.linear(positions).squeeze(-1)                  # e_i  [N, h*w]
        return _attend(positions, scores, (h, w))


def box_coverage(boxes: Tensor, shape: tuple[int, int], image_size: tuple[int, int]) -> Tensor:
    """[N, h, w] fraction of each map cell inside its box, for boxes [N, 4] (x0, y0, x1, y1 in
    input pixels, x1/y1 exclusive) on an h x w map over an image of H x W pixels; cell (r, c)
    covers [c W/w, (c+1) W/w) x [r H/h, (r+1) H/h)."""
    boxes = boxes if boxes.is_floating_point() else boxes.float()

    def overlap(cells: int, pixels: int, lo: Tensor, hi: Tensor) -> Tensor:   # [N, cells]
        edges = torch.arange(cells + 1, device=boxes.device, dtype=boxes.dtype) * (pixels / cells)
        covered = torch.minimum(edges[1:], hi[:, None]) - torch.maximum(edges[:-1], lo[:, None])
        return covered.clamp(min=0) / (pixels / cells)

    (h, w), (height, width) = shape, image_size
    x0, y0, x1, y1 = boxes.unbind(-1)
    return overlap(h, height, y0, y1)[:, :, None] * overlap(w, width, x0, x1)[:, None, :]


class OracleAttention(nn.Module):
    """Oracle: weights from the ground-truth actor box instead of the features.

    Each cell weighs the fraction of it the box covers, normalised over the map; a box that
    covers nothing (actor out of view) gives uniform weights. No parameters.
    """

    def forward(self, feats: Tensor, boxes: Tensor, image_size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        n, _, h, w = feats.shape
        if boxes.shape != (n, 4):
            raise ValueError(f"oracle stream: expected boxes [{n}, 4] (one per frame), got {tuple(boxes.shape)}")
        cover = box_coverage(boxes, (h, w), image_size).flatten(1)
        total = cover.sum(dim=1, keepdim=True)
        weights = torch.where(total > 0, cover / total.clamp(min=1e-12), torch.full_like(cover, 1.0 / (h * w)))
        return _pool(_positions(feats), weights, (h, w))


# name -> builder(channels) -> pooling module, in the paper's order (GLKANet orders its streams so)
STREAMS = Registry("stream")
STREAMS.register("gp", lambda channels: GlobalPooling())
STREAMS.register("sa", lambda channels: StatisticAttention())
STREAMS.register("la", LearnedAttention)
STREAMS.register("oracle", lambda channels: OracleAttention())


def build_attention(name: str, channels: int) -> nn.Module:
    """The pooling module of stream `name` (a name of STREAMS) for `channels`-wide features."""
    return STREAMS.get(name)(channels)
