"""Do two reproductions make the same calls? The ablation of one install against another's.

Seeded CPU runs repeat bit for bit only on the same machine and software: another CPU, or
the same CPU taking other kernels, gives other digits. What must carry over is the table's
calls (better / worse / no difference by the paired interval). This compares two results
folders made by `attnet reproduce` and writes, per configuration, both means, both paired
differences and both calls:

    python -m attnet.replicate results results/replicate --preset synthetic

With --causes, the same for 08's experiments (attention_causes_runs_<preset>.csv): per
experiment and per stream, the paired difference to the full model in mass in the box and in
the pointing game, and both calls.

Each folder's machine is read from its `machine_<preset>.json`, written by a reproduce call that
runs 03_ablation: the machine of the ablation's runs, which both comparisons rest on.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import pandas as pd

from attnet.engine import runtime

# What changes the kernels a CPU run takes: the library versions and the instruction sets they
# may use (`ATEN_CPU_CAPABILITY` and `ONEDNN_MAX_CPU_ISA` cap them, as an older CPU would).
KERNEL_ENV = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "OMP_NUM_THREADS")


def describe_machine(cpuinfo: list[str] | None = None) -> dict:
    """The facts that decide a CPU run's digits: the CPU (runtime.cpu_facts: name, family, model
    number, the instruction sets that choose kernels), cores, library versions, kernel caps."""
    import numpy
    import torch
    return {**runtime.cpu_facts(cpuinfo), "cores": os.cpu_count(), "machine": platform.node(),
            "python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__,
            "aten_capability": torch.backends.cpu.get_cpu_capability(),
            **{k.lower(): os.environ[k] for k in KERNEL_ENV if k in os.environ}}


def write_machine(results: str | Path, preset: str) -> Path:
    from attnet.engine.record import write_text
    path = Path(results) / f"machine_{preset}.json"
    write_text(path, json.dumps(describe_machine(), indent=1) + "\n")
    return path


def machine_text(info: dict) -> str:
    caps = ", ".join(f"{k.upper()}={info[k.lower()]}" for k in KERNEL_ENV if k.lower() in info)
    isa = f", {'/'.join(info['isa']) or 'no AVX'}" if "isa" in info else ""
    return (f"{runtime.cpu_label(info)}{isa}, {info.get('cores', '?')} cores, torch {info.get('torch', '?')}, "
            f"ATen kernels {info.get('aten_capability', '?')}" + (f", {caps}" if caps else ""))


def load_runs_table(results: str | Path, preset: str, table: str = "ablation") -> pd.DataFrame:
    """The per-run table of 03 (`ablation`) or 08 (`attention_causes`) in a results folder."""
    path = Path(results) / "tables" / f"{table}_runs_{preset}.csv"
    notebook = {"ablation": "03_ablation", "attention_causes": "08_attention_causes"}[table]
    if not path.is_file():
        raise SystemExit(f"{path}: no {table.replace('_', ' ')} runs; make them with `attnet reproduce --preset "
                         f"{preset} --only {notebook} --results {results}`")
    return pd.read_csv(path)


def compare_calls(runs_a: pd.DataFrame, runs_b: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Per configuration of A's ablation (in A's order): each side's mean with its interval, its
    paired difference to the full model and its call, and whether the calls agree."""
    from attnet.reproduce import ablation_table
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


def compare_causes(runs_a: pd.DataFrame, runs_b: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Per experiment of A's causes table (in A's order) and per stream and measure (mass in the
    box, pointing): each side's paired difference to the full model and its call, and whether
    the calls agree."""
    from attnet import stats
    from attnet.causes import MEASURES, STREAMS
    from attnet.reproduce import REFERENCE
    diffs = {(side, s, key): stats.paired_differences(runs, REFERENCE, f"{s}.{key}", level=level).set_index("config")
             for side, runs in (("A", runs_a), ("B", runs_b)) for s in STREAMS for key, _, _ in MEASURES}
    rows = []
    for name in dict.fromkeys(runs_a["config"]):
        if name == REFERENCE:
            continue
        for s in STREAMS:
            for key, _, short in MEASURES:
                row = {"experiment": name, "measure": f"{s.upper()} {short}"}
                for side in ("A", "B"):
                    table = diffs[side, s, key]
                    found = name in table.index and table.loc[name, "pairs"] > 0
                    row[f"Δ {side}"] = stats.difference_text(table.loc[name]) if found else ""
                    row[f"call {side}"] = table.loc[name, "call"] if found else "missing"
                row["same call"] = "yes" if row["call A"] == row["call B"] else "NO"
                rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m attnet.replicate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", help="results folder of reproduction A (the committed one: results)")
    parser.add_argument("b", help="results folder of reproduction B")
    parser.add_argument("--preset", default="synthetic")
    parser.add_argument("--causes", action="store_true",
                        help="compare 08's attention-cause experiments instead of 03's ablation")
    parser.add_argument("--out", default=None,
                        help="table stem (default: <a>/tables/replication_<preset>, replication_causes_<preset> with --causes)")
    args = parser.parse_args(argv)
    from attnet.reproduce import write_table
    table_name, compare = ("attention_causes", compare_causes) if args.causes else ("ablation", compare_calls)
    table = compare(load_runs_table(args.a, args.preset, table_name), load_runs_table(args.b, args.preset, table_name))
    machines = []
    for label, folder in (("A", args.a), ("B", args.b)):
        path = Path(folder) / f"machine_{args.preset}.json"
        info = json.loads(path.read_text()) if path.is_file() else {}
        machines.append(f"{label} = `{folder}`: {machine_text(info) if info else 'machine not recorded'}.")
    same = (table["same call"] == "yes").sum()
    note = (f"{same} of {len(table)} calls agree. " + " ".join(machines) +
            f" Calls: the paired 95 % t-interval of each {'experiment' if args.causes else 'configuration'} minus "
            "the full model, seed by seed; better / worse only where it excludes 0. Made by "
            f"`python -m attnet.replicate {args.a} {args.b} --preset {args.preset}"
            + (" --causes" if args.causes else "") + (f" --out {args.out}" if args.out else "") + "`.")
    stem = f"replication_causes_{args.preset}" if args.causes else f"replication_{args.preset}"
    out = Path(args.out) if args.out else Path(args.a) / "tables" / stem
    write_table(table, out, note=note)
    print(f"{same}/{len(table)} calls agree; wrote {out}.md")


if __name__ == "__main__":
    main()
