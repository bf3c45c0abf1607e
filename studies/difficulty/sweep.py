"""The difficulty sweep: does attention pay off once the synthetic task leaves the ceiling?

For each difficulty (attnet.data.synthetic.render), a preset derived from a synthetic one
(same settings, `data.synthetic.difficulty` set, its own data root, its name ending in
`-d<difficulty>` so that runs of different difficulties have different names) trains GP
only, SA + GP, LA + GP and the full model over seeds through `run_ablation`. The derived
presets are small YAML files under <results_dir>/presets/. At the preset's own difficulty the
preset itself runs, so the ablation's runs of these configurations serve (`--resume`).

Harder sets take longer to fit, so a derived preset trains the preset's epochs x (1 +
difficulty) (`difficulty_epochs`): at 0.75 the full model had 84 % train top-1 after 18
epochs, against >= 90 % at 0 after 20. The table's train column checks convergence.

A sweep takes hours; what its finished runs say so far, training nothing (`--figure PNG` also
draws it):

    python -m studies.difficulty.sweep --preset synthetic --difficulties 0.5 1
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from attnet.ablation import ABLATIONS, ablation_run_name, run_ablation, run_row, spec_config
from attnet.config import derived_preset, load_config
from attnet.data import synthetic
from attnet.engine.record import check_finished
from attnet.tables import paired_table, to_markdown
from attnet.viz import save_figure

SWEEP_CONFIGS = ("GP only", "SA + GP (fusion layer)", "LA + GP (fusion layer)", "full model")


def difficulty_epochs(epochs: int, difficulty: float) -> int:
    """The training budget at a difficulty: `epochs` (the preset's) x (1 + difficulty)."""
    return round(epochs * (1 + difficulty))


def difficulty_preset(preset: str, difficulty: float, folder: str | Path, data_root: str | None = None) -> Path:
    """Write <folder>/<preset>-d<difficulty>.yaml (base: preset, difficulty_epochs of its
    epochs) and return its path; the dataset root is <data_root or the preset's root>-d<difficulty>."""
    cfg = load_config(preset)
    if cfg.data.name != "synthetic":
        raise ValueError(f"preset {preset!r}: the difficulty sweep needs a synthetic preset, its data.name is "
                         f"{cfg.data.name!r}")
    synthetic.difficulty_settings(difficulty)          # rejects a negative difficulty
    tag = f"d{difficulty:g}"
    return derived_preset(preset, tag, {"data": {"root": f"{data_root or cfg.data.root}-{tag}",
                                                 "synthetic": {**cfg.data.synthetic, "difficulty": float(difficulty)}},
                                        "optim": {"epochs": difficulty_epochs(cfg.optim.epochs, difficulty)}},
                          folder)


def sweep_preset(preset: str, difficulty: float, folder: str | Path, data_root: str | None = None) -> tuple[str, str | None]:
    """(preset, data root) that trains at `difficulty`: the preset itself (and `data_root`) at its
    own difficulty, else difficulty_preset's file (whose root is already the derived one)."""
    cfg = load_config(preset)
    if cfg.data.name == "synthetic" and float(cfg.data.synthetic.get("difficulty", 0.0)) == float(difficulty):
        return preset, data_root
    return str(difficulty_preset(preset, difficulty, folder, data_root)), None


def run_difficulty_sweep(difficulties, seeds, preset: str, results_dir: str, data_root: str | None = None,
                         configs=SWEEP_CONFIGS, resume: bool = True, epochs: int | None = None,
                         jobs: int = 1) -> pd.DataFrame:
    """Every configuration x seed at every difficulty; run_ablation's rows with a `difficulty` column.
    `epochs` (None: each preset's) overrides every run's budget."""
    frames = []
    for difficulty in difficulties:
        name, root = sweep_preset(preset, difficulty, Path(results_dir) / "presets", data_root)
        cfg = load_config(name)
        synthetic.ensure(root or cfg.data.root, **cfg.data.synthetic)   # once, before parallel runs would race for it
        runs = run_ablation({c: ABLATIONS[c] for c in configs}, seeds, name, root, results_dir,
                            resume=resume, epochs=epochs, jobs=jobs)
        frames.append(runs.assign(difficulty=float(difficulty)))
    return pd.concat(frames, ignore_index=True)


def finished_sweep(difficulties, seeds, preset: str, results_dir: str, data_root: str | None = None,
                   configs=SWEEP_CONFIGS, epochs: int | None = None) -> pd.DataFrame:
    """run_difficulty_sweep's rows from the runs already finished, training nothing. A run without
    final.json, or finished under other settings than its preset's now (record.check_finished),
    is a "not finished" row, so the table's seeds column reads finished/asked."""
    rows = []
    for difficulty in difficulties:
        name, root = sweep_preset(preset, difficulty, Path(results_dir) / "presets", data_root)
        for config in configs:
            spec = ABLATIONS[config]
            for seed in seeds:
                run_dir = Path(results_dir) / "runs" / ablation_run_name(name, spec, seed)
                error = "" if (run_dir / "final.json").is_file() else f"{run_dir}: not finished"
                if not error:
                    cfg = spec_config(name, spec, seed, results_dir, data_root=root, epochs=epochs)
                    try:
                        check_finished(run_dir, cfg)
                    except ValueError as err:
                        error = str(err)
                rows.append(run_row((config, spec, seed), name, run_dir, float("nan"), error, status="not finished")
                            | {"difficulty": float(difficulty)})
    return pd.DataFrame(rows)


def text_columns(reference: str = "GP only") -> list[str]:
    """difficulty_table's columns for reading, with its paired differences taken to `reference`."""
    return ["difficulty", "configuration", "seeds", "top-1", "last-epoch train top-1 (min)", f"Δ vs {reference}", "call"]


TEXT_COLUMNS = text_columns()


def difficulty_table(runs: pd.DataFrame, reference: str = "GP only", level: float = 0.95) -> pd.DataFrame:
    """Per difficulty and configuration: finished seeds, the mean test top-1 and its t-interval
    (NaN below 2 seeds), the lowest final-epoch train top-1 (convergence), and the paired
    difference to `reference` at that difficulty (seed by seed) with its t-interval and call:
    where attention starts to pay. text_columns(reference) are for reading;
    top1, low and high are for difficulty_chart."""
    rows = []
    for difficulty, at in runs.groupby("difficulty", sort=False):
        paired = paired_table(at, reference, "test.top1", level)
        for config, group in at.groupby("config", sort=False):
            done = group[group["status"] == "done"]
            p = paired.loc[config]
            train = done["train.top1"].dropna() if "train.top1" in done else pd.Series(dtype=float)
            rows.append({"difficulty": difficulty, "configuration": config, "seeds": p["seeds"],
                         "top1": p["mean"], "low": p["low"], "high": p["high"], "top-1": p["text"],
                         "last-epoch train top-1 (min)": round(float(train.min()), 1) if len(train) else float("nan"),
                         f"Δ vs {reference}": p["Δ"], "call": p["call"]})
    return pd.DataFrame(rows)


def _pooled_colours(difficulty: float, count: int, first: int, frames: int, size: int, seed: int):
    """Per video the change over time of the mean colour of the whole frame (what global
    pooling sees of the light) and of the actor's box; and the labels."""
    whole, actor, labels = [], [], []
    for label in range(len(synthetic.CLASSES)):
        for index in range(first, first + count):
            video, boxes = synthetic.render(label, (seed, label, index), frames, size, difficulty=difficulty)
            video = video.astype(np.float32) / 255
            g = video.mean(axis=(1, 2))
            a = np.stack([v[y0:y1, x0:x1].mean(axis=(0, 1)) for v, (x0, y0, x1, y1) in zip(video, boxes)])
            whole.append((g - g[0]).ravel())
            actor.append((a - a[0]).ravel())
            labels.append(label)
    return np.array(whole), np.array(actor), np.array(labels)


def _ridge_accuracy(train_x, train_y, test_x, test_y, ridge: float = 1e-3) -> float:
    """Top-1 (%) of a one-vs-all ridge regression on standardised features."""
    mean, sd = train_x.mean(0), train_x.std(0) + 1e-8
    design = np.c_[(train_x - mean) / sd, np.ones(len(train_x))]
    weights = np.linalg.solve(design.T @ design + ridge * len(design) * np.eye(design.shape[1]),
                              design.T @ np.eye(len(synthetic.CLASSES))[train_y])
    predicted = (np.c_[(test_x - mean) / sd, np.ones(len(test_x))] @ weights).argmax(1)
    return 100.0 * float((predicted == test_y).mean())


def pooling_probe(difficulty: float, train: int = 60, test: int = 40, frames: int = 16, size: int = 112,
                  seed: int = 0) -> dict:
    """How much of the class a difficulty leaves to global pooling, without training a network:
    test top-1 (%) of a linear probe on the mean colour over time of the whole frame ("global")
    and of the actor's box ("actor"), on `train` / `test` videos per class of all 8 classes."""
    tr_whole, tr_actor, tr_y = _pooled_colours(difficulty, train, 0, frames, size, seed)
    te_whole, te_actor, te_y = _pooled_colours(difficulty, test, train, frames, size, seed)
    return {"difficulty": difficulty, "global": _ridge_accuracy(tr_whole, tr_y, te_whole, te_y),
            "actor": _ridge_accuracy(tr_actor, tr_y, te_actor, te_y), "test_videos": len(te_y)}


def difficulty_chart(table: pd.DataFrame, path=None, converged: float = 90.0):
    """Test top-1 against the dataset's difficulty, one line per configuration, with the 95 %
    t-intervals over seeds of difficulty_table (no bar below two seeds). A point
    with a seed whose final-epoch train top-1 is below `converged` (the synthetic preset's
    criterion) is drawn open: it measures an unfinished run, not what the configuration reaches."""
    fig = Figure(figsize=(6, 3.8))
    ax = fig.subplots()
    configs = list(dict.fromkeys(table["configuration"]))
    open_points = False
    for i, (config, rows) in enumerate(table.groupby("configuration", sort=False)):
        shift = (i - (len(configs) - 1) / 2) * 0.015 * max(1.0, float(np.ptp(table["difficulty"])))   # bars apart
        x = rows["difficulty"] + shift
        bars = ax.errorbar(x, rows["top1"], yerr=[rows["top1"] - rows["low"], rows["high"] - rows["top1"]],
                           marker="o", capsize=3, label=config)
        short = rows["last-epoch train top-1 (min)"] < converged
        if short.any():
            open_points = True
            ax.scatter(x[short], rows["top1"][short], s=40, facecolors="white", zorder=3,
                       edgecolors=bars.lines[0].get_color())
    ax.set(xlabel="difficulty (0: the original synthetic set)", ylabel="test top-1 (%), 95 % t-interval",
           ylim=(0, 100), xticks=sorted(table["difficulty"].unique()))
    if open_points:
        ax.set_title(f"open: a seed below {converged:g} % final-epoch train top-1 (not converged)", fontsize=8)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m studies.difficulty.sweep",
                                     description="the sweep's table (and figure) over the runs finished so far; trains nothing")
    parser.add_argument("--preset", default="synthetic")
    parser.add_argument("--results", default="results", help="the results folder whose runs/ to read")
    parser.add_argument("--difficulties", type=float, nargs="+", default=[0, 0.5, 1, 2])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--configs", nargs="+", default=list(SWEEP_CONFIGS), choices=list(ABLATIONS), metavar="CONFIG",
                        help=f"ablation rows to read (default: {', '.join(SWEEP_CONFIGS)}; any of {', '.join(ABLATIONS)})")
    parser.add_argument("--reference", default="GP only", metavar="CONFIG",
                        help="the row every paired difference is taken to (one of --configs; default: GP only)")
    parser.add_argument("--figure", default=None, metavar="PNG",
                        help="also draw the table as the study's figure (difficulty_chart) to this file")
    args = parser.parse_args(argv)
    if args.reference not in args.configs:
        parser.error(f"--reference {args.reference!r} is not among --configs: add it there")
    runs = finished_sweep(args.difficulties, args.seeds, args.preset, args.results, args.data_root, args.configs)
    table = difficulty_table(runs, reference=args.reference)
    print(to_markdown(table[text_columns(args.reference)]))
    missing = runs[runs["status"] != "done"]
    print(f"\n{len(runs) - len(missing)} of {len(runs)} runs finished; paired 95 % t-intervals over the seeds both "
          "finished.")
    for error in missing["error"].head(5):
        print(f"  {error}")
    if args.figure:
        difficulty_chart(table, path=args.figure)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
