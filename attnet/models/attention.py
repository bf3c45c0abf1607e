"""The three per-frame pooling streams of the paper: GP, SA and LA.

Each module maps a backbone feature map F [N, C, h, w] to a pooled vector [N, C] and the
spatial weights [N, h, w] it used (weights sum to 1 over the h*w positions). With
f_i the C-vector at position i (i = 1..h*w):

    GP  g    = (1/N) sum_i f_i
    SA  s_i  = (1/C) sum_c f_{i,c}^2,   a = softmax_i(alpha * s_i + beta),   v = sum_i a_i f_i
    LA  e_i  = tanh(w2 . tanh(W1 f_i + b1) + b2),   a = softmax_i(e_i),      v = sum_i a_i f_i
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def _positions(feats: Tensor) -> Tensor:
    """[N, C, h, w] -> [N, h*w, C]; a free view when the map is channels_last."""
    n, c, h, w = feats.shape
    return feats.permute(0, 2, 3, 1).reshape(n, h * w, c)


def _attend(positions: Tensor, scores: Tensor, shape: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Softmax over positions, then the weighted sum of the position vectors."""
    weights = torch.softmax(scores, dim=-1)
    pooled = torch.bmm(weights.unsqueeze(1), positions).squeeze(1)
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


def build_attention(name: str, channels: int) -> nn.Module:
    """The pooling module of stream `name` ("gp", "sa" or "la")."""
    if name == "gp":
        return GlobalPooling()
    if name == "sa":
        return StatisticAttention()
    if name == "la":
        return LearnedAttention(channels)
    raise ValueError(f"unknown stream {name!r}: choose from 'gp', 'sa', 'la'")
