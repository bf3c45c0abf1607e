"""Where the runs of a grid train: each pool worker sees one GPU, jobs_per_gpu workers per GPU.
CI has no GPU: the devices are simulated (the count handed in), and each worker reports the
CUDA_VISIBLE_DEVICES it was started with."""
import json
import multiprocessing
import os
from pathlib import Path

import pytest

from attnet import executors
from attnet.executors import DevicePool, pool_slots


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
        with DevicePool(slots, threads=None) as pool:
            seen = list(pool.map(report_slot, [barrier] * 4))
    workers = {}
    for pid, device in seen:
        workers.setdefault(device, set()).add(pid)
    assert {device: len(pids) for device, pids in workers.items()} == {"0": 2, "1": 2}


def what_a_worker_sees(name: str) -> tuple[str | None, str, int]:
    return os.environ.get(name), os.getcwd(), os.getppid()


def test_a_worker_sees_the_drivers_environment_and_folder_of_now_not_those_of_the_fork_servers_start(
        tmp_path, monkeypatch):
    with DevicePool([None], threads=None) as pool:         # starts the fork server (once per driver)
        server = pool.submit(what_a_worker_sees, "ATTNET_TEST_MARK").result()[2]
    monkeypatch.setenv("ATTNET_TEST_MARK", "set after the server started")
    monkeypatch.chdir(tmp_path)
    with DevicePool([None], threads=None) as pool:
        mark, folder, parent = pool.submit(what_a_worker_sees, "ATTNET_TEST_MARK").result()
    assert (mark, folder) == ("set after the server started", str(tmp_path))
    assert parent == server != os.getpid()                  # forked from the same server, not from the driver


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


def test_a_slurm_job_asks_for_the_partition_account_time_gpus_and_cores_it_is_given(tmp_path, monkeypatch):
    (tmp_path / "srun").write_text("#!/bin/sh\n")                       # what submitit looks for on a cluster
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", os.pathsep.join([str(tmp_path), os.environ["PATH"]]))
    executor = executors.submitit_executor("slurm", tmp_path, {"partition": "gpu", "account": "lab", "time": 120,
                                                               "gpus": 1, "cpus": 10})
    script = executor._make_submission_file_text("python -m submitit.core._submit x", "uid")   # what sbatch reads
    for line in ("--partition=gpu", "--account=lab", "--time=120", "--gpus-per-node=1", "--cpus-per-task=10",
                 "--signal=USR2@"):
        assert f"#SBATCH {line}" in script
    default = executors.submitit_executor("slurm", tmp_path, {"partition": None, "account": None, "time": 60,
                                                              "gpus": 1, "cpus": 4})
    assert "--partition" not in default._make_submission_file_text("x", "uid")     # the cluster's default


def test_a_recorded_job_is_running_while_its_process_lives_and_ended_after(tmp_path):
    record = tmp_path / "run.json"
    assert executors.job_state(record) == "ended"                      # never submitted
    record.write_text(json.dumps({"executor": "local", "job_id": str(os.getpid()), "folder": str(tmp_path)}))
    assert executors.job_state(record) == "running"
    ended = 2**22 + 1                                                # above Linux's pid_max: no such process
    record.write_text(json.dumps({"executor": "local", "job_id": str(ended), "folder": str(tmp_path)}))
    assert executors.job_state(record) == "ended"


def test_a_preempted_job_is_submitted_again_to_resume_with_its_log_appended():
    from attnet.ablation import AblationJob
    job = AblationJob()
    again = job.checkpoint(Path("x.log"), False, "synthetic", {"streams": ["gp"]}, 3, results_dir="r", resume=False)
    assert again.function is job
    assert again.args == (Path("x.log"), True, "synthetic", {"streams": ["gp"]}, 3)
    assert again.kwargs == {"results_dir": "r", "resume": True}
