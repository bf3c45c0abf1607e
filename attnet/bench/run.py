"""Where one ablation run's time goes: start-up, datasets and decoding, each epoch (data,
forward, backward + optimizer), validation, test and writing.

    python -m attnet.bench run --preset synthetic --epochs 2 [--threads 1] [--kernel] [override ...]

It runs the real `attnet.engine.fit` once (in a temporary run directory) with timers wrapped
around the functions it calls, so the figures are those of a training run, not of a model of
one. `--kernel` adds what a papermill run pays before its first cell: a Jupyter kernel's start.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

KINDS = ("decode", "transform", "forward", "backward+opt", "write")


class Profile:
    """Seconds per (phase, kind): the phase is the fit stage running (build, epoch N, val N,
    test), the kind what was timed inside it; `other` is the phase's time no timer claimed."""

    def __init__(self) -> None:
        self.phase = "setup"
        self.seconds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.order: list[str] = []
        self._inner = 0.0            # time of nested timers, subtracted from their caller

    @contextmanager
    def during(self, phase: str):
        before, self.phase = self.phase, phase
        tic = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase]["total"] += time.perf_counter() - tic
            if phase not in self.order:
                self.order.append(phase)
            self.phase = before

    def wrap(self, owner, name: str, kind: str) -> None:
        """Time every call of owner.name as `kind` of the current phase (minus timers nested in it)."""
        original = getattr(owner, name)

        def timed(*args, **kwargs):
            outer, self._inner = self._inner, 0.0
            tic = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent = time.perf_counter() - tic
                self.seconds[self.phase][kind] += spent - self._inner
                self._inner = outer + spent
        setattr(owner, name, timed)

    def wrap_phase(self, owner, name: str, phase) -> None:
        """Run every call of owner.name as its own phase, named by phase(*args, **kwargs)."""
        original = getattr(owner, name)

        def phased(*args, **kwargs):
            with self.during(phase(*args, **kwargs)):
                return original(*args, **kwargs)
        setattr(owner, name, phased)


def seconds_of(command: list[str]) -> float:
    tic = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - tic


def kernel_start_seconds() -> float:
    """A Jupyter kernel's start, one import of the engine in it, and its shutdown (what every
    papermill execution of a notebook pays on top of the notebook's own work)."""
    from jupyter_client.manager import start_new_kernel
    tic = time.perf_counter()
    manager, client = start_new_kernel(kernel_name="python3")
    try:
        client.execute_interactive("import attnet.engine", timeout=120)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    return time.perf_counter() - tic


def profile_fit(preset: str, overrides: list[str], out_dir: Path) -> tuple[Profile, float]:
    """fit() of the preset once, under the timers; (profile, wall seconds of fit)."""
    import importlib
    from attnet.config import load_config
    from attnet.data import datasets
    from attnet.engine import checkpoint, record, runtime, train
    evaluate = importlib.import_module("attnet.engine.evaluate")   # the module: attnet.engine.evaluate is a function
    from attnet.models import glka

    prof = Profile()
    prof.wrap(datasets.ClipDataset, "_read", "decode")
    prof.wrap(datasets, "cached_frames", "decode")                 # the decoded cache: made once, then mapped
    prof.wrap(datasets.ClipDataset, "uint8_item", "transform")    # what is left of an item once decoded
    prof.wrap(train, "to_device", "transform")                     # the batch's resize, crop, flip, scaling
    prof.wrap(evaluate, "to_device", "transform")
    prof.wrap(glka.GLKANet, "forward", "forward")
    prof.wrap(runtime, "backward_step", "backward+opt")
    prof.wrap(train, "save_atomic", "write")                       # checkpoints
    prof.wrap(train, "write_csv", "write")                         # metrics.csv, scores.csv.gz
    prof.wrap(record, "write_final", "write")
    epochs = iter(range(1, 10**6))
    vals = iter(range(1, 10**6))
    prof.wrap_phase(train, "build_datasets", lambda *a, **k: "build datasets")
    prof.wrap_phase(train, "train_one_epoch", lambda *a, **k: f"epoch {next(epochs)}")
    prof.wrap_phase(train, "predict", lambda *a, desc="eval", **k: "test" if desc == "test" else f"val {next(vals)}")
    cfg = load_config(preset, [f"run.out_dir={out_dir}", "run.overwrite=true", "run.name=bench", *overrides])
    tic = time.perf_counter()
    with prof.during("fit"):
        train.fit(cfg)
    return prof, time.perf_counter() - tic


def table(prof: Profile) -> list[str]:
    cols = ("total",) + KINDS + ("other",)
    lines = [f"{'phase':16s}" + "".join(f"{c:>14s}" for c in cols)]
    for phase in [p for p in prof.order if p != "fit"] + ["fit"]:
        s = prof.seconds[phase]
        claimed = sum(s[c] for c in KINDS)
        cells = [s["total"]] + [s[c] for c in KINDS] + [s["total"] - claimed]
        if phase == "fit":              # the phases' own rows are inside fit: the rest is fit's own work
            claimed = sum(prof.seconds[p]["total"] for p in prof.order if p != "fit") + s["write"]
            cells = [s["total"]] + [""] * (len(KINDS) - 1) + [s["write"], s["total"] - claimed]
        lines.append(f"{phase:16s}" + "".join(f"{c:14.2f}" if c != "" else f"{'':>14s}" for c in cells))
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m attnet.bench run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="synthetic")
    p.add_argument("--epochs", type=int, default=2, help="training epochs of the profiled run")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (an ablation run on 2 cores: 1)")
    p.add_argument("--kernel", action="store_true", help="also time a Jupyter kernel's start (papermill's cost)")
    p.add_argument("overrides", nargs="*", help="dotted config overrides, as `attnet train` takes")
    args = p.parse_args(sys.argv[1:] if argv is None else argv)

    import torch
    python = [sys.executable, "-c"]
    bare = seconds_of(python + ["pass"])
    imports = seconds_of(python + ["import attnet.engine, attnet.experiments"])
    print(f"start: interpreter {bare:.2f} s, + imports of attnet.engine / experiments {imports - bare:.2f} s")
    if args.kernel:
        print(f"start: Jupyter kernel start + import + shutdown {kernel_start_seconds():.2f} s")
    overrides = [f"optim.epochs={args.epochs}", f"run.threads={args.threads}", *args.overrides]
    with tempfile.TemporaryDirectory(prefix="attnet-bench-run-") as tmp:
        prof, wall = profile_fit(args.preset, overrides, Path(tmp))
    print(f"\npreset {args.preset} {' '.join(overrides)}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("seconds per phase; decode = reading video frames (files or the decoded cache), transform = the rest of "
          "an item (sampling, crop draws) and of its batch (resize, crop, flip, float: to_device), "
          "other = loss, metrics, collate, loader\n")
    print("\n".join(table(prof)))
    epochs = [p for p in prof.order if p.startswith("epoch")]
    if epochs:
        per = [prof.seconds[p]["total"] + prof.seconds[p.replace("epoch", "val")]["total"] for p in epochs]
        print(f"\nfit {wall:.1f} s; per epoch (train + val): " + " ".join(f"{s:.1f}" for s in per) + " s")
