"""`attnet reproduce` shows the ablation's progress while the runs go, and no kernel warning."""
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from attnet import ablation, reproduce

ROOT = Path(__file__).resolve().parents[1]


def test_follower_draws_runs_done_of_total_and_failures_as_they_come(tmp_path, monkeypatch):
    events = tmp_path / "events.jsonl"
    monkeypatch.setenv(ablation.PROGRESS_ENV, str(events))
    out = io.StringIO()
    follower = reproduce.ProgressFollower(events, stream=out, poll=0.01)
    with follower:
        ablation.report_progress({"event": "start", "total": 3})
        ablation.report_progress({"event": "run", "run": "GP only, seed 0", "status": "done", "result": "top1 50.0"})
        time.sleep(0.3)
        seen_while_running = out.getvalue()
        ablation.report_progress({"event": "run", "run": "broken, seed 0", "status": "failed",
                                   "result": "ConfigError: model.streams" + " and why" * 20})
        with open(events, "a") as f:
            f.write('{"event": "run", "run": "half')     # a line still being written is not read yet
        time.sleep(0.3)
        assert follower.bar.n == 2
    text = out.getvalue()
    assert "1/3" in seen_while_running and "GP only, seed 0: top1 50.0" in seen_while_running
    assert "2/3" in text and f"[reproduce] broken, seed 0: failed: ConfigError: model.streams{' and why' * 20}\n" in text
    bar = text.split("\r")[-1]                    # the bar keeps the first 57 characters of a long result
    assert f"last: broken, seed 0: {('ConfigError: model.streams' + ' and why' * 20)[:57]}..." in bar


def test_report_progress_writes_nothing_unless_asked(tmp_path, monkeypatch):
    monkeypatch.delenv(ablation.PROGRESS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    ablation.report_progress({"event": "start", "total": 1})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_reproduce_shows_ablation_progress_while_it_runs(tmp_path):
    """The 03 notebook on the smoke preset, three rows, one seed, one epoch: each row shown as it finishes."""
    rows = ["GP only", "SA only", "full model, mean pooling"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "attnet", "reproduce", "--preset", "synthetic-smoke", "--only", "03_ablation",
           "--seeds", "0", "--epochs", "1", "--jobs", "2", "--results", str(tmp_path / "res"), "--configs", *rows]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    arrivals, buffer = [], b""
    while chunk := proc.stdout.read1(4096):
        buffer += chunk
        *complete, buffer = buffer.replace(b"\r", b"\n").split(b"\n")
        arrivals += [(time.monotonic(), line.decode()) for line in complete]
    assert proc.wait(timeout=60) == 0, "\n".join(line for _, line in arrivals[-30:])
    text = "\n".join(line for _, line in arrivals)
    total = len(rows)
    first = next(t for t, line in arrivals if f" 1/{total} " in line)
    last = next(t for t, line in arrivals if f" {total}/{total} " in line)
    assert last - first > 1, "progress came all at once at the end, not while the runs went"
    finished = {line.split("last: ")[1].split(":")[0] for _, line in arrivals if "last: " in line}
    assert finished == {f"{row}, seed 0" for row in rows}, finished
    assert "Traceback" not in text and "ERROR" not in text
    assert "[reproduce] 03_ablation done in" in text
    assert "WARNING" not in text and "without encryption" not in text
