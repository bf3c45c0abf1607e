"""Do two reproductions make the same calls? The ablation of one install against another's.

Seeded CPU runs repeat bit for bit only on the same machine and software: another CPU, or
the same CPU taking other kernels, gives other digits. What must carry over is the table's
calls (better / worse / no difference by the paired interval). This compares two results
folders made by `attnet reproduce` and writes, per configuration, both means, both paired
differences and both calls:

    python -m attnet.replicate results my-results --preset synthetic

Each folder's machine is read from its `machine_<preset>.json` (attnet.machine), written by a
reproduce call that runs 03_ablation: the machine of the ablation's runs.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from attnet.ablation import ablation_table, runs_table
from attnet.machine import machine_text
from attnet.tables import write_table


def load_runs_table(results: str | Path, preset: str) -> pd.DataFrame:
    """The per-run table of 03's ablation in a results folder."""
    path = runs_table(results, preset)
    if not path.is_file():
        raise SystemExit(f"{path}: no ablation runs; make them with `attnet reproduce --preset {preset} "
                         f"--only 03_ablation --results {results}`")
    return pd.read_csv(path)


def compare_calls(runs_a: pd.DataFrame, runs_b: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Per configuration of A's ablation (in A's order): each side's mean with its interval, its
    paired difference to the full model and its call, and whether the calls agree."""
    a, b = ablation_table(runs_a, level=level), ablation_table(runs_b, level=level)
    b = b.set_index("configuration")
    rows = []
    for _, row in a.iterrows():
        name = row["configuration"]
        other = b.loc[name] if name in b.index else None
        call_b = other["call"] if other is not None else "missing"
        rows.append({"configuration": name, "top-1 A": row["top-1"],
                     "top-1 B": other["top-1"] if other is not None else "",
                     "Δ A": row["Δ vs full model"], "Δ B": other["Δ vs full model"] if other is not None else "",
                     "call A": row["call"], "call B": call_b,
                     "same call": "yes" if row["call"] == call_b else "NO"})
    return pd.DataFrame(rows)


def write_replication(a: str | Path, b: str | Path, preset: str, out: str | Path | None = None,
                      command: str | None = None) -> tuple[int, int, Path]:
    """compare_calls of results folders `a` and `b`, written with both machines and the command
    that made it under `out` (default: <a>/tables/replication_<preset>); (calls that agree, calls, .md path)."""
    table = compare_calls(load_runs_table(a, preset), load_runs_table(b, preset))
    machines = []
    for label, folder in (("A", a), ("B", b)):
        path = Path(folder) / f"machine_{preset}.json"
        info = json.loads(path.read_text()) if path.is_file() else {}
        machines.append(f"{label} = `{folder}`: {machine_text(info) if info else 'machine not recorded'}.")
    same = int((table["same call"] == "yes").sum())
    command = command or f"python -m attnet.replicate {a} {b} --preset {preset}" + (f" --out {out}" if out else "")
    note = (f"{same} of {len(table)} calls agree. " + " ".join(machines) +
            " Calls: the paired 95 % t-interval of each configuration minus "
            f"the full model, seed by seed; better / worse only where it excludes 0. Made by `{command}`.")
    out = Path(out) if out else Path(a) / "tables" / f"replication_{preset}"
    write_table(table, out, note=note)
    return same, len(table), out.with_suffix(".md")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m attnet.replicate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="results folder of reproduction A (the committed one: results)")
    parser.add_argument("b", help="results folder of reproduction B")
    parser.add_argument("--preset", default="synthetic")
    parser.add_argument("--out", default=None,
                        help="table stem (default: <a>/tables/replication_<preset>)")
    args = parser.parse_args(argv)
    same, total, path = write_replication(args.a, args.b, args.preset, args.out)
    print(f"{same}/{total} calls agree; wrote {path}")


if __name__ == "__main__":
    main()
