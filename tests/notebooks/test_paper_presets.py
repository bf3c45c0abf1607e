"""`attnet reproduce` on the paper presets (ucf101, hmdb51) with CPU-sized overrides, on tiny
official-layout datasets written here: every notebook end to end, a preset given as a file."""
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from attnet import reproduce
from attnet.config import PRESET_PATH
from attnet.data import lists

from tests.notebooks import inline_images, kernel_warnings

from ..data.conftest import write_avi, write_text

pytest.importorskip("papermill")

CPU_SIZED = {"data": {"segments": 4, "size": 64, "resize": 64, "num_clips": 1, "batch_size": 4, "eval_batch_size": 4,
                      "workers": 0},
             "model": {"backbone": "tiny", "pretrained": None, "hidden_size": 32, "num_layers": 2},
             "optim": {"epochs": 2}, "run": {"device": "cpu"}}


def clip(label: int, seed: int) -> torch.Tensor:
    """16 frames 64x80: a class colour plus seeded noise."""
    g = torch.Generator().manual_seed(seed)
    base = torch.tensor([[200, 60, 60], [60, 200, 60], [60, 60, 200]][label], dtype=torch.uint8).view(1, 3, 1, 1)
    noise = torch.randint(0, 40, (16, 3, 64, 80), generator=g, dtype=torch.uint8)
    return base.expand(16, 3, 64, 80) + noise


def ucf101_tree(root):
    """Split 1 of 3 classes: groups g01-g02 test, g08-g11 train, two clips a group."""
    classes = ["ApplyEyeMakeup", "Archery", "Basketball"]
    write_text(root / "ucfTrainTestlist" / "classInd.txt", [f"{i + 1} {c}" for i, c in enumerate(classes)])
    train, test = [], []
    for label, name in enumerate(classes):
        for g in (1, 2, 8, 9, 10, 11):
            for c in (1, 2):
                relative = f"{name}/v_{name}_g{g:02d}_c{c:02d}.avi"
                write_avi(root / "UCF-101" / relative, clip(label, 100 * g + c))
                (test if g < 8 else train).append(relative if g < 8 else f"{relative} {label + 1}")
    write_text(root / "ucfTrainTestlist" / "trainlist01.txt", train)
    write_text(root / "ucfTrainTestlist" / "testlist01.txt", test)


def hmdb51_tree(root):
    """Split 1 of 3 classes: four source videos each, two clips a video, tags 1 1 1 2."""
    for label, name in enumerate(["brush_hair", "cartwheel", "catch"]):
        lines = []
        for v, tag in enumerate("1112"):
            for n in (0, 1):
                relative = f"Source_video_{v}_{name}_f_nm_np1_fr_goo_{n}.avi"
                write_avi(root / name / relative, clip(label, 10 * v + n))
                lines.append(f"{relative} {tag}")
        write_text(root / "testTrainMulti_7030_splits" / f"{name}_test_split1.txt", lines)


def reproduce_on(tmp_path, monkeypatch, paper, make, val_fraction, notebooks, configs=("GP only", "full model")):
    """`attnet reproduce` of `notebooks` (ablation rows `configs`) on a CPU-sized copy of a paper
    preset over generated data in the official layout; (results folder, data folder, preset name)."""
    monkeypatch.setenv(PRESET_PATH, "")                # reproduce adds the preset's folder; undone after the test
    data, results = tmp_path / "data", tmp_path / "results"
    make(data)
    preset = tmp_path / "presets" / f"{paper}-cpu.yaml"
    preset.parent.mkdir()
    sized = {**CPU_SIZED, "data": {**CPU_SIZED["data"], "val_fraction": val_fraction}}
    preset.write_text(yaml.safe_dump({"base": paper, **sized}))
    reproduce.main(["--preset", str(preset), "--data-root", str(data), "--results", str(results), "--seeds", "0",
                    "--jobs", "2", "--only", *notebooks, "--configs", *configs])
    return results, data, f"{paper}-cpu"


def full_model_run(results: Path, name: str, paper: str, data: Path, selection: str) -> Path:
    """The full model's run: the preset's dataset, its checkpoint selection, the whole official test list."""
    run = results / "runs" / f"{name}_gp+sa+la_sru_seed0"
    final = json.loads((run / "final.json").read_text())
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert final["config"]["dataset"] == paper and final["config"]["selection"] == selection
    assert config["model"]["backbone"] == "tiny" and config["data"]["root"] == str(data)
    # tested on the whole official test list (UCF101: 2 groups x 2 clips a class; HMDB51: 2 clips a class)
    test, _ = getattr(lists, paper)(data, 1, "test")
    assert final["test"]["num_videos"] == len(test) == {"ucf101": 12, "hmdb51": 6}[paper]
    return run


@pytest.mark.slow
def test_reproduce_runs_every_notebook_on_a_paper_preset(tmp_path, monkeypatch):
    """Every notebook that takes a preset (00 takes none), two rows of the ablation (which rows
    "all" means on a dataset without actor boxes: tests/notebooks/test_notebooks.py)."""
    notebooks = [n for n in reproduce.NOTEBOOKS if n != "00_quickstart"]
    results, data, name = reproduce_on(tmp_path, monkeypatch, "ucf101", ucf101_tree, 0.25, notebooks)
    assert sorted(p.stem for p in (results / "notebooks").glob("*.ipynb")) == notebooks
    for notebook in notebooks:      # 03 and 06 train runs: none of their logs or warnings lands in a cell
        path = results / "notebooks" / f"{notebook}.ipynb"
        assert not kernel_warnings(path), (notebook, kernel_warnings(path)[:500])
    images = inline_images(results / "notebooks" / "01_data.ipynb")
    assert len(images) == 2 and all(len(image) > 2000 for image in images)   # shown inline
    assert {f"data_samples_{name}.png", "tsn_sampling.png"} <= {p.name for p in (results / "figures").iterdir()}
    assert (results / "figures" / f"attention_{name}_video0.png").is_file()
    table = (results / "tables" / f"ablation_{name}.md").read_text()
    assert table.count("| done |") == 2 and "GP only" in table and "oracle" not in table
    transfer = (results / "tables" / f"transfer_{name}.md").read_text()   # fine-tuned on the preset's own data
    assert "fine-tuned" in transfer and "from scratch" in transfer
    assert len(inline_images(results / "notebooks" / "06_transfer.ipynb")) == 1        # its curves, shown inline
    assert len(inline_images(results / "notebooks" / "05_results.ipynb")) == 1         # quoted vs reproduced
    assert (results / "figures" / f"paper_vs_reproduced_{name}.png").is_file()
    assert (results / "figures" / f"transfer_{name}.png").is_file()
    run = full_model_run(results, name, "ucf101", data, "val")
    best, last = (torch.load(run / "checkpoints" / f"{n}.pt", weights_only=True) for n in ("best", "last"))
    val_top1 = pd.read_csv(run / "metrics.csv")["val_top1"]
    assert last["epoch"] == 1
    assert best["epoch"] == val_top1.idxmax() and best["best_top1"] == pytest.approx(val_top1.max(), rel=1e-5)


@pytest.mark.slow
def test_a_paper_preset_without_a_validation_set_tests_the_last_epoch(tmp_path, monkeypatch):
    results, data, name = reproduce_on(tmp_path, monkeypatch, "hmdb51", hmdb51_tree, 0.0, ["02_train_eval"])
    run = full_model_run(results, name, "hmdb51", data, "last epoch")
    best, last = (torch.load(run / "checkpoints" / f"{n}.pt", weights_only=True) for n in ("best", "last"))
    assert last["epoch"] == 1 and best["epoch"] == 1 and best["best_top1"] == -1
    assert "val_top1" not in pd.read_csv(run / "metrics.csv")
