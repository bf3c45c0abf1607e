"""Benchmarks that print figures (never assert them): `python -m attnet.bench model|data|gpu|run ...`."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in ("model", "data", "gpu", "run"):
        print("usage: python -m attnet.bench {model,data,gpu,run} [options]  (--help after the name for options)")
        raise SystemExit(2)
    if argv[0] == "model":
        from .model import main as run
    elif argv[0] == "gpu":
        from .gpu import main as run
    elif argv[0] == "run":
        from .run import main as run
    else:
        from .data import main as run
    run(argv[1:])
