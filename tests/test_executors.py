"""Where the runs of a grid train: each pool worker sees one GPU, jobs_per_gpu workers per GPU.
CI has no GPU: the devices are simulated (the count handed in), and each worker reports the
CUDA_VISIBLE_DEVICES it was started with."""
import multiprocessing
import os

import pytest

from attnet import executors
from attnet.executors import device_pool, pool_slots


def report_slot(barrier) -> tuple[int, str | None]:
    """A task in place of training: wait until every worker holds a task, then say who saw what."""
    barrier.wait(timeout=120)
    return os.getpid(), os.environ.get("CUDA_VISIBLE_DEVICES")


@pytest.mark.slow
def test_two_gpus_with_two_jobs_each_give_every_gpu_to_exactly_two_concurrent_workers(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    slots = pool_slots(None, jobs_per_gpu=2, gpus=2)
    assert slots == ["0", "1", "0", "1"]
    with multiprocessing.get_context("spawn").Manager() as manager:
        barrier = manager.Barrier(4)           # passes only with four tasks running at once
        with device_pool(slots, threads=None) as pool:
            seen = list(pool.map(report_slot, [barrier] * 4))
    workers = {}
    for pid, device in seen:
        workers.setdefault(device, set()).add(pid)
    assert {device: len(pids) for device, pids in workers.items()} == {"0": 2, "1": 2}


def test_the_worker_count_follows_the_gpus_a_scheduler_gave_and_the_cpu_default(monkeypatch):
    monkeypatch.setattr(executors, "gpu_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")          # its indices name the GPUs the workers see
    assert pool_slots(None, jobs_per_gpu=1) == ["3", "5"]
    assert pool_slots(3, jobs_per_gpu=4) == ["3", "5", "3"]    # --jobs wins over GPUs x jobs_per_gpu
    monkeypatch.setattr(executors, "gpu_count", lambda: 0)
    assert pool_slots(None, jobs_per_gpu=4) == [None]         # a CPU: one run at a time unless told
    assert pool_slots(2) == [None, None]


def test_each_of_a_cpus_workers_gets_its_share_of_the_cores(monkeypatch):
    monkeypatch.setattr(executors.os, "cpu_count", lambda: 16)
    assert [executors.cpu_share(n) for n in (1, 3, 8, 32)] == [16, 5, 2, 1]
