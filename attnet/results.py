"""The run registry: results/runs/<name>/{config.yaml, metrics.csv, final.json, scores.csv.gz}."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import yaml

from attnet.config import Config, config_from_dict, flat_config

RETRAINED = "retrained"    # <results>/retrained/<name>: a finished run that kept no checkpoint, trained again


def run_config(run_dir: str | Path) -> Config:
    """The config a run's config.yaml records (whatever preset, ablation or backbone made it)."""
    return config_from_dict(yaml.safe_load((Path(run_dir) / "config.yaml").read_text()))


def run_final(run_dir: str | Path) -> dict:
    """What a finished run's final.json records: test metrics, best validation top-1, precision, machine."""
    return json.loads((Path(run_dir) / "final.json").read_text())


def run_status(run_dir: Path) -> str:
    if (run_dir / "final.json").is_file():
        return "done"
    if (run_dir / "error.txt").is_file():
        return "failed"
    return "running"


def load_runs(path: str | Path = "results/runs") -> pd.DataFrame:
    """One row per run directory: flattened config (model.streams as "gp+sa+la"), final test
    metrics (test.top1, test.gp_top1, ..., test.num_videos scored and test.skipped_videos left
    out as unreadable; NaN for runs recorded before the count existed), best validation
    accuracy, wall time and status."""
    rows = []
    for run_dir in sorted(p for p in Path(path).iterdir() if p.is_dir()) if Path(path).is_dir() else []:
        if not (run_dir / "config.yaml").is_file():
            continue
        row: dict = {"run": run_dir.name, "path": str(run_dir), "status": run_status(run_dir)}
        flat = flat_config(yaml.safe_load((run_dir / "config.yaml").read_text()))
        row |= {k: "+".join(map(str, v)) if isinstance(v, list) else v for k, v in flat.items()}
        if row["status"] == "done":
            final = run_final(run_dir)
            for k, v in final["test"].items():
                if k != "confusion":
                    row[f"test.{k}"] = v
            row |= {"best_val_top1": final["best_val_top1"], "wall_time_s": final["wall_time_s"],
                    "device": final.get("device"), "git_commit": final.get("git_commit")}
        elif row["status"] == "failed":
            row["error"] = (run_dir / "error.txt").read_text().strip().splitlines()[-1]
        rows.append(row)
    return pd.DataFrame(rows)


def load_metrics(run_dir: str | Path) -> pd.DataFrame:
    """The per-epoch table of one run."""
    return pd.read_csv(Path(run_dir) / "metrics.csv")


def load_scores(run_dir: str | Path) -> pd.DataFrame:
    """Per-video clip-averaged logits of every stream (columns video, label, stream, s0..)."""
    return pd.read_csv(Path(run_dir) / "scores.csv.gz")
