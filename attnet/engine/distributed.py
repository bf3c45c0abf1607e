"""Collectives of multi-process (torchrun, srun, submitit) DistributedDataParallel runs; a single
process is world size 1 (attnet.engine.runtime starts the process group)."""
from __future__ import annotations

import itertools
import os
import sys
import threading
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable, Iterator, TypeVar

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
        raised_everywhere(error or shared)
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


def main_first(fn: Callable[[], T], info: DistInfo) -> T:
    """fn() on every rank, rank 0's first (its error shared): rank 0 downloads or generates what
    the others then find in place."""
    if not info.enabled:
        return fn()
    made = []
    on_main(lambda: made.append(fn()), info)       # shares rank 0's error, not its result
    return made[0] if info.is_main else fn()


def broadcast_buffers(model: torch.nn.Module, info: DistInfo) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank: each rank's training forwards
    updated its own, and the weights evaluated and saved are rank 0's."""
    if info.enabled:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def any_rank(flag: torch.Tensor, info: DistInfo) -> bool:
    """Whether `flag` (a bool tensor on this rank's device) is true on some rank; every rank gets
    the same answer, so all stop together."""
    flag = flag.to(torch.int32)
    if info.enabled:
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def raised_everywhere(err: BaseException) -> BaseException:
    """Mark an exception that every rank raises at the same point (a decision shared by rank 0, a
    check all ranks agreed on): `fail_together` lets it through as it is."""
    err.raised_everywhere = True
    return err


class RankFailed(RuntimeError):
    """One rank raised: the whole process group stops, naming that rank."""


_guards = itertools.count()


@contextmanager
def fail_together(info: DistInfo, record: Callable[[str], None], poll_s: float = 1.0) -> Iterator[None]:
    """An exception on one rank ends every rank within seconds instead of leaving the others in
    a collective that never completes. The first rank to fail posts "rank k: error" in the
    launcher's store and passes its traceback to `record` (the run's error.txt); the others
    raise RankFailed naming it where they get to raise, and a watchdog thread ends any that waits
    in a collective (os._exit(1): nothing else interrupts one), or that lost the store's host.
    A rank that dies without raising (SIGKILL) is the launcher's to stop: torchrun does, srun
    with --kill-on-bad-exit=1. Errors marked raised_everywhere pass through unchanged."""
    if not info.enabled:
        yield
        return
    store = dist.TCPStore(os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"]), is_master=False,
                          timeout=timedelta(seconds=60))
    key = f"attnet/failed/{os.environ.get('TORCHELASTIC_RESTART_COUNT', 0)}/{next(_guards)}"
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(poll_s):
            try:
                failed = store.check([key]) and store.get(key).decode()
            except Exception:                      # the store's host (rank 0 or the launcher) is gone
                failed = "the process group's store went away: its host process ended"
            if failed and not stop.is_set():
                print(f"rank {info.rank}: stopping, {failed}", file=sys.stderr, flush=True)
                os._exit(1)
    watchdog = threading.Thread(target=watch, name="fail_together", daemon=True)
    watchdog.start()
    try:
        yield
        stop.set()
        watchdog.join()
        barrier(info)                              # no rank leaves (and ends the store's host) while one still watches
    except Exception as err:
        if getattr(err, "raised_everywhere", False):
            raise
        stop.set()
        first = store.add(f"{key}/count", 1) == 1
        if first:                                  # the others are told first: recording may fail too (a full disk)
            said = f"rank {info.rank}: {type(err).__name__}: {err}"
            store.set(key, said)
            record(f"{traceback.format_exc()}{said}\n")        # its last line names the rank, as the registry shows it
        raise RankFailed(store.get(key).decode() + ("" if first else f" (rank {info.rank} stopped with it)")) from err
    finally:
        stop.set()
        watchdog.join()
