"""Collectives of torchrun / DistributedDataParallel runs; a single process is world size 1
(attnet.engine.runtime starts the process group)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def gather(obj, info: DistInfo) -> list:
    """Every rank's `obj`, in rank order (a one-element list without distribution)."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast(obj, info: DistInfo):
    """Rank 0's `obj` on every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(fn: Callable[[], T], info: DistInfo) -> T:
    """fn() run by rank 0 alone, its result (or its exception) shared with every rank: for
    decisions about files that rank 0 may be changing while the others would read them."""
    if not info.enabled:
        return fn()
    outcome, error = None, None
    if info.is_main:
        try:
            outcome = fn()
        except Exception as err:           # re-raised on every rank, not left to hang the others
            error = err
    outcome, shared = broadcast((outcome, error), info)
    if shared is not None:
        try:
            raise error or shared          # rank 0 keeps its original traceback
        finally:
            # No cycle frame -> exception -> traceback -> frame: with one, the caller's frames (a
            # DDP model among their locals) outlive the handled exception until the GC runs, and a
            # DDP model freed after its process group aborts the process at exit.
            error = shared = None
    return outcome


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
