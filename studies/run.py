"""Run a study's notebook with papermill, its results inside the study's folder."""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from attnet.reproduce import execute

ROOT = Path(__file__).resolve().parents[1]


def run_study(notebook: Path, argv: list[str] | None = None) -> None:
    """Execute `notebook` (cwd: the repository root) with results_dir <study>/results and the
    preset's epochs; --param name=value passes any other notebook parameter (YAML values)."""
    study = notebook.parent
    parser = argparse.ArgumentParser(prog=f"python -m studies.{study.name}", description=__doc__)
    parser.add_argument("--preset", default="synthetic")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    params = {"preset": args.preset, "data_root": args.data_root, "seeds": args.seeds, "jobs": args.jobs,
              "results_dir": str(study.relative_to(ROOT) / "results"), "resume": True, "epochs": None}
    for text in args.param:
        name, sep, value = text.partition("=")
        if not sep:
            parser.error(f"--param {text!r}: give NAME=VALUE (VALUE in YAML, e.g. 'difficulties=[0, 1]')")
        params[name] = yaml.safe_load(value)
    output = study / "results" / "notebooks" / notebook.name
    execute(notebook, output, params, ROOT)
    print(f"executed notebook: {output}")
