"""Tables of results over seeds: the one paired-interval table every results table is built on,
and GitHub-markdown / CSV output."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from attnet import stats


def paired_table(runs: pd.DataFrame, reference: str, value: str = "test.top1", level: float = 0.95,
                 group: str = "config") -> pd.DataFrame:
    """Per `group` of `runs` (one row per run: group, seed, status, value), in order of first
    appearance: finished seeds of all ("seeds"), the mean of `value` with its Student t-interval
    ("mean", "low", "high", "text"), and the paired difference to `reference`, seed by seed over
    the seeds both finished ("diff", "diff_low", "diff_high", "Δ") with its call: better / worse
    only where the interval excludes 0, "reference" on the reference's row, "" where the
    reference finished no seed or the group none."""
    done = runs[runs["status"] == "done"] if "status" in runs else runs
    diffs = None
    if (done[group] == reference).any():
        diffs = stats.paired_differences(runs, reference, value, group=group, level=level).set_index(group)
    rows = []
    for name, of in runs.groupby(group, sort=False):
        ok = done[done[group] == name]
        interval = stats.t_interval(ok[value] if value in ok else [], level)
        row = {group: name, "seeds": f"{len(ok)}/{len(of)}", "mean": interval.mean, "low": interval.low,
               "high": interval.high, "text": stats.mean_text(interval), "diff": float("nan"),
               "diff_low": float("nan"), "diff_high": float("nan"), "Δ": "", "call": ""}
        if diffs is not None and name == reference:
            row["call"] = "reference"
        elif diffs is not None and name in diffs.index:
            d = diffs.loc[name]
            row |= {"diff": d["diff"], "diff_low": d["low"], "diff_high": d["high"],
                    "Δ": stats.difference_text(d), "call": d["call"]}
        rows.append(row)
    return pd.DataFrame(rows).set_index(group, drop=False)


def paper_vs_reproduced(paper: pd.DataFrame, ablation_csv: str | Path, preset: str) -> pd.DataFrame:
    """The paper's and its peers' numbers (results/paper/state_of_the_art.csv: quoted where the
    top-1 is given, else its note says what to fill in) above this kit's ablation rows on `preset`
    (its ablation table's CSV, where it exists): method, dataset, pretraining, top-1, status, source."""
    rows = [{"method": p["method"], "dataset": p["dataset"], "pretraining": p["pretraining"], "top-1": p["top1"],
             "status": "quoted" if p["top1"] != "" else p["note"], "source": p["source"]} for _, p in paper.iterrows()]
    if Path(ablation_csv).is_file():
        ours = pd.read_csv(ablation_csv, keep_default_na=False)
        rows += [{"method": f"attnet: {r['configuration']}", "dataset": preset, "pretraining": "", "top-1": r["top-1"],
                  "status": "reproduced here", "source": str(ablation_csv)} for _, r in ours.iterrows()]
    return pd.DataFrame(rows)


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub table (pandas' to_markdown needs the optional tabulate package)."""
    cells = [[str(v) if pd.notna(v) else "" for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    return "\n".join(lines + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells]) + "\n"


def write_table(frame: pd.DataFrame, path_stem: str | Path, note: str = "") -> None:
    """<stem>.csv and <stem>.md (with an optional note above the table, and frame.attrs["note"] under it)."""
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(stem.with_suffix(".csv"), index=False)
    under = "\n" + frame.attrs["note"].strip() + "\n" if frame.attrs.get("note") else ""
    stem.with_suffix(".md").write_text((note.strip() + "\n\n" if note else "") + to_markdown(frame) + under)
