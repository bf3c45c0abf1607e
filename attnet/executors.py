"""Where a grid of runs trains: a process pool on this machine with one device slot per worker,
or submitit jobs (SLURM, or submitit's local executor on this machine) recorded by job id so that
a later call collects them.

A pool worker sees one GPU (CUDA_VISIBLE_DEVICES, set before CUDA starts), `jobs_per_gpu`
workers share each GPU, and the CPU cores are split between the workers. A worker exits when
the process that started it dies, so a killed driver leaves no run training (or holding its
run lock) behind: every run stays resumable from its last.pt.
"""
from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

EXECUTORS = ("pool", "submitit-local", "slurm")
MAX_REQUEUES = 100        # preemptions / timeouts a SLURM job may resume from (a long run needs several)


def gpu_count() -> int:
    """The GPUs this process may use: the device slots of a pool (0 on a CPU machine)."""
    import torch
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def pool_slots(jobs: int | None, jobs_per_gpu: int = 1, gpus: int | None = None) -> list[str | None]:
    """One CUDA_VISIBLE_DEVICES value per worker, GPUs taken in turn (GPUs x jobs_per_gpu workers
    unless `jobs` says how many); [None] * jobs (default 1) without a GPU. A GPU index is one of
    this process's own CUDA_VISIBLE_DEVICES where a scheduler set it."""
    gpus = gpu_count() if gpus is None else gpus
    if not gpus:
        return [None] * max(1, jobs or 1)
    visible = [d for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    names = visible[:gpus] if len(visible) >= gpus else [str(g) for g in range(gpus)]
    return [names[i % gpus] for i in range(max(1, jobs or gpus * jobs_per_gpu))]


def cpu_share(workers: int) -> int:
    """The CPU cores of one of `workers` concurrent runs: its torch threads, at most its loader workers."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _watch_driver(alive) -> None:
    with contextlib.suppress(EOFError, OSError):
        alive.recv()                 # never sent: returns when the driver's end closes
    os._exit(1)            # the driver died: its runs stay resumable from last.pt, their locks free


def _start_worker(slots, threads: int | None, driver: dict, alive) -> None:
    """Pool initializer: the driver's environment, folder and import path as they are now (the fork
    server holds those of its start), this worker's device slot, before anything starts CUDA, and
    its threads. Ctrl-C is the driver's to handle (it stops the workers); the worker exits when the
    driver does (the end of `alive` that it holds closes)."""
    os.environ.clear()
    os.environ.update(driver["env"])
    os.chdir(driver["cwd"])
    sys.path[:] = driver["path"]
    slot = slots.get()
    if slot is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = slot
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_driver, args=(alive,), daemon=True).start()
    if threads:
        import torch
        torch.set_num_threads(threads)


class DevicePool(ProcessPoolExecutor):
    """A pool with one worker per slot, each holding its slot for its lifetime (and `threads` torch
    threads; None: torch's choice). Workers fork from a server that imported the trainer once and
    never touched CUDA: a worker starts in a fraction of a second instead of importing torch again.
    The pool holds the write end of a pipe whose read end every worker watches."""

    def __init__(self, slots: list[str | None], threads: int | None):
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["attnet.ablation"])
        queue = context.Queue()
        for slot in slots:
            queue.put(slot)
        alive, self._alive = context.Pipe(duplex=False)
        driver = {"env": dict(os.environ), "cwd": os.getcwd(), "path": list(sys.path)}
        super().__init__(max_workers=len(slots), mp_context=context, initializer=_start_worker,
                         initargs=(queue, threads, driver, alive))

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        super().shutdown(wait=wait, cancel_futures=cancel_futures)
        if wait:
            self._alive.close()


def stop_pool(pool: ProcessPoolExecutor) -> None:
    """Ctrl-C: no more runs start, and the running ones stop now (each resumes from its last.pt)."""
    processes = list(pool._processes.values())         # Python 3.14: pool.terminate_workers()
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join()


# --- submitit ---------------------------------------------------------------------------------
def submitit_executor(kind: str, folder: Path, slurm: dict, slot: str | None = None):
    """A submitit executor: SLURM (one job per run: `slurm`'s partition, account, time in minutes,
    gpus, cpus) or the local one (this machine; `slot` its GPU), each job requeued when preempted
    or out of time."""
    import submitit
    if kind == "slurm":
        executor = submitit.SlurmExecutor(folder, max_num_timeout=MAX_REQUEUES)
        options = {"partition": slurm.get("partition"), "account": slurm.get("account")}
        executor.update_parameters(time=slurm["time"], gpus_per_node=slurm["gpus"], cpus_per_task=slurm["cpus"],
                                   ntasks_per_node=1, nodes=1, **{k: v for k, v in options.items() if v})
    else:
        executor = submitit.LocalExecutor(folder, max_num_timeout=MAX_REQUEUES)
        executor.update_parameters(timeout_min=slurm["time"], gpus_per_node=int(slot is not None),
                                   visible_gpus=(int(slot),) if slot is not None else ())
    return executor


def job_record(path: Path, kind: str, job) -> None:
    """The submitted job of a run (its id and submitit folder), for a later call to find."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"executor": kind, "job_id": job.job_id, "folder": str(job.paths.folder)}))


def job_state(path: Path) -> str:
    """"queued" or "running" while the job recorded at `path` is, else "ended" (also without a record)."""
    if not path.is_file():
        return "ended"
    record = json.loads(path.read_text())
    if record["executor"] == "slurm":
        return _slurm_state(record)
    with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
        os.kill(int(record["job_id"]), 0)              # the local job's controller process
        return "running"
    return "ended"


def _slurm_state(record: dict) -> str:
    """A SLURM job's state from sacct (only on a SLURM cluster)."""
    import submitit
    state = submitit.SlurmJob(record["folder"], record["job_id"]).state
    if state in ("PENDING", "REQUEUED", "CONFIGURING", "READY", "UNKNOWN", "PREEMPTED"):
        return "queued"
    return "running" if state in ("RUNNING", "COMPLETING") else "ended"
