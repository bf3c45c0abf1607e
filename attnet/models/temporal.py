"""Temporal models that turn per-frame vectors [B, T, D] into per-step states [B, T, H].

`SRU` is the Simple Recurrent Unit (Lei et al. 2018) with the parameters and the math of
the `sru` package 2.x (the authors' dependency), in plain PyTorch. For one layer with
input x_t, hidden size d and k weight chunks (k = 4 when the input size differs from d):

    U_t      = x_t W                       W: [in, d*k], chunks interleaved per unit
    f_t      = sigmoid(U_t[1] + v_f * c_{t-1} + b_f)
    r_t      = sigmoid(U_t[2] + v_r * c_{t-1} + b_r)
    c_t      = f_t * c_{t-1} + (1 - f_t) * U_t[0]
    h_t      = r_t * c_t + (1 - r_t) * x'_t
    x'_t     = scale_x * x_t  (k = 3)   or   U_t[3]  (k = 4)

with weight_c = [v_f; v_r] and bias = [b_f; b_r]. Dropout between layers is the
package's: one mask per sequence on the (c_t - x'_t) term of every layer but the last.
Only c_t is sequential, so the loop holds three element-wise ops per step and the rest
runs over all steps at once.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from attnet.registry import Registry

class SRULayer(nn.Module):
    """One unidirectional SRU layer, state-dict compatible with `sru.SRUCell` 2.x."""

    scale_x: Tensor

    def __init__(self, input_size: int, hidden_size: int, dropout: float = 0.0,
                 rescale: bool = True, highway_bias: float = 0.0) -> None:
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.dropout = dropout
        self.rescale = rescale
        self.highway_bias = highway_bias
        self.num_matrices = 4 if input_size != hidden_size else 3
        self.weight = nn.Parameter(torch.empty(input_size, hidden_size * self.num_matrices))
        self.weight_c = nn.Parameter(torch.empty(2 * hidden_size))
        self.bias = nn.Parameter(torch.empty(2 * hidden_size))
        self.register_buffer("scale_x", torch.ones(1))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The package's initialisation: unit-variance outputs, gates scaled by sqrt(1/2)."""
        d, k = self.hidden_size, self.num_matrices
        scale = math.sqrt(1 + 2 * math.exp(self.highway_bias)) if self.rescale else 1.0
        with torch.no_grad():
            self.bias.zero_()
            self.bias[d:] = self.highway_bias
            self.scale_x.fill_(scale)
            bound = math.sqrt(3.0 / self.input_size)
            self.weight.uniform_(-bound, bound)
            w = self.weight.view(self.input_size, d, k)
            if self.dropout > 0:
                w[..., 0] *= math.sqrt(1 - self.dropout)
            if k == 4:
                w[..., 3] *= scale
            w[..., 1:3] *= math.sqrt(0.5)
            self.weight_c.uniform_(-math.sqrt(3.0), math.sqrt(3.0)).mul_(math.sqrt(0.5))

    def forward(self, x: Tensor) -> Tensor:
        """x [T, B, in] -> h [T, B, d] (time-major, as the package)."""
        steps, batch, _ = x.shape
        d, k = self.hidden_size, self.num_matrices
        u = (x.reshape(steps * batch, -1) @ self.weight).view(steps, batch, d, k)
        forget_w, reset_w = self.weight_c.view(2, d)
        forget_b, reset_b = self.bias.view(2, d)
        candidate = u[..., 0]
        forget_in = u[..., 1] + forget_b
        highway = x * self.scale_x if k == 3 else u[..., 3]

        c = x.new_zeros(batch, d)
        cells = []
        for t in range(steps):
            forget = torch.sigmoid(torch.addcmul(forget_in[t], c, forget_w))
            c = torch.lerp(candidate[t], c, forget)
            cells.append(c)
        c_all = torch.stack(cells)
        c_prev = torch.cat([c_all.new_zeros(1, batch, d), c_all[:-1]])
        reset = torch.sigmoid(torch.addcmul(u[..., 2] + reset_b, c_prev, reset_w))
        if self.training and self.dropout > 0:
            mask = torch.empty(batch, d, dtype=x.dtype, device=x.device)
            reset = reset * mask.bernoulli_(1 - self.dropout).div_(1 - self.dropout)
        return torch.lerp(highway, c_all, reset)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, dropout={self.dropout}, k={self.num_matrices}"


class SRU(nn.Module):
    """Stacked SRU layers (unidirectional, no layer norm), as `sru.SRU` 2.x."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 3,
                 dropout: float = 0.5, rescale: bool = True, highway_bias: float = 0.0) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            SRULayer(input_size if i == 0 else hidden_size, hidden_size,
                     dropout=dropout if i + 1 < num_layers else 0.0,
                     rescale=rescale, highway_bias=highway_bias)
            for i in range(num_layers)
        )

    def forward(self, x: Tensor) -> Tensor:
        """x [B, T, D] -> [B, T, H]."""
        h = x.transpose(0, 1)
        for layer in self.layers:
            h = layer(h)
        return h.transpose(0, 1)


class _TorchRNN(nn.Module):
    """nn.LSTM / nn.GRU returning only the per-step outputs."""

    def __init__(self, cell: type[nn.RNNBase], input_size: int, hidden_size: int,
                 num_layers: int, dropout: float) -> None:
        super().__init__()
        self.rnn = cell(input_size, hidden_size, num_layers=num_layers,
                        dropout=dropout if num_layers > 1 else 0.0, batch_first=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.rnn(x)[0]


def _rnn(cell: type[nn.RNNBase]) -> Callable[..., tuple[nn.Module, int]]:
    return lambda input_size, hidden_size, num_layers, dropout: (
        _TorchRNN(cell, input_size, hidden_size, num_layers, dropout), hidden_size)


# name -> builder(input_size, hidden_size, num_layers, dropout) -> (module [B, T, D] -> [B, T, H'], H')
TEMPORAL_MODELS = Registry("temporal model")
TEMPORAL_MODELS.register("sru", lambda input_size, hidden_size, num_layers, dropout: (
    SRU(input_size, hidden_size, num_layers, dropout), hidden_size))
TEMPORAL_MODELS.register("lstm", _rnn(nn.LSTM))
TEMPORAL_MODELS.register("gru", _rnn(nn.GRU))
TEMPORAL_MODELS.register("mean", lambda input_size, hidden_size, num_layers, dropout: (nn.Identity(), input_size))


class TemporalHead(nn.Module):
    """Temporal model + per-step dropout and linear classifier, averaged over steps.

    The classifier is linear, so the mean over steps of fc(dropout(h_t)) is computed as
    fc(mean_t dropout(h_t)): the same numbers with one matmul instead of T.

    The head always runs in float32, autocast or not: a recurrence accumulates its state over
    the steps, where bf16's 8-bit mantissa would lose it (and the SRU's gates would mix dtypes).
    """

    def __init__(self, kind: str, input_size: int, num_classes: int, hidden_size: int = 1024,
                 num_layers: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        self.kind = kind
        self.rnn, out_size = TEMPORAL_MODELS.get(kind)(input_size, hidden_size, num_layers, dropout)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(out_size, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """x [B, T, D] -> logits [B, K] (float32)."""
        with torch.autocast(x.device.type, enabled=False):
            return self.fc(self.dropout(self.rnn(x.float())).mean(dim=1))
