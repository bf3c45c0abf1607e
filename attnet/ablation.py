"""The paper's ablation: one spec of its rows, the runner that trains them over paired seeds, and its table.

An ablation row is the full model (ModelConfig's defaults, written once there) with some of
SPEC_KEYS changed; `amp` sets optim.amp against the preset's. Rows train through `fit` in a pool
of worker processes; each run's name is config.run_name of its model settings and seed.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
import traceback
from concurrent.futures import as_completed
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import pandas as pd
import submitit

from attnet import stats
from attnet.config import Config, ModelConfig, load_config, run_name
from attnet.engine import fit, record
from attnet.executors import (EXECUTORS, DevicePool, cpu_share, job_record, job_state, pool_slots, stop_pool,
                              submitit_executor)
from attnet.experiments import notebook_param, run_overrides
from attnet.results import run_final
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
                device: str = "auto", run_name: str | None = None, workers: int | None = None) -> Config:
    """The config train_config trains: also what a finished run of it must have been trained with."""
    model = spec_model(spec)
    overrides = run_overrides(results_dir, resume, data_root, epochs) + [
        f"model.{k}={json.dumps(getattr(model, k))}" for k in SPEC_KEYS if k != "amp"] + [
        f"run.seed={seed}", f"run.device={device}"]
    overrides += [f"optim.amp={spec['amp']}"] if spec.get("amp") else []
    overrides += [f"run.name={run_name}"] if run_name else []
    overrides += [f"run.threads={threads}"] if threads else []
    overrides += [f"data.workers={workers}"] if workers is not None else []
    return load_config(preset, overrides)


def train_config(preset: str, spec: dict, seed: int = 0, results_dir: str = "results/smoke", resume: bool = True,
                 data_root: str | None = None, epochs: int | None = None, threads: int | None = None,
                 device: str = "auto", run_name: str | None = None, workers: int | None = None) -> tuple[Path, dict]:
    """Train and test one configuration (an ablation row) with one seed; (run directory, its
    final.json). What notebook 02 runs, and what every run of run_ablation's pool calls."""
    run_dir = fit(spec_config(preset, spec, seed, results_dir, resume, data_root, epochs, threads, device, run_name,
                              workers))
    return run_dir, run_final(run_dir)


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


class AblationJob(submitit.helpers.Checkpointable):
    """One run as a submitit job: _train_logged, and, when SLURM preempts it or its time runs out,
    the same run submitted again to resume from its last.pt (its log appended to)."""

    def __call__(self, log: Path, append: bool, *args, **kwargs) -> tuple[Path | None, float, str]:
        return _train_logged(log, append, *args, **kwargs)

    def checkpoint(self, log: Path, append: bool, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        return submitit.helpers.DelayedSubmission(self, log, True, *args, **(kwargs | {"resume": True}))


def _train_logged(log: Path, append: bool, *args, **kwargs) -> tuple[Path | None, float, str]:
    """train_config in a pool worker or a job: (run directory or None, seconds, one-line error
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


def settings_error(preset: str, spec: dict, seed: int, results_dir: str, data_root: str | None = None,
                   epochs: int | None = None) -> str:
    """Why the finished run of this row and seed cannot enter its table (record.check_finished's
    message: trained with other settings), or "": the same rule as the run's own fit."""
    cfg = spec_config(preset, spec, seed, results_dir, data_root=data_root, epochs=epochs,
                      run_name=ablation_run_name(preset, spec, seed))
    run_dir = Path(cfg.run.out_dir) / cfg.run_name
    if not (run_dir / "final.json").is_file():
        return ""
    try:
        record.check_finished(run_dir, cfg)
    except ValueError as err:
        return str(err)
    return ""


def run_ablation(configs: dict[str, dict], seeds, preset: str, data_root: str | None, results_dir: str,
                 resume: bool = True, epochs: int | None = None, jobs: int | None = None,
                 executor: str = "pool", slurm: dict | None = None) -> pd.DataFrame:
    """Train every configuration x seed with train_config (what notebook 02
    runs); a failure is recorded (with its one-line error) and the others go on. One row per run,
    with its test metrics, in table order. Each run's output goes to results_dir/logs/ablation/.

    executor "pool" (the default): a pool of worker processes started once (no interpreter,
    imports or Jupyter kernel per run). On GPUs each worker sees one (the preset's
    reproduce.cuda.jobs_per_gpu workers per GPU, GPUs x that many in all unless `jobs` says);
    on a CPU `jobs` workers (default 1). Each gets cores // workers torch threads: on 2 CPU cores
    two 1-thread runs finish sooner than one 2-thread run after another (small convs scale poorly
    over threads; `python -m attnet.bench model --threads 1` prints it), and at most as many loader
    workers. The workers fork from a server that imports attnet once per calling process (its
    first pool takes ~5 s to start, later ones a fraction of a second); they import the caller's
    main module, so a script calls run_ablation under `if __name__ == "__main__":` (notebooks need
    nothing). Ctrl-C stops them and says how many runs finished; the same call continues the
    others from their last.pt.

    "slurm" / "submitit-local": see submit_ablation."""
    check_ablations(configs)
    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r}: choose from {', '.join(EXECUTORS)}")
    tasks = [(config, spec, seed) for config, spec in configs.items() for seed in seeds]
    if executor != "pool":
        return submit_ablation(tasks, preset, data_root, results_dir, resume, epochs, jobs, executor, slurm or {})
    cfg = load_config(preset)
    slots = pool_slots(jobs, cfg.reproduce.cuda.jobs_per_gpu)
    threads = cpu_share(len(slots))
    workers = threads if cfg.data.workers > threads else None     # loader workers beyond the run's cores: fewer
    report_progress({"event": "start", "total": len(tasks)})
    rows: list[dict | None] = [None] * len(tasks)
    pending, tries = list(range(len(tasks))), [0] * len(tasks)
    # A worker killed (OOM, signal) breaks the pool, and every run in it stops. They go again in a
    # fresh pool, resuming from their last checkpoint, up to twice: a run stopped before its first
    # checkpoint by another worker's death has made no progress, and its second try may die too.
    while pending:
        lost = []
        with DevicePool(slots, threads) as pool:
            futures = {}
            try:
                for i in pending:
                    config, spec, seed = tasks[i]
                    name = ablation_run_name(preset, spec, seed)
                    log = Path(results_dir) / "logs" / "ablation" / f"{name}.log"
                    resumes = resume or tries[i] > 0
                    append = resumes and record.has_run(Path(results_dir) / "runs" / name)   # what fit resumes
                    futures[pool.submit(_train_logged, log, append, preset, spec, seed, results_dir=results_dir,
                                        resume=resumes, data_root=data_root, epochs=epochs,
                                        threads=threads if len(slots) > 1 else None, workers=workers,
                                        run_name=name)] = i
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
            except KeyboardInterrupt:
                stop_pool(pool)
                dirs = [Path(results_dir) / "runs" / ablation_run_name(preset, spec, seed) for _, spec, seed in tasks]
                done = sum((d / "final.json").is_file() for d in dirs)
                started = sum(record.has_progress(d) for d in dirs) - done
                print(f"[ablation] stopped: {done} of {len(tasks)} runs finished, {started} stopped (each continues "
                      "from its last.pt); the same call with resume=True continues", flush=True)
                raise
        pending = sorted(lost)
    return pd.DataFrame(rows)


def submit_ablation(tasks: list[tuple], preset: str, data_root: str | None, results_dir: str, resume: bool,
                    epochs: int | None, jobs: int | None, executor: str, slurm: dict) -> pd.DataFrame:
    """The runs as submitit jobs, one per run. "slurm": one job array, submitted and left (partition,
    account, time in minutes, gpus, cpus from `slurm`, else the preset's reproduce.slurm); each job
    is requeued when preempted or out of time and resumes from its last.pt. "submitit-local": the
    same jobs on this machine (`jobs` at a time, each on its GPU slot), waited for. Job ids go to
    results_dir/jobs/; a later call trains no finished run, submits no run whose job is still
    queued or running (its row says which), and submits the rest again (resuming)."""
    cfg = load_config(preset)
    budget = dataclasses.asdict(cfg.reproduce.slurm) | {k: v for k, v in slurm.items() if v is not None}
    budget["cpus"] = budget["cpus"] or cfg.data.workers + 2
    slots = pool_slots(jobs, cfg.reproduce.cuda.jobs_per_gpu)       # submitit-local: as the pool's workers
    threads = budget["cpus"] if executor == "slurm" else cpu_share(len(slots))
    workers = threads if executor != "slurm" and cfg.data.workers > threads else None
    jobs_dir = Path(results_dir) / "jobs"
    report_progress({"event": "start", "total": len(tasks)})
    rows: list[dict | None] = [None] * len(tasks)
    submit = []
    for i, (config, spec, seed) in enumerate(tasks):
        name = ablation_run_name(preset, spec, seed)
        run_dir, state = Path(results_dir) / "runs" / name, job_state(jobs_dir / f"{name}.json")
        if state != "ended":
            rows[i] = _ablation_row(tasks[i], preset, None, float("nan"), f"job {_job_id(jobs_dir, name)}", state)
        elif resume and (run_dir / "final.json").is_file():
            error = settings_error(preset, spec, seed, results_dir, data_root, epochs)
            rows[i] = _ablation_row(tasks[i], preset, None if error else run_dir, float("nan"), error)
        else:
            log = Path(results_dir) / "logs" / "ablation" / f"{name}.log"
            submit.append((i, name, (log, resume and record.has_run(run_dir), preset, spec, seed),
                           dict(results_dir=results_dir, resume=resume, data_root=data_root, epochs=epochs,
                                threads=threads if executor == "slurm" or len(slots) > 1 else None,
                                workers=workers, run_name=name)))
    folder = jobs_dir / "submitit"
    if executor == "slurm" and submit:
        executor_ = submitit_executor("slurm", folder, budget)
        with executor_.batch():
            submitted = [executor_.submit(AblationJob(), *args, **kwargs) for _, _, args, kwargs in submit]
        for (i, name, _, _), job in zip(submit, submitted):
            job_record(jobs_dir / f"{name}.json", "slurm", job)
            rows[i] = _ablation_row(tasks[i], preset, None, float("nan"), f"job {job.job_id}", "queued")
    elif executor != "slurm":
        free, running = list(slots), {}
        while submit or running:
            while submit and free:
                i, name, args, kwargs = submit.pop(0)
                slot = free.pop(0)
                job = submitit_executor("local", folder, budget, slot).submit(AblationJob(), *args, **kwargs)
                job_record(jobs_dir / f"{name}.json", "local", job)
                running[i] = (job, slot)
            time.sleep(0.2)
            for i, (job, slot) in list(running.items()):
                if job.done():
                    del running[i]
                    free.append(slot)
                    run_dir, seconds, error = _job_result(job)
                    rows[i] = _ablation_row(tasks[i], preset, run_dir, seconds, error)
    pending = [row for row in rows if row["status"] in ("queued", "running")]
    if pending:
        print(f"[ablation] {len(pending)} of {len(tasks)} runs queued or running (job ids in {jobs_dir}); the same "
              "call collects them when they have finished", flush=True)
    return pd.DataFrame(rows)


def _job_id(jobs_dir: Path, name: str) -> str:
    return json.loads((jobs_dir / f"{name}.json").read_text())["job_id"]


def _job_result(job) -> tuple[Path | None, float, str]:
    """(run directory or None, seconds, error) of an ended job, also of one that died without its result."""
    try:
        return job.result()
    except Exception as err:          # killed, or out of requeues: what its log says
        return None, float("nan"), _last_line(err)


def runs_table(results: str | Path, preset: str) -> Path:
    """Where 03 writes the ablation's per-run table (one `run_row` a run) in a results folder."""
    return Path(results) / "tables" / f"ablation_runs_{preset}.csv"


def run_row(task: tuple, preset: str, run_dir: Path | None, seconds: float, error: str,
            status: str = "failed") -> dict:
    """One run's row of an ablation table: its test metrics, last-epoch train top-1 and training
    seconds (its record's, also where this call reused it), or, with `error`, that `status`
    ("failed"; "queued" or "running" with its job), the error and the seconds this call spent."""
    config, spec, seed = task
    row = {"config": config, "seed": seed, "run": ablation_run_name(preset, spec, seed), "status": "done",
           "error": "", "seconds": seconds}
    if error:
        return row | {"status": status, "error": error}
    final = run_final(run_dir)
    row |= {f"test.{k}": v for k, v in final["test"].items() if k != "confusion"}
    row["selection"] = final["config"].get("selection", "val")
    row["train.top1"] = pd.read_csv(run_dir / "metrics.csv")["train_top1"].iloc[-1]   # convergence
    row["seconds"] = final.get("wall_time_s", seconds)
    row["precision"] = final.get("precision", "")
    return row


def _ablation_row(task: tuple, preset: str, run_dir: Path | None, seconds: float, error: str,
                  status: str = "failed") -> dict:
    """One run's row (its test metrics, or its error), printed and reported as it comes."""
    config, spec, seed = task
    row = run_row(task, preset, run_dir, seconds, error, status)
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
        pending = group["status"].isin(["queued", "running"]).sum()
        row["status"] = (f"failed: {failed['error'].iloc[0]}" if len(failed) else
                         f"{pending} queued or running" if pending else "done")
        out.append(row)
    table = pd.DataFrame(out)
    table.attrs["note"] = ablation_note(runs, reference, level)
    return table


def precision_note(done: pd.DataFrame, reference: str = REFERENCE) -> str:
    """The precisions the finished runs trained in (optim.amp=auto differs by machine): each with
    its count, and the rows of all but the commonest; a row that sets only optim.amp but trained in
    the reference's precision (auto resolved to fp32 there) is named as comparing it with itself."""
    done = done[done["precision"].fillna("") != ""] if "precision" in done else done.iloc[:0]
    if done.empty:                                 # runs recorded before final.json named it
        return ""
    counts = done["precision"].value_counts()
    parts = [f"{p} ({n} runs)" if i == 0 else
             f"{p} ({n} runs: {', '.join(dict.fromkeys(done.loc[done['precision'] == p, 'config']))})"
             for i, (p, n) in enumerate(counts.items())]
    text = f" Precision: {', '.join(parts)}."
    same = set(done.loc[done["config"] == reference, "precision"])
    for config in dict.fromkeys(done["config"]):
        if set(ABLATIONS.get(config, {})) == {"amp"} and set(done.loc[done["config"] == config, "precision"]) == same:
            text += (f" {config} trained in the {reference}'s precision ({', '.join(sorted(same))}): optim.amp=auto "
                     f"resolved to it where they trained, so that row compares a precision with itself.")
    return text


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
    text += precision_note(done, reference)
    videos = done["test.num_videos"].dropna() if "test.num_videos" in done else pd.Series(dtype=float)
    if len(videos):
        n = int(videos.max())
        ref = done.loc[done["config"] == reference, "test.top1"]
        top1 = float(ref.mean()) if len(ref) else 50.0
        text += (f" Test set: {n} videos; the binomial standard error of one run's top-1 is "
                 f"{stats.binomial_se(top1, n):.1f} points at {top1:.0f} % ({stats.binomial_se(50.0, n):.1f} at 50 %; "
                 f"{stats.videos_for_se(50.0, 2.0)} videos for 2 points).")
    return text
