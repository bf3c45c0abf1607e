"""An ablation's runs through each executor: submitit's local executor (the SLURM path, on this
machine) gives the pool's table and, called again, collects instead of training; a killed driver
leaves every run resumable."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import yaml

from attnet.ablation import ABLATIONS, ablation_table, run_ablation, spec_config
from attnet.config import load_config
from attnet.data import synthetic

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = {"GP only": ABLATIONS["GP only"], "full model": ABLATIONS["full model"]}
RUNS = ["synthetic-smoke_gp_sru_seed0", "synthetic-smoke_gp+sa+la_sru_seed0"]


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke preset's data, generated once before parallel runs would race for it."""
    base = tmp_path_factory.mktemp("grid")
    synthetic.ensure(base / "data", **load_config("synthetic-smoke").data.synthetic)
    return base


def test_a_later_call_collects_finished_runs_and_leaves_running_jobs_alone(tmp_path):
    """What a SLURM user sees on the second call: finished runs in the table, a job still running
    named as such, and nothing trained or submitted (no SLURM here: it would fail to submit)."""
    results = tmp_path / "res"
    cfg = spec_config("synthetic-smoke", ABLATIONS["GP only"], 0, str(results), epochs=1)
    cfg.optim.amp = "off"                                                # as fit records it
    run = results / "runs" / RUNS[0]
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    (run / "final.json").write_text(json.dumps({"test": {"top1": 62.5, "gp_top1": 62.5, "num_videos": 8},
                                                "config": {"selection": "val"}}))
    (run / "metrics.csv").write_text("epoch,train_top1\n1,40.0\n")
    (results / "jobs").mkdir()
    (results / "jobs" / f"{RUNS[1]}.json").write_text(json.dumps({"executor": "local", "job_id": str(os.getpid()),
                                                                  "folder": str(results / "jobs" / "submitit")}))
    runs = run_ablation(CONFIGS, [0], "synthetic-smoke", None, str(results), epochs=1, executor="slurm")
    assert runs[["config", "status", "error"]].values.tolist() == [
        ["GP only", "done", ""], ["full model", "running", f"job {os.getpid()}"]]
    assert runs["test.top1"].iloc[0] == 62.5 and pd.isna(runs["test.top1"].iloc[1])
    table = ablation_table(runs).set_index("configuration")
    assert table.loc["GP only", "status"] == "done" and table.loc["full model", "status"] == "1 queued or running"
    assert table.loc["full model", "seeds"] == "0/1"
    assert not (results / "jobs" / "submitit").exists()


def finals(results: Path) -> dict[str, float]:
    return {name: (results / "runs" / name / "final.json").stat().st_mtime_ns for name in RUNS}


@pytest.mark.slow
def test_submitit_local_gives_the_pools_table_and_a_second_call_trains_nothing(smoke):
    common = dict(configs=CONFIGS, seeds=[0], preset="synthetic-smoke", data_root=str(smoke / "data"), epochs=1, jobs=2)
    pool = run_ablation(results_dir=str(smoke / "pool"), **common)
    local = run_ablation(results_dir=str(smoke / "local"), executor="submitit-local", **common)
    assert local["status"].tolist() == ["done", "done"], local["error"].tolist()
    metrics = ["config", "seed", "run"] + [c for c in pool.columns if c.startswith("test.") or c == "train.top1"]
    pd.testing.assert_frame_equal(local[metrics], pool[metrics])
    assert ablation_table(local).to_dict("records") == ablation_table(pool).to_dict("records")
    jobs = sorted(p.read_text() for p in (smoke / "local" / "jobs").glob("*.json"))
    assert len(jobs) == 2
    before = finals(smoke / "local")
    again = run_ablation(results_dir=str(smoke / "local"), executor="submitit-local", **common)
    assert again[metrics].equals(local[metrics]) and finals(smoke / "local") == before
    assert again["seconds"].equals(local["seconds"])              # reused rows: the runs' training seconds
    assert sorted(p.read_text() for p in (smoke / "local" / "jobs").glob("*.json")) == jobs     # nothing submitted


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "Ctrl-C"])
def test_a_stopped_driver_leaves_every_run_resumable(smoke, stop):
    """SIGKILL or Ctrl-C of the process running run_ablation once the first run has finished: its
    worker exits too (no run left training or locked), Ctrl-C says so in one line (no broken pool
    per run), and the same call keeps the finished run and completes the other."""
    results = smoke / f"stopped-{stop.name}"
    script = ("from attnet.ablation import ABLATIONS, run_ablation\n"
              f"run_ablation({{'GP only': ABLATIONS['GP only'], 'full model': ABLATIONS['full model']}}, [0], "
              f"'synthetic-smoke', {str(smoke / 'data')!r}, {str(results)!r}, epochs=3)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    driver = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    first, second = results / "runs" / RUNS[0] / "final.json", results / "runs" / RUNS[1] / "checkpoints" / "last.pt"
    deadline = time.monotonic() + 240
    while not (first.is_file() and second.is_file()) and driver.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert first.is_file() and second.is_file() and driver.poll() is None      # the second run has an epoch to keep
    driver.send_signal(stop)
    out = driver.communicate(timeout=60)[0]
    finished = first.stat().st_mtime_ns
    assert not (results / "runs" / RUNS[1] / "final.json").is_file(), out
    if stop == signal.SIGINT:
        assert "[ablation] stopped: 1 of 2 runs finished, 1 stopped (each continues from its last.pt)" in out, out
        assert "BrokenProcessPool" not in out and "full model" not in out.split("[ablation] stopped")[0]
    runs = run_ablation(CONFIGS, [0], "synthetic-smoke", str(smoke / "data"), str(results), epochs=3)
    assert runs["status"].tolist() == ["done", "done"], runs["error"].tolist()      # no run left locked
    assert first.stat().st_mtime_ns == finished
    assert pd.read_csv(results / "runs" / RUNS[1] / "metrics.csv")["epoch"].tolist() == [1, 2, 3]
