"""The paper's ablation: one spec of its rows, the runner that trains them over paired seeds, and its table.

An ablation row is the full model (ModelConfig's defaults, written once there) with some of
SPEC_KEYS changed; `amp` sets optim.amp against the preset's. Rows train through `fit` in a pool
of worker processes; each run's name is config.run_name of its model settings and seed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing
import os
import time
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pandas as pd

from attnet import stats
from attnet.config import Config, ModelConfig, load_config, run_name
from attnet.engine import fit, record
from attnet.experiments import notebook_param, run_overrides
from attnet.tables import paired_table

# `attnet reproduce` names a file here; the runner (inside the 03 notebook's kernel) appends one
# JSON line per event to it, and reproduce draws them as a progress bar in its own terminal.
PROGRESS_ENV = "ATTNET_PROGRESS_FILE"

# The paper's ablations (docs/METHOD.md): stream subsets with and without the fusion layer, GA
# regularization, and the temporal model. Names are the rows of the ablation table.
ABLATIONS = {
    "GP only": dict(streams=["gp"]),
    "SA only": dict(streams=["sa"], fusion_layer=False),
    "LA only": dict(streams=["la"], fusion_layer=False),
    "SA + GP (fusion layer)": dict(streams=["sa"], fusion_layer=True),
    "LA + GP (fusion layer)": dict(streams=["la"], fusion_layer=True),
    "full model": dict(),
    "full model, no GA": dict(ga_reg=False),
    "full model, LSTM": dict(temporal="lstm"),
    "full model, GRU": dict(temporal="gru"),
    "full model, mean pooling": dict(temporal="mean"),
    # controls: the GA hinge with GP's probability as a fixed reference, and attention weights
    # from the actor's box (what attending to the actor is worth)
    "full model, GA reference detached": dict(ga_detach_gp=True),
    "oracle + GP (fusion layer)": dict(streams=["gp", "oracle"]),
    # the precision check: the preset's autocast (bf16 on the CPU presets) against float32, paired
    "full model, fp32": dict(amp="off"),
}
REFERENCE = "full model"     # the row every other is compared with, seed by seed
SPEC_KEYS = ("streams", "fusion_layer", "ga_reg", "ga_detach_gp", "temporal", "amp")   # what a row may set


def check_ablations(configs: dict[str, dict]) -> dict[str, dict]:
    """Reject, before any run starts, a configuration that is not a mapping of SPEC_KEYS
    (a misspelt key would otherwise be dropped and the full model trained under its name)."""
    for name, spec in configs.items():
        if not isinstance(spec, dict):
            raise ValueError(f"ablation {name!r}: expected a mapping of {', '.join(SPEC_KEYS)}, got {spec!r}")
        unknown = sorted(set(spec) - set(SPEC_KEYS))
        if unknown:
            raise ValueError(f"ablation {name!r}: unknown key(s) {', '.join(unknown)}; an ablation sets only "
                             f"{', '.join(SPEC_KEYS)}")
    return configs


def spec_model(spec: dict) -> ModelConfig:
    """The model settings of a row: the full model's (ModelConfig's defaults) with the row's changes."""
    return dataclasses.replace(ModelConfig(), **{k: v for k, v in spec.items() if k != "amp"})


def ablation_run_name(preset: str, spec: dict, seed: int) -> str:
    """The run name of one ablation row and seed (the notebook is handed it, so the two agree)."""
    return run_name(Path(preset).stem, spec_model(spec), seed, spec.get("amp"))


def spec_config(preset: str, spec: dict, seed: int = 0, results_dir: str = "results/smoke", resume: bool = True,
                data_root: str | None = None, epochs: int | None = None, threads: int | None = None,
                device: str = "auto", run_name: str | None = None) -> Config:
    """The config train_config trains: also what a finished run of it must have been trained with."""
    model = spec_model(spec)
    overrides = run_overrides(results_dir, resume, data_root) + [
        f"model.{k}={json.dumps(getattr(model, k))}" for k in SPEC_KEYS if k != "amp"] + [
        f"run.seed={seed}", f"run.device={device}"]
    overrides += [f"optim.epochs={epochs}"] if epochs else []
    overrides += [f"optim.amp={spec['amp']}"] if spec.get("amp") else []
    overrides += [f"run.name={run_name}"] if run_name else []
    overrides += [f"run.threads={threads}"] if threads else []
    return load_config(preset, overrides)


def train_config(preset: str, spec: dict, seed: int = 0, results_dir: str = "results/smoke", resume: bool = True,
                 data_root: str | None = None, epochs: int | None = None, threads: int | None = None,
                 device: str = "auto", run_name: str | None = None) -> tuple[Path, dict]:
    """Train and test one configuration (an ablation row) with one seed; (run directory, its
    final.json). What notebook 02 runs, and what every run of run_ablation's pool calls."""
    run_dir = fit(spec_config(preset, spec, seed, results_dir, resume, data_root, epochs, threads, device, run_name))
    return run_dir, json.loads((run_dir / "final.json").read_text())


def choose_ablations(configs, extra_configs=None, preset: str | None = None) -> dict[str, dict]:
    """The notebook's `configs` ("all" or names of ABLATIONS) plus `extra_configs` ({name: spec}),
    as given in the notebook or as papermill -p strings, checked before any run starts. "all" on
    a dataset without actor boxes (anything but synthetic) leaves out the oracle control."""
    if configs == "all":
        boxes = preset is None or load_config(preset).data.name == "synthetic"
        names = [n for n, spec in ABLATIONS.items() if boxes or "oracle" not in spec.get("streams", ())]
    else:
        names = notebook_param("configs", configs, list)
    unknown = [n for n in names if n not in ABLATIONS]
    if unknown:
        raise ValueError(f"configs: unknown ablation(s) {', '.join(map(repr, unknown))}; choose from "
                         f"{', '.join(map(repr, ABLATIONS))}, or \"all\", or add them to extra_configs")
    chosen = {n: ABLATIONS[n] for n in names}
    chosen.update(notebook_param("extra_configs", extra_configs or {}, dict))
    return check_ablations(chosen)


def _pool_threads(threads: int) -> None:
    """Worker initializer: this worker's share of the CPU cores."""
    import torch
    torch.set_num_threads(threads)


def _train_logged(log: Path, append: bool, *args, **kwargs) -> tuple[Path | None, float, str]:
    """train_config in a pool worker: (run directory or None, seconds, one-line error
    or ""). Its output (epoch lines, warnings, a failure's traceback) goes to `log`, not to the
    terminal of `attnet reproduce`: appended when the run goes on from an earlier try, else
    written afresh (a retrained run's log holds no earlier reproduction's output)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    tic = time.perf_counter()
    with open(log, "a" if append else "w") as out, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            return train_config(*args, **kwargs)[0], time.perf_counter() - tic, ""
        except Exception as err:
            traceback.print_exc()
            return None, time.perf_counter() - tic, _last_line(err)


def run_ablation(configs: dict[str, dict], seeds, preset: str, data_root: str | None, results_dir: str,
                 resume: bool = True, epochs: int | None = None, jobs: int = 1) -> pd.DataFrame:
    """Train every configuration x seed with train_config (what notebook 02
    runs); a failure is recorded (with its one-line error) and the others go on. One row per run,
    with its test metrics, in table order. Each run's output goes to results_dir/logs/ablation/.

    The runs go through a pool of `jobs` worker processes started once (no interpreter, imports
    or Jupyter kernel per run), each with cores // jobs torch threads: on 2 CPU cores two 1-thread
    runs finish sooner than one 2-thread run after another (small convs scale poorly over
    threads; `python -m attnet.bench model --threads 1` prints it). The workers are spawned, so
    they import the caller's main module: a script calls run_ablation under
    `if __name__ == "__main__":` (notebooks need nothing)."""
    check_ablations(configs)
    jobs = max(1, jobs)
    threads = max(1, (os.cpu_count() or 1) // jobs)
    tasks = [(config, spec, seed) for config, spec in configs.items() for seed in seeds]
    report_progress({"event": "start", "total": len(tasks)})
    rows: list[dict | None] = [None] * len(tasks)
    pending, tries = list(range(len(tasks))), [0] * len(tasks)
    # A worker killed (OOM, signal) breaks the pool, and every run in it stops. They go again in a
    # fresh pool, resuming from their last checkpoint, up to twice: a run stopped before its first
    # checkpoint by another worker's death has made no progress, and its second try may die too.
    while pending:
        lost = []
        with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_pool_threads, initargs=(threads,)) as pool:
            futures = {}
            for i in pending:
                config, spec, seed = tasks[i]
                name = ablation_run_name(preset, spec, seed)
                log = Path(results_dir) / "logs" / "ablation" / f"{name}.log"
                resumes = resume or tries[i] > 0
                append = resumes and record.has_run(Path(results_dir) / "runs" / name)   # what fit resumes
                futures[pool.submit(_train_logged, log, append, preset, spec, seed, results_dir=results_dir,
                                    resume=resumes, data_root=data_root, epochs=epochs,
                                    threads=threads if jobs > 1 else None, run_name=name)] = i
                tries[i] += 1
            for future in as_completed(futures):
                i = futures[future]
                try:
                    run_dir, seconds, error = future.result()
                except BrokenProcessPool as err:
                    if tries[i] < 3:
                        lost.append(i)
                        continue
                    run_dir, seconds, error = None, float("nan"), _last_line(err)
                rows[i] = _ablation_row(tasks[i], preset, run_dir, seconds, error)
        pending = sorted(lost)
    return pd.DataFrame(rows)


def run_row(task: tuple, preset: str, run_dir: Path | None, seconds: float, error: str,
            status: str = "failed") -> dict:
    """One run's row of an ablation table: its test metrics and last-epoch train top-1, or, with
    `error`, that `status` and the error."""
    config, spec, seed = task
    row = {"config": config, "seed": seed, "run": ablation_run_name(preset, spec, seed), "status": "done",
           "error": "", "seconds": seconds}
    if error:
        return row | {"status": status, "error": error}
    final = json.loads((run_dir / "final.json").read_text())
    row |= {f"test.{k}": v for k, v in final["test"].items() if k != "confusion"}
    row["selection"] = final["config"].get("selection", "val")
    row["train.top1"] = pd.read_csv(run_dir / "metrics.csv")["train_top1"].iloc[-1]   # convergence
    return row


def _ablation_row(task: tuple, preset: str, run_dir: Path | None, seconds: float, error: str) -> dict:
    """One run's row (its test metrics, or its error), printed and reported as it comes."""
    config, spec, seed = task
    row = run_row(task, preset, run_dir, seconds, error)
    result = f"top1 {row['test.top1']:.1f}" if row["status"] == "done" else row["error"]
    print(f"  {config:28s} seed {seed}: {row['status']} {result}", flush=True)
    report_progress({"event": "run", "run": f"{config}, seed {seed}", "status": row["status"], "result": result})
    return row


def report_progress(event: dict) -> None:
    """Append one event for `attnet reproduce` to draw, when it asked for them (PROGRESS_ENV)."""
    path = os.environ.get(PROGRESS_ENV)
    if path:
        with open(path, "a") as f:          # one short append per event: whole lines, also from parallel runs
            f.write(json.dumps(event) + "\n")


def _last_line(err: Exception) -> str:
    evalue = getattr(err, "evalue", None)
    text = f"{getattr(err, 'ename', type(err).__name__)}: {evalue or err}"
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(err).__name__


def ablation_table(runs: pd.DataFrame, reference: str = REFERENCE, level: float = 0.95) -> pd.DataFrame:
    """Per configuration: the test top-1 mean with its t-interval over seeds, the per-stream
    top-1 means, the paired difference to `reference` (seed by seed over the seeds both
    finished) with its t-interval and call, and failures with their error. The method note
    (ablation_note) rides along in table.attrs["note"]; write_table prints it under the table."""
    streams = [c[len("test."):-len("_top1")] for c in runs.columns if c.startswith("test.") and c.endswith("_top1")]
    streams = sorted(streams, key=lambda s: (["gp", "sa", "la"] + [s]).index(s))    # the paper's order first
    paired = paired_table(runs, reference, "test.top1", level)
    out = []
    for config, group in runs.groupby("config", sort=False):
        ok = group[group["status"] == "done"]
        p = paired.loc[config]
        row = {"configuration": config, "seeds": p["seeds"], "top-1": p["text"]}
        for s in streams:
            values = ok[f"test.{s}_top1"].dropna()
            row[s.upper()] = f"{values.mean():.1f}" if len(values) else ""
        train = ok["train.top1"].dropna() if "train.top1" in ok else pd.Series(dtype=float)
        row["last-epoch train top-1 (min)"] = f"{train.min():.1f}" if len(train) else ""
        row[f"Δ vs {reference}"], row["call"] = p["Δ"], p["call"]
        failed = group[group["status"] == "failed"]
        row["status"] = "done" if failed.empty else f"failed: {failed['error'].iloc[0]}"
        out.append(row)
    table = pd.DataFrame(out)
    table.attrs["note"] = ablation_note(runs, reference, level)
    return table


def ablation_note(runs: pd.DataFrame, reference: str = REFERENCE, level: float = 0.95) -> str:
    """The method under the ablation table: interval, pairing, seeds, test-set size and its binomial error."""
    done = runs[runs["status"] == "done"]
    seeds = sorted(done["seed"].unique().tolist()) if len(done) else []
    pct = f"{100 * level:g} %"
    text = (f"Test top-1 (%): mean over seeds {seeds} with its {pct} Student t-interval [low, high]; per-stream "
            f"columns: means. Δ: the paired difference to the {reference}, seed by seed over the seeds both "
            f"finished, with its {pct} t-interval; the call is better / worse only where that interval excludes 0 "
            f"(no difference otherwise; n < 2 without an interval). Last-epoch train top-1 (min): the lowest "
            f"final-epoch training accuracy over the seeds, to read convergence.")
    on_test = done["selection"].eq("test").sum() if "selection" in done else 0
    if on_test:
        text += (f" {on_test} of {len(done)} runs chose their checkpoint on the test set (data.select_on_test, the "
                 f"authors' protocol): their top-1 is selected on the test set and overstates held-out accuracy.")
    elif "selection" in done and done["selection"].eq("last epoch").any():
        text += " Runs without a validation set report their last epoch."
    videos = done["test.num_videos"].dropna() if "test.num_videos" in done else pd.Series(dtype=float)
    if len(videos):
        n = int(videos.max())
        ref = done.loc[done["config"] == reference, "test.top1"]
        top1 = float(ref.mean()) if len(ref) else 50.0
        text += (f" Test set: {n} videos; the binomial standard error of one run's top-1 is "
                 f"{stats.binomial_se(top1, n):.1f} points at {top1:.0f} % ({stats.binomial_se(50.0, n):.1f} at 50 %; "
                 f"{stats.videos_for_se(50.0, 2.0)} videos for 2 points).")
    return text
