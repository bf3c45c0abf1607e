"""The run registry read back from files alone: status from the files present, flattened config."""
import json

import yaml

from attnet.config import load_config
from attnet.results import load_runs


def _run(root, name, streams, files):
    run = root / name
    run.mkdir(parents=True)
    cfg = load_config("synthetic-smoke", [f"model.streams={streams}", f"run.name={name}"])
    (run / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    for file, text in files.items():
        (run / file).write_text(text)


def test_status_and_flattened_config_per_run(tmp_path):
    final = {"test": {"top1": 62.5, "sa_top1": 50.0, "confusion": [[1]]}, "best_val_top1": 70.0,
             "wall_time_s": 12.5, "device": "cpu", "git_commit": "abc"}
    _run(tmp_path, "done", "[gp, sa]", {"final.json": json.dumps(final)})
    _run(tmp_path, "failed", "[la]", {"error.txt": "Traceback ...\nValueError: out of data\n"})
    _run(tmp_path, "running", "[sa]", {})
    (tmp_path / "not-a-run").mkdir()                      # no config.yaml: ignored
    runs = load_runs(tmp_path).set_index("run")
    assert list(runs.index) == ["done", "failed", "running"]
    assert list(runs["status"]) == ["done", "failed", "running"]
    assert list(runs["model.streams"]) == ["gp+sa", "la", "sa"]
    assert runs.loc["done", "test.top1"] == 62.5 and runs.loc["done", "test.sa_top1"] == 50.0
    assert "test.confusion" not in runs.columns and runs.loc["done", "wall_time_s"] == 12.5
    assert runs.loc["failed", "error"] == "ValueError: out of data"
    assert runs.loc["done", "data.synthetic"]["num_classes"] == 4      # generator arguments stay one cell


def test_no_registry_gives_an_empty_frame(tmp_path):
    assert load_runs(tmp_path / "absent").empty
