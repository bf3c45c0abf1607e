"""`attnet reproduce` run again loses nothing: finished runs stay, unfinished ones continue, --fresh
retrains; a run trained under other settings stops the call with both ways on; Ctrl-C says in one
line what finished and how to continue; failed runs end it with one line and a non-zero exit; the
reproduction lands in its own folder and is compared with the committed results. The notebooks are
replaced by recorders."""
import json
import os
import signal
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from attnet import reproduce
from attnet.ablation import ABLATIONS, ablation_run_name, run_row, spec_config

ROOT = Path(__file__).resolve().parents[1]
FULL0 = ablation_run_name("synthetic", ABLATIONS["full model"], 0)
GP0 = ablation_run_name("synthetic", ABLATIONS["GP only"], 0)


def finished_run(results: Path, spec: dict, seed: int, epochs: int | None = None) -> Path:
    """A run folder as fit leaves it finished: its config (optim.amp resolved) and final.json."""
    cfg = spec_config("synthetic", spec, seed, str(results), epochs=epochs)
    cfg.optim.amp = "off"
    run = results / "runs" / ablation_run_name("synthetic", spec, seed)
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    (run / "final.json").write_text("{}")
    return run


@pytest.fixture
def recorder(monkeypatch):
    seen = []
    monkeypatch.setattr(reproduce, "execute", lambda source, output, params, cwd: seen.append(source.stem))
    return seen


def test_the_same_call_keeps_finished_and_unfinished_runs_and_fresh_deletes_them(tmp_path, recorder):
    res = tmp_path / "res"
    done = finished_run(res, ABLATIONS["full model"], 0)
    (res / "runs" / GP0 / "checkpoints").mkdir(parents=True)          # stopped after an epoch
    reproduce.main(["--preset", "synthetic", "--only", "03_ablation", "--seeds", "0", "--results", str(res)])
    assert (done / "final.json").is_file() and (res / "runs" / GP0).is_dir()
    reproduce.main(["--preset", "synthetic", "--only", "03_ablation", "--seeds", "0", "--results", str(res), "--fresh"])
    assert not done.exists() and not (res / "runs" / GP0).exists()
    assert recorder == ["03_ablation", "03_ablation"]


def test_fresh_also_deletes_what_04_trained_again_of_the_runs_it_deletes(tmp_path, recorder):
    res = tmp_path / "res"
    finished_run(res, ABLATIONS["full model"], 0)
    again, other = res / "retrained" / FULL0, res / "retrained" / GP0
    again.mkdir(parents=True)
    other.mkdir()
    reproduce.main(["--preset", "synthetic", "--only", "04_attention", "--results", str(res), "--fresh"])
    assert not again.exists() and other.is_dir()                      # 04 retrains the full model, not GP only


def test_a_finished_run_with_other_settings_stops_the_call_naming_keep_and_retrain(tmp_path, recorder, capsys):
    res = tmp_path / "res"
    finished_run(res, ABLATIONS["full model"], 0, epochs=2)
    args = ["--preset", "synthetic", "--only", "03_ablation", "--seeds", "0", "--results", str(res)]
    with pytest.raises(SystemExit) as stop:
        reproduce.main(args)
    assert recorder == []                                                 # nothing trained
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith(f"[reproduce] {res / 'runs' / FULL0 / 'config.yaml'}: this finished run was trained with "
                           "other settings (optim.epochs: 2 -> 24")
    command = "attnet reproduce " + " ".join(args)
    assert str(stop.value) == (f"[reproduce] 1 finished run(s) trained with other settings; keep it: `{command} --epochs 2`;"
                               f" retrain it: `{command} --fresh`")


def test_ctrl_c_prints_one_line_with_the_counts_and_the_command_that_continues(tmp_path, monkeypatch):
    res = tmp_path / "res"

    def interrupted(source, output, params, cwd):
        finished_run(res, ABLATIONS["full model"], 0)
        (res / "runs" / GP0).mkdir()                                  # training when Ctrl-C came
        os.kill(os.getpid(), signal.SIGINT)
    monkeypatch.setattr(reproduce, "execute", interrupted)
    args = ["--preset", "synthetic", "--only", "03_ablation", "--seeds", "0", "--results", str(res)]
    before = signal.getsignal(signal.SIGINT)       # a process started in the background ignores SIGINT
    with pytest.raises(SystemExit) as stop:
        reproduce.main(args + ["--fresh"])
    assert str(stop.value) == ("[reproduce] stopped: 1 runs finished, 1 stopped (each continues from its last.pt); "
                               "continue with: attnet reproduce " + " ".join(args))
    assert signal.getsignal(signal.SIGINT) is before                   # the caller's handler back


def test_queued_jobs_stop_the_call_after_the_ablation_which_goes_first(tmp_path, monkeypatch, capsys):
    res, seen = tmp_path / "res", []

    def submitted(source, output, params, cwd):
        seen.append((source.stem, params["executor"], params["slurm"]["partition"]))
        (res / "tables").mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"config": ["full model"] * 2, "seed": [0, 1], "status": ["done", "queued"]}).to_csv(
            res / "tables" / "ablation_runs_synthetic.csv", index=False)
    monkeypatch.setattr(reproduce, "execute", submitted)
    monkeypatch.setattr(reproduce.shutil, "which", lambda name: f"/usr/bin/{name}")     # a SLURM login node
    reproduce.main(["--preset", "synthetic", "--only", "02_train_eval", "03_ablation", "--seeds", "0", "1",
                    "--results", str(res), "--executor", "slurm", "--partition", "gpu"])
    assert seen == [("03_ablation", "slurm", "gpu")]                  # 02 would train in the kernel: it waits
    out = capsys.readouterr().out
    assert "[reproduce] 1 ablation runs are queued or running" in out and "calls agree" not in out


def test_failed_ablation_runs_end_the_call_with_one_line_and_a_nonzero_exit_after_the_other_notebooks(tmp_path,
                                                                                                    monkeypatch):
    res, seen = tmp_path / "res", []

    def ablation(source, output, params, cwd):
        seen.append(source.stem)
        if source.stem == "03_ablation":                  # the runs table 03 writes: one run failed, one done
            failed = run_row(("GP only", ABLATIONS["GP only"], 1), "synthetic", None, 3.0, "ValueError: boom")
            done = {"config": "GP only", "seed": 0, "run": GP0, "status": "done", "error": ""}
            (res / "tables").mkdir(parents=True)
            pd.DataFrame([done, failed]).to_csv(res / "tables" / "ablation_runs_synthetic.csv", index=False)
    monkeypatch.setattr(reproduce, "execute", ablation)
    with pytest.raises(SystemExit) as stop:
        reproduce.main(["--preset", "synthetic", "--only", "03_ablation", "05_results", "--seeds", "0", "1",
                        "--results", str(res)])
    assert seen == ["03_ablation", "05_results"]                    # the other notebooks went on
    gp1 = ablation_run_name("synthetic", ABLATIONS["GP only"], 1)
    assert str(stop.value) == (f"[reproduce] 1 of 2 ablation runs failed, first {gp1}: ValueError: boom "
                               f"(each run's log: {res / 'logs' / 'ablation'}/<run>.log)")
    assert (res / "tables" / "reproduce_timings_synthetic.csv").is_file()     # the call's record written first


def test_only_a_call_that_trained_ablation_runs_writes_the_machine_file(tmp_path, recorder, monkeypatch):
    """The machine file names where the ablation trained (replicate compares it): a call that
    reused every finished run (made on another machine) leaves it as it was."""
    res = tmp_path / "res"
    finished_run(res, ABLATIONS["full model"], 0)
    (res / "tables").mkdir()
    shutil.copy(ROOT / "results" / "tables" / "ablation_runs_synthetic.csv", res / "tables")   # 03's, FULL0 in it
    (res / "machine_synthetic.json").write_text('{"cpu": "the machine that trained it"}')
    args = ["--preset", "synthetic", "--only", "03_ablation", "--seeds", "0", "--results", str(res)]
    reproduce.main(args)
    assert recorder == ["03_ablation"]
    assert (res / "machine_synthetic.json").read_text() == '{"cpu": "the machine that trained it"}'
    monkeypatch.setattr(reproduce, "execute",                             # 03 retrains the run
                        lambda source, output, params, cwd: (res / "runs" / FULL0 / "final.json").write_text("{}"))
    reproduce.main(args)
    assert json.loads((res / "machine_synthetic.json").read_text())["cpu"] != "the machine that trained it"


def test_a_reproduction_goes_to_its_own_folder_and_is_compared_with_the_committed_results(tmp_path, monkeypatch,
                                                                                            capsys):
    committed = ROOT / "results" / "tables" / "ablation_runs_synthetic.csv"
    seen = []

    def copy(source, output, params, cwd):                            # a reproduction with the committed runs
        seen.append(params["results_dir"])
        (Path(params["results_dir"]) / "tables").mkdir(parents=True)
        shutil.copy(committed, Path(params["results_dir"]) / "tables")
        (Path(params["results_dir"]) / "runs" / FULL0).mkdir(parents=True)
        (Path(params["results_dir"]) / "runs" / FULL0 / "final.json").write_text("{}")     # one trained here
    monkeypatch.setattr(reproduce, "execute", copy)
    monkeypatch.chdir(tmp_path)
    reproduce.main(["--preset", "synthetic", "--only", "03_ablation"])
    assert seen == [str(tmp_path / "reproduction" / "synthetic")]
    calls = len(pd.read_csv(committed)["config"].unique())
    table = tmp_path / "reproduction" / "synthetic" / "tables" / "replication_synthetic.md"
    assert f"[reproduce] {calls} of {calls} ablation calls agree with the committed results/" in capsys.readouterr().out
    assert f"{calls} of {calls} calls agree." in table.read_text()
    assert "machine not recorded" not in table.read_text()       # this reproduction's machine, written before


def test_configs_choose_the_rows_a_call_retrains_and_a_misspelt_one_stops_it_in_one_line(tmp_path, recorder):
    res = tmp_path / "res"
    full, gp = (finished_run(res, ABLATIONS[row], 0) for row in ("full model", "GP only"))
    args = ["--preset", "synthetic", "--only", "03_ablation", "--seeds", "0", "--results", str(res), "--fresh"]
    with pytest.raises(SystemExit, match=r"^--configs: unknown ablation\(s\) 'GP-only'; choose from 'GP only', "):
        reproduce.main(args + ["--configs", "GP-only"])
    assert recorder == [] and gp.is_dir() and full.is_dir()              # nothing deleted, nothing run
    reproduce.main(args + ["--configs", "GP only"])
    assert recorder == ["03_ablation"] and not gp.exists() and (full / "final.json").is_file()   # only its row
