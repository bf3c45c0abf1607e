"""What `attnet reproduce` trains by itself: the preset's budget for the device it finds, and, on a
call with --fresh, which earlier runs it deletes to retrain."""
import pytest
import torch

from attnet import machine, reproduce
from attnet.ablation import ABLATIONS, ablation_run_name
from attnet.reproduce import budget, fresh_runs


def test_gpus_take_the_presets_bigger_budget_jobs_per_gpu_each_and_the_command_line_wins(monkeypatch):
    monkeypatch.setattr(reproduce.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(reproduce, "gpu_count", lambda: 2)
    assert budget("synthetic", "cpu") == ([0, 1, 2, 3, 4], 2)
    assert budget("synthetic", "cuda") == (list(range(20)), 8)         # 2 GPUs x 4 runs each
    assert budget("synthetic", "cuda", seeds=[3, 7], jobs=1) == ([3, 7], 1)
    assert budget("hmdb51", "cuda") == ([0, 1, 2, 3, 4], 2)            # the paper presets: one run per GPU
    monkeypatch.setattr(reproduce.os, "cpu_count", lambda: 1)
    assert budget("hmdb51", "cpu") == ([0, 1, 2, 3, 4], 1)


def test_reproduce_on_a_gpu_hands_the_notebooks_the_gpu_budget(monkeypatch, tmp_path, capsys):
    """The whole command as on a CUDA machine (torch told it sees one), the notebooks replaced by a
    recorder: the seeds and jobs they get are the preset's reproduce.cuda budget."""
    seen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(reproduce, "gpu_count", lambda: 1)
    monkeypatch.setattr(machine, "gpu_facts", lambda: {})     # no GPU to ask for its name and libraries
    monkeypatch.setattr(reproduce, "execute", lambda source, output, params, cwd: seen.append((source.stem, params)))
    reproduce.main(["--preset", "synthetic", "--only", "03_ablation", "--results", str(tmp_path / "res")])
    assert [(name, p["seeds"], p["jobs"]) for name, p in seen] == [("03_ablation", list(range(20)), 4)]
    assert "[reproduce] cuda: seeds [0, 1, 2" in capsys.readouterr().out


def test_a_budget_of_no_seeds_is_refused_naming_the_key(tmp_path):
    from attnet.config import ConfigError, load_config
    with pytest.raises(ConfigError, match=r"reproduce.cuda.seeds: must be > 0, got 0"):
        load_config("synthetic", ["reproduce.cuda.seeds=0"])


def test_a_fresh_call_deletes_the_runs_its_notebooks_train_and_no_others(tmp_path):
    runs = tmp_path / "runs"
    full, seeds = ABLATIONS["full model"], [0, 1]
    names = {
        "full0": ablation_run_name("synthetic", full, 0),                       # 02, 03, 04, 06
        "full1": ablation_run_name("synthetic", full, 1),
        "gp1": ablation_run_name("synthetic", ABLATIONS["GP only"], 1),         # 03 only
        "gp5": ablation_run_name("synthetic", ABLATIONS["GP only"], 5),         # a seed this call does not train
        "detach1": ablation_run_name("synthetic", {**full, "ga_detach_gp": True}, 1),   # 03's row
        "d0.5": "synthetic-d0.5_gp_sru_seed0",                                  # a study's run: never
        "transfer": "synthetic_transfer_fine-tuned",                            # 06
        "smoke": "synthetic-smoke_gp+sa+la_sru_seed0",                          # another preset
    }
    for name in names.values():
        (runs / name).mkdir(parents=True)

    def deleted(*notebooks):
        return {k for k, name in names.items() if runs / name in fresh_runs(notebooks, "synthetic", seeds, runs)}

    assert deleted(*reproduce.NOTEBOOKS) == {"full0", "full1", "gp1", "detach1", "transfer"}
    assert deleted("04_attention") == {"full0"}
    assert deleted("05_results") == set()


def test_the_machine_record_is_the_ablations_and_every_timings_row_names_its_cpu(monkeypatch, tmp_path):
    """machine_<preset>.json describes the machine of 03's runs (what attnet.replicate compares): an
    --only call without 03, perhaps on another machine, leaves it alone, and its timings rows say
    which CPU ran them."""
    import json

    import pandas as pd
    from attnet import machine
    res = tmp_path / "res"

    def ablation(source, output, params, cwd):            # 03 trains one run here
        if source.stem != "03_ablation":
            return
        (res / "tables").mkdir(parents=True, exist_ok=True)
        pd.DataFrame({"config": ["GP only"], "seed": [0], "run": ["r"], "status": ["done"]}).to_csv(
            res / "tables" / "ablation_runs_synthetic.csv", index=False)
        (res / "runs" / "r").mkdir(parents=True, exist_ok=True)
        (res / "runs" / "r" / "final.json").write_text("{}")
    monkeypatch.setattr(reproduce, "execute", ablation)
    monkeypatch.setattr(machine, "_cpuinfo", lambda: ["model name : CPU A", "cpu family : 6", "model : 143"])
    reproduce.main(["--preset", "synthetic", "--only", "03_ablation", "--results", str(res)])
    assert json.loads((res / "machine_synthetic.json").read_text())["cpu"] == "CPU A"
    monkeypatch.setattr(machine, "_cpuinfo", lambda: ["model name : CPU B", "cpu family : 26", "model : 2"])
    reproduce.main(["--preset", "synthetic", "--only", "05_results", "--results", str(res)])
    assert json.loads((res / "machine_synthetic.json").read_text())["cpu"] == "CPU A"
    timings = pd.read_csv(res / "tables" / "reproduce_timings_synthetic.csv").set_index("notebook")["machine"]
    assert timings.to_dict() == {"03_ablation": "CPU A (family 6, model 143)", "05_results": "CPU B (family 26, model 2)"}
