"""Optimizers and learning-rate schedules by name (optim.name, optim.schedule)."""
from __future__ import annotations

import math

import torch

from attnet.registry import Registry

# name -> builder(parameters, cfg.optim) -> optimizer
OPTIMIZERS = Registry("optimizer")
OPTIMIZERS.register("sgd", lambda params, o: torch.optim.SGD(params, lr=o.lr, momentum=o.momentum,
                                                             weight_decay=o.weight_decay))   # the authors'
OPTIMIZERS.register("adamw", lambda params, o: torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay))


def cosine(epochs: int):
    """The authors' per-epoch schedule: lr(e) = 0.5 (1 + cos(pi e / E)) base, e = 0..E-1."""
    return lambda e: 0.5 * (1 + math.cos(math.pi * e / epochs))


# name -> builder(epochs) -> factor of the base rate at epoch e
SCHEDULES = Registry("schedule")
SCHEDULES.register("cosine", cosine)
SCHEDULES.register("constant", lambda epochs: (lambda e: 1.0))
