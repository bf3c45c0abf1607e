"""The notebooks under papermill with non-default parameters, recording into the registry."""
import json
import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from attnet.ablation import ablation_table, run_ablation
from tests.notebooks import ROOT, inline_images, run_notebook

pytest.importorskip("papermill")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    base = tmp_path_factory.mktemp("nb")
    return {"preset": "synthetic-smoke", "data_root": str(base / "data"), "results_dir": str(base / "results")}


@pytest.mark.slow
def test_train_eval_records_a_non_default_run(workspace, tmp_path):
    run_notebook("02_train_eval", tmp_path / "out.ipynb",
            {**workspace, "streams": ["sa"], "fusion_layer": False, "seed": 1, "epochs": 1})
    run = f"{workspace['results_dir']}/runs/synthetic-smoke_sa_sru_nofusion_seed1"
    final = json.loads(open(f"{run}/final.json").read())
    assert set(k for k in final["test"] if k.endswith("_top1")) == {"sa_top1"}
    assert pd.read_csv(f"{run}/metrics.csv")["epoch"].tolist() == [1]
    assert (tmp_path / "out.ipynb").is_file()


def test_ablation_reports_a_failure_beside_a_result(workspace):
    logs = f"{workspace['results_dir']}/logs/ablation"     # each run's output, in place of an executed notebook
    os.makedirs(logs, exist_ok=True)
    with open(f"{logs}/synthetic-smoke_gp_sru_seed2.log", "w") as f:
        f.write("an earlier reproduction's output\n")     # its run is gone: this run's log starts afresh
    runs = run_ablation({"GP only": {"streams": ["gp"]}, "broken": {"streams": ["xx"]}}, [2], workspace["preset"],
                        workspace["data_root"], workspace["results_dir"], epochs=1, jobs=2)
    assert runs["config"].tolist() == ["GP only", "broken"]          # table order, whichever finished first
    final = json.loads(Path(f"{workspace['results_dir']}/runs/synthetic-smoke_gp_sru_seed2/final.json").read_text())
    assert runs["seconds"].iloc[0] == final["wall_time_s"]            # the run's training time, as recorded
    config = yaml.safe_load(open(f"{workspace['results_dir']}/runs/synthetic-smoke_gp_sru_seed2/config.yaml"))
    assert config["run"]["threads"] == max(1, os.cpu_count() // 2)  # the cores are split between the two jobs
    table = ablation_table(runs).set_index("configuration")
    assert table.loc["GP only", "status"] == "done" and table.loc["GP only", "seeds"] == "1/1"
    assert table.loc["broken", "status"].startswith("failed: ConfigError") and "model.streams" in table.loc["broken", "status"]
    assert table.loc["broken", "top-1"] == ""
    log = open(f"{logs}/synthetic-smoke_gp_sru_seed2.log").read()
    assert "test top1" in log and "earlier reproduction" not in log
    assert "Traceback" in open(f"{logs}/synthetic-smoke_xx_sru_seed2.log").read()
    assert not os.path.exists(f"{workspace['results_dir']}/notebooks")


@pytest.mark.slow
def test_ablation_runs_of_a_killed_worker_go_again_and_resume(workspace, monkeypatch):
    faults = Path(__file__).resolve().parents[1] / "faults"          # tests/faults/sitecustomize.py
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(faults), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("ATTNET_CRASH_AT", "after_checkpoint:1")       # every worker dies after its first epoch
    results = workspace["results_dir"] + "-killed"
    runs = run_ablation({"GP only": {"streams": ["gp"]}, "LA only": {"streams": ["la"], "fusion_layer": False}}, [0],
                        workspace["preset"], workspace["data_root"], results, resume=False, epochs=2, jobs=2)
    assert runs["status"].tolist() == ["done", "done"], runs["error"].tolist()
    for name in ("synthetic-smoke_gp_sru_seed0", "synthetic-smoke_la_sru_nofusion_seed0"):
        assert pd.read_csv(f"{results}/runs/{name}/metrics.csv")["epoch"].tolist() == [1, 2]
        log = open(f"{results}/logs/ablation/{name}.log").read()
        assert log.index("epoch 1/2") < log.index("resuming") < log.index("epoch 2/2")   # both tries, in order


@pytest.mark.slow
def test_attention_notebook_draws_figures_inline_and_saved(workspace, tmp_path):
    run_notebook("04_attention", tmp_path / "att.ipynb", {**workspace, "videos": [0, 1], "resume": False})
    images = inline_images(tmp_path / "att.ipynb")
    assert len(images) == 2 and all(len(image) > 2000 for image in images)   # one per video
    figures = f"{workspace['results_dir']}/figures"
    for video in (0, 1):
        png = open(f"{figures}/attention_synthetic-smoke_video{video}.png", "rb").read()
        assert png[:4] == b"\x89PNG" and len(png) > 5000
    assert open(f"{figures}/attention_synthetic-smoke_video0.gif", "rb").read()[:6] == b"GIF89a"   # the first shown
    assert not os.path.exists(f"{figures}/attention_synthetic-smoke_video1.gif")
    table = pd.read_csv(f"{workspace['results_dir']}/tables/localization_synthetic-smoke.csv")
    assert table["stream"].tolist() == ["oracle", "sa", "la", "gradcam", "uniform"]   # ceiling, maps, floor
    mass = table.set_index("stream")["mass_in_box"]
    assert mass["oracle"] > 3 * mass["uniform"] > 0              # the box's coverage puts its mass on the box
    assert 0 <= mass["gradcam"] <= 100


def test_reproduce_runs_the_chosen_notebooks_and_writes_timings_and_index(workspace, tmp_path):
    import nbformat
    from attnet import reproduce
    reproduce.main(["--preset", "synthetic-smoke", "--only", "05_results", "--results", str(tmp_path / "res"),
                    "--jobs", "1"])
    shown = [o["data"]["text/markdown"] for cell in nbformat.read(tmp_path / "res" / "notebooks" / "05_results.ipynb",
                                                                  as_version=4).cells
             if cell.cell_type == "code" for o in cell.get("outputs", []) if "text/markdown" in o.get("data", {})]
    assert shown[-1].startswith("No second reproduction compared yet")
    made = nbformat.read(tmp_path / "res" / "notebooks" / "05_results.ipynb", as_version=4).metadata.papermill
    assert made.input_path == "notebooks/05_results.ipynb" and not os.path.isabs(made.output_path)
    timings = pd.read_csv(tmp_path / "res" / "tables" / "reproduce_timings_synthetic-smoke.csv")
    assert timings["notebook"].tolist() == ["05_results"] and timings["seconds"].iloc[0] > 0
    assert (tmp_path / "res" / "notebooks" / "05_results.ipynb").is_file()
    index = (tmp_path / "res" / "README.md").read_text()
    assert "attnet reproduce --preset synthetic-smoke --only 05_results" in index
    assert "## paper_vs_reproduced_synthetic-smoke" in index


def test_readme_papermill_example_with_a_list_parameter_as_json(workspace, tmp_path):
    import shlex
    import subprocess
    import sys
    readme = (ROOT / "README.md").read_text()
    example = next(line.split("#")[0].strip() for line in readme.splitlines()
                   if line.startswith("papermill notebooks/02_train_eval.ipynb"))
    assert example == """papermill notebooks/02_train_eval.ipynb out.ipynb -p streams '["sa"]' -p seed 1"""
    args = shlex.split(example)[1:]
    args[1] = str(tmp_path / args[1])                          # out.ipynb: not into the checkout
    args += ["-p", "epochs", "1", "-p", "results_dir", workspace["results_dir"],
                                       "-p", "data_root", workspace["data_root"], "-p", "preset", workspace["preset"]]
    done = subprocess.run([sys.executable, "-m", "papermill", *args], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-3000:]
    config = yaml.safe_load(open(f"{workspace['results_dir']}/runs/synthetic-smoke_sa_sru_seed1/config.yaml"))
    assert config["model"]["streams"] == ["sa"] and config["run"]["seed"] == 1


def test_ablation_names_and_keys_are_checked_before_any_run(workspace):
    from attnet.ablation import ABLATIONS, choose_ablations
    from attnet.experiments import notebook_param
    assert choose_ablations('["GP only"]', '{"mine": {"streams": [sa], "temporal": gru}}') == \
        {"GP only": {"streams": ["gp"]}, "mine": {"streams": ["sa"], "temporal": "gru"}}
    assert list(choose_ablations("all")) == list(choose_ablations("all", preset="synthetic")) == list(ABLATIONS)
    # a dataset without actor boxes: every row but the oracle control
    assert list(choose_ablations("all", preset="ucf101")) == [n for n in ABLATIONS if n != "oracle + GP (fusion layer)"]
    with pytest.raises(ValueError, match=r"unknown ablation\(s\) 'GP-only'; choose from 'GP only', 'SA only'"):
        choose_ablations(["GP-only"])
    with pytest.raises(ValueError, match=r"ablation 'mine': unknown key\(s\) stream; an ablation sets only streams, "):
        choose_ablations(["GP only"], {"mine": {"stream": ["sa"]}})
    with pytest.raises(ValueError, match="unknown key"):
        run_ablation({"mine": {"stream": ["sa"]}}, [0], workspace["preset"], workspace["data_root"],
                     workspace["results_dir"] + "-never")
    assert not os.path.exists(workspace["results_dir"] + "-never")      # refused before any run started
    assert notebook_param("streams", '["sa", "la"]', list) == ["sa", "la"]
    assert notebook_param("streams", "[sa]", list) == ["sa"] and notebook_param("streams", "sa", list) == ["sa"]
    assert notebook_param("seeds", "1", list) == [1]
    with pytest.raises(ValueError, match="parameter extra_configs: expected a dict"):
        notebook_param("extra_configs", "[1]", dict)
