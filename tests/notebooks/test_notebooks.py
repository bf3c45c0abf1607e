"""The notebooks under papermill with non-default parameters, recording into the registry."""
import json
import os

import pandas as pd
import pytest
import yaml

from attnet.reproduce import ablation_table, execute, run_ablation

pytest.importorskip("papermill")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    base = tmp_path_factory.mktemp("nb")
    return {"preset": "synthetic-smoke", "data_root": str(base / "data"), "results_dir": str(base / "results")}


def test_train_eval_records_a_non_default_run(workspace, tmp_path):
    execute("02_train_eval", tmp_path / "out.ipynb",
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


def test_ablation_runs_of_a_killed_worker_go_again_and_resume(workspace, monkeypatch):
    from attnet.engine import record
    monkeypatch.setenv(record.CRASH_ENV, "after_checkpoint:1")       # every worker dies after its first epoch
    results = workspace["results_dir"] + "-killed"
    runs = run_ablation({"GP only": {"streams": ["gp"]}, "LA only": {"streams": ["la"], "fusion_layer": False}}, [0],
                        workspace["preset"], workspace["data_root"], results, resume=False, epochs=2, jobs=2)
    assert runs["status"].tolist() == ["done", "done"], runs["error"].tolist()
    for name in ("synthetic-smoke_gp_sru_seed0", "synthetic-smoke_la_sru_nofusion_seed0"):
        assert pd.read_csv(f"{results}/runs/{name}/metrics.csv")["epoch"].tolist() == [1, 2]
        log = open(f"{results}/logs/ablation/{name}.log").read()
        assert log.index("epoch 1/2") < log.index("resuming") < log.index("epoch 2/2")   # both tries, in order


def test_difficulty_notebook_sweeps_writes_its_table_and_shows_the_figure(workspace, tmp_path):
    import nbformat
    out = tmp_path / "07.ipynb"
    execute("07_difficulty", out, {**workspace, "difficulties": [0, 1], "seeds": [0], "epochs": 1,
                                   "sweep_configs": ["GP only"], "probe_videos": 3})
    table = pd.read_csv(f"{workspace['results_dir']}/tables/difficulty_synthetic-smoke.csv")
    assert list(zip(table["difficulty"], table["configuration"])) == [(0.0, "GP only"), (1.0, "GP only")]
    assert table["seeds"].eq("1/1").all() and table["top-1"].astype(float).between(0, 100).all()   # one seed: no interval
    assert table["call"].eq("reference").all() and table["last-epoch train top-1 (min)"].between(0, 100).all()
    probe = pd.read_csv(f"{workspace['results_dir']}/tables/difficulty_probe_synthetic-smoke.csv")
    assert probe["difficulty"].tolist() == [0, 1] and probe["test_videos"].eq(24).all()   # 8 classes x 3
    runs = sorted(os.listdir(f"{workspace['results_dir']}/runs"))
    # one per difficulty: at the preset's own difficulty, the preset's own run (the ablation's, when it exists)
    assert {"synthetic-smoke_gp_sru_seed0", "synthetic-smoke-d1_gp_sru_seed0"} <= set(runs)
    meta = json.loads(open(f"{workspace['data_root']}-d1/meta.json").read())
    assert meta["difficulty"] == 1.0 and meta["num_classes"] == 4      # the smoke set, made harder
    images = [o for cell in nbformat.read(out, as_version=4).cells if cell.cell_type == "code"
              for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 1                                            # the figure, inline
    assert open(f"{workspace['results_dir']}/figures/difficulty_synthetic-smoke.png", "rb").read()[:4] == b"\x89PNG"


def test_the_difficulty_notebook_is_an_extra_not_part_of_the_default_reproduction():
    from attnet import reproduce
    assert "07_difficulty" in reproduce.EXTRAS and "07_difficulty" not in reproduce.NOTEBOOKS


def test_causes_notebook_writes_its_table_and_figure_and_04_then_shows_the_table(workspace, tmp_path):
    import nbformat
    from attnet import reproduce
    assert "08_attention_causes" in reproduce.EXTRAS and "08_attention_causes" not in reproduce.NOTEBOOKS
    chosen = ["object-aware features", "g redundancy", "lighting cue"]   # a pretraining, a spec, a derived dataset
    out = tmp_path / "08.ipynb"
    execute("08_attention_causes", out, {**workspace, "seeds": [0, 1], "epochs": 1, "causes": chosen})
    tables = f"{workspace['results_dir']}/tables"
    table = pd.read_csv(f"{tables}/attention_causes_synthetic-smoke.csv")
    assert table["experiment"].tolist() == ["full model", *chosen, "uniform attention (floor)",
                                            "oracle attention (ceiling)"]
    assert table["seeds"].iloc[:4].eq("2/2").all() and table["SA mass call"].iloc[0] == "reference"
    runs = pd.read_csv(f"{tables}/attention_causes_runs_synthetic-smoke.csv")
    assert runs[["sa.mass", "la.mass"]].notna().all().all() and runs["sa.mass"].between(0, 100).all()
    assert set(runs["run"]) >= {"synthetic-smoke-objpre_gp+sa+la_sru_seed1", "synthetic-smoke_gp+sa+la_sru_nofusion_seed0",
                                "synthetic-smoke-nolight_gp+sa+la_sru_seed1"}
    assert json.loads(open(f"{workspace['data_root']}-nolight/meta.json").read())["lighting"] is False
    pretraining = pd.read_csv(f"{tables}/attention_causes_pretraining_synthetic-smoke.csv")
    assert pretraining["epochs"].tolist() == [1] and pretraining["train videos"].tolist() == [24]
    images = [o for cell in nbformat.read(out, as_version=4).cells if cell.cell_type == "code"
              for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 1
    assert open(f"{workspace['results_dir']}/figures/attention_causes_synthetic-smoke.png", "rb").read()[:4] == b"\x89PNG"
    # 04 on 08's one-epoch reference, named: unnamed, 04 refuses it as not the preset's full model
    execute("04_attention", tmp_path / "04.ipynb", {**workspace, "videos": [1], "max_videos": 2,
                                                    "run_name": "synthetic-smoke_gp+sa+la_sru_seed0"})
    shown = [o["data"]["text/markdown"] for cell in nbformat.read(tmp_path / "04.ipynb", as_version=4).cells
             if cell.cell_type == "code" for o in cell.get("outputs", []) if "text/markdown" in o.get("data", {})]
    assert len(shown) == 1 and "| lighting cue |" in shown[0] and "--only 08_attention_causes" in shown[0]


def test_attention_notebook_draws_figures(workspace, tmp_path):
    # the workspace's full model is 08's one-epoch run: resume=False retrains it as the preset's
    execute("04_attention", tmp_path / "att.ipynb", {**workspace, "videos": [1], "resume": False})
    figures = f"{workspace['results_dir']}/figures"
    png = open(f"{figures}/attention_synthetic-smoke_video1.png", "rb").read()
    assert png[:4] == b"\x89PNG" and len(png) > 5000
    assert open(f"{figures}/attention_synthetic-smoke_video1.gif", "rb").read()[:6] == b"GIF89a"
    table = pd.read_csv(f"{workspace['results_dir']}/tables/localization_synthetic-smoke.csv")
    assert table["stream"].tolist() == ["oracle", "sa", "la", "uniform"]         # ceiling, the streams, floor
    mass = table.set_index("stream")["mass_in_box"]
    assert mass["oracle"] > 3 * mass["uniform"] > 0              # the box's coverage puts its mass on the box


def test_reproduce_runs_the_chosen_notebooks_and_writes_timings_and_index(workspace, tmp_path):
    import nbformat
    from attnet import reproduce
    (tmp_path / "res" / "tables").mkdir(parents=True)     # 08 compared with a second run; 03 not yet
    (tmp_path / "res" / "tables" / "replication_causes_synthetic-smoke.md").write_text("| experiment |\n|---|\n| patch |\n")
    reproduce.main(["--preset", "synthetic-smoke", "--only", "05_results", "--results", str(tmp_path / "res"),
                    "--jobs", "1"])
    shown = [o["data"]["text/markdown"] for cell in nbformat.read(tmp_path / "res" / "notebooks" / "05_results.ipynb",
                                                                  as_version=4).cells
             if cell.cell_type == "code" for o in cell.get("outputs", []) if "text/markdown" in o.get("data", {})]
    assert shown[-2].startswith("No second reproduction compared yet") and shown[-1] == "| experiment |\n|---|\n| patch |\n"
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
    from attnet.reproduce import project_root
    readme = (project_root() / "README.md").read_text()
    example = next(line.split("#")[0].strip() for line in readme.splitlines()
                   if line.startswith("papermill notebooks/02_train_eval.ipynb"))
    assert example == """papermill notebooks/02_train_eval.ipynb out.ipynb -p streams '["sa"]' -p seed 1"""
    args = shlex.split(example)[1:]
    args[1] = str(tmp_path / args[1])                          # out.ipynb: not into the checkout
    args += ["-p", "epochs", "1", "-p", "results_dir", workspace["results_dir"],
                                       "-p", "data_root", workspace["data_root"], "-p", "preset", workspace["preset"]]
    done = subprocess.run([sys.executable, "-m", "papermill", *args], cwd=project_root(), capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(project_root())})
    assert done.returncode == 0, done.stderr[-3000:]
    config = yaml.safe_load(open(f"{workspace['results_dir']}/runs/synthetic-smoke_sa_sru_seed1/config.yaml"))
    assert config["model"]["streams"] == ["sa"] and config["run"]["seed"] == 1


def test_ablation_names_and_keys_are_checked_before_any_run(workspace):
    from attnet.reproduce import ABLATIONS, choose_ablations, notebook_param
    assert choose_ablations('["GP only"]', '{"mine": {"streams": [sa], "temporal": gru}}') == \
        {"GP only": {"streams": ["gp"]}, "mine": {"streams": ["sa"], "temporal": "gru"}}
    assert list(choose_ablations("all")) == list(ABLATIONS)
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
