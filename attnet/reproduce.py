"""`attnet reproduce`: run the notebooks with papermill and collect tables and figures.

    attnet reproduce --preset synthetic                       # the default CPU reproduction
    attnet reproduce --preset hmdb51 --data-root /data/hmdb51 # the paper's experiments, on a GPU
    attnet reproduce --only 03_ablation --resume              # one notebook, finished runs kept
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
import yaml

from attnet.config import CONFIG_DIR, PRESET_PATH, default_run_name, load_config

# `attnet reproduce` names a file here; run_ablation, inside the 03 notebook's kernel, appends one
# JSON line per event to it, and reproduce draws them as a progress bar in its own terminal.
PROGRESS_ENV = "ATTNET_PROGRESS_FILE"

NOTEBOOKS = ("00_quickstart", "01_data", "02_train_eval", "03_ablation", "04_attention", "05_results", "06_transfer")
EXTRAS = ("07_difficulty", "08_attention_causes")     # run only when named: attnet reproduce --only 07_difficulty

# The paper's ablations (docs/METHOD.md): stream subsets with and without the fusion layer, GA
# regularization, and the temporal model. Names are the rows of the ablation table.
ABLATIONS = {
    "GP only": dict(streams=["gp"]),
    "SA only": dict(streams=["sa"], fusion_layer=False),
    "LA only": dict(streams=["la"], fusion_layer=False),
    "SA + GP (fusion layer)": dict(streams=["sa"], fusion_layer=True),
    "LA + GP (fusion layer)": dict(streams=["la"], fusion_layer=True),
    "full model": dict(streams=["gp", "sa", "la"]),
    "full model, no GA": dict(streams=["gp", "sa", "la"], ga_reg=False),
    "full model, LSTM": dict(streams=["gp", "sa", "la"], temporal="lstm"),
    "full model, GRU": dict(streams=["gp", "sa", "la"], temporal="gru"),
    "full model, mean pooling": dict(streams=["gp", "sa", "la"], temporal="mean"),
    # controls: the GA hinge with GP's probability as a fixed reference, and attention weights
    # from the actor's box (what attending to the actor is worth)
    "full model, GA reference detached": dict(streams=["gp", "sa", "la"], ga_detach_gp=True),
    "oracle + GP (fusion layer)": dict(streams=["gp", "oracle"]),
    # the precision check: the preset's autocast (bf16 on the CPU presets) against float32, paired
    "full model, fp32": dict(streams=["gp", "sa", "la"], amp="off"),
}
REFERENCE = "full model"     # the row every other is compared with, seed by seed


SPEC_KEYS = ("streams", "fusion_layer", "ga_reg", "ga_detach_gp", "temporal", "amp")   # what an ablation may set (and its run name shows)


def notebook_param(name: str, value, kind: type):
    """A notebook parameter as `kind` (list or dict): `papermill -p` passes lists and mappings as
    strings, which are read as YAML (so JSON too); a bare string or number is a one-item list."""
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value)
        except yaml.YAMLError:
            raise ValueError(f"parameter {name}: {value!r} is not a valid YAML / JSON {kind.__name__}") from None
    if kind is list and isinstance(value, (str, int, float)):
        value = [value]
    if not isinstance(value, kind):
        raise ValueError(f"parameter {name}: expected a {kind.__name__}, got {value!r}")
    return value


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


def ablation_run_name(preset: str, spec: dict, seed: int) -> str:
    """The run name of one ablation row and seed (the notebook is handed it, so the two agree)."""
    return default_run_name(Path(preset).stem, spec.get("streams", ["gp", "sa", "la"]), spec.get("temporal", "sru"),
                            spec.get("fusion_layer", True), spec.get("ga_reg", True), seed,
                            spec.get("ga_detach_gp", False), spec.get("amp"))


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


def project_root() -> Path:
    """The checkout holding notebooks/ and configs/ (the package is installed editable)."""
    return Path(__file__).resolve().parents[1]


def kernel_manager_class() -> type:
    """Kernels talking over Unix sockets (IPC) where the OS has them: they never leave the machine,
    and ipykernel has no plain-TCP warning to print into the terminal or into the notebooks
    that a notebook runs."""
    import uuid

    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.paths import jupyter_runtime_dir
    from traitlets import default

    class IPCKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self) -> str:
            return "tcp" if os.name == "nt" else "ipc"

        @default("ip")
        def _ip_default(self) -> str:
            """A socket path of this kernel's own: jupyter_client's default ("kernel-ipc" in the
            working directory, when asked before the connection file exists) is shared by
            kernels started at once, which then read each other's messages."""
            if self.transport != "ipc":
                return super()._ip_default()
            Path(jupyter_runtime_dir()).mkdir(parents=True, exist_ok=True)
            return str(Path(jupyter_runtime_dir()) / f"attnet-{uuid.uuid4().hex[:12]}-ipc")

        async def _async_interrupt_kernel(self) -> None:
            """No SIGINT on the way out: jupyter_client interrupts before every shutdown, and a kernel
            caught inside a message handler then logs "KeyboardInterrupt caught in kernel" (and at
            times a traceback) to the terminal, though the notebook has finished."""
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

    return IPCKernelManager


def execute(name: str, output: Path, parameters: dict, cwd: Path | None = None) -> None:
    """Run notebooks/<name>.ipynb with papermill, passing only the parameters it declares."""
    import papermill
    source = project_root() / "notebooks" / f"{name}.ipynb"
    declared = papermill.inspect_notebook(str(source))
    output.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(source), str(output), kernel_name="python3", progress_bar=False,
                               parameters={k: v for k, v in parameters.items() if k in declared},
                               cwd=str(cwd or project_root()), kernel_manager_class=kernel_manager_class())


def _pool_threads(threads: int) -> None:
    """Worker initializer: this worker's share of the CPU cores."""
    import torch
    torch.set_num_threads(threads)


def _train_logged(log: Path, append: bool, *args, **kwargs) -> tuple[Path | None, float, str]:
    """experiments.train_config in a pool worker: (run directory or None, seconds, one-line error
    or ""). Its output (epoch lines, warnings, a failure's traceback) goes to `log`, not to the
    terminal of `attnet reproduce`: appended when the run goes on from an earlier try, else
    written afresh (a retrained run's log holds no earlier reproduction's output)."""
    import contextlib
    import traceback

    from attnet.experiments import train_config
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
    """Train every configuration x seed with `attnet.experiments.train_config` (what notebook 02
    runs); a failure is recorded (with its one-line error) and the others go on. One row per run,
    with its test metrics, in table order. Each run's output goes to results_dir/logs/ablation/.

    The runs go through a pool of `jobs` worker processes started once (no interpreter, imports
    or Jupyter kernel per run), each with cores // jobs torch threads: on 2 CPU cores two 1-thread
    runs finish sooner than one 2-thread run after another (small convs scale poorly over
    threads; `python -m attnet.bench model --threads 1` prints it). The workers are spawned, so
    they import the caller's main module: a script calls run_ablation under
    `if __name__ == "__main__":` (notebooks need nothing)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    from attnet.engine import record
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


class ProgressFollower:
    """Follows the events that report_progress appends to `path` (from another process) and draws
    them as one tqdm bar: runs done of total, elapsed and time left, the last run's result; a
    failed run is written out above the bar as it happens."""

    def __init__(self, path: Path, stream=None, poll: float = 0.5) -> None:
        self.path, self.stream, self.poll = Path(path), stream or sys.stderr, poll
        self.bar = None
        self._offset = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> "ProgressFollower":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.read()                          # events written after the last poll
        if self.bar is not None:
            self.bar.close()

    def _follow(self) -> None:
        while not self._stop.wait(self.poll):
            self.read()

    def read(self) -> None:
        """Draw the complete lines appended since the last read."""
        from tqdm import tqdm
        if not self.path.is_file():
            return
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            chunk = f.read()
        lines = chunk[:chunk.rfind(b"\n") + 1]    # a line still being written waits for the next read
        self._offset += len(lines)
        for line in lines.decode().splitlines():
            event = json.loads(line)
            if event["event"] == "start":
                if self.bar is not None:
                    self.bar.close()
                self.bar = tqdm(total=event["total"], desc="[reproduce] ablation runs", unit="run",
                                file=self.stream, dynamic_ncols=True, mininterval=0)
            elif self.bar is not None:
                if event["status"] != "done":
                    self.bar.write(f"[reproduce] {event['run']}: {event['status']}: {event['result']}", file=self.stream)
                self.bar.set_postfix_str(f"last: {event['run']}: {event['result']}", refresh=False)
                self.bar.update(1)


def device_kind() -> str:
    """"cuda" where torch sees a GPU, else "cpu": which of a preset's reproduce budgets applies."""
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_jobs(kind: str) -> int:
    """One run at a time on a GPU; two on a multi-core CPU (see run_ablation)."""
    return 1 if kind == "cuda" else min(2, os.cpu_count() or 1)


def budget(preset: str, kind: str, seeds: list[int] | None = None, jobs: int | None = None) -> tuple[list[int], int]:
    """(seeds, jobs) of a reproduce call on a `kind` device: what the command line says, else the
    preset's reproduce.<kind> budget, else default_jobs."""
    chosen = getattr(load_config(preset).reproduce, kind)
    return seeds or list(range(chosen.seeds)), jobs or chosen.jobs or default_jobs(kind)


def fresh_runs(notebooks, preset: str, seeds, runs: Path) -> list[Path]:
    """The finished runs that a call without --resume retrains, and so deletes first: the runs its
    notebooks train and no others (a default call leaves 07's and 08's hours of runs in place).
    07 and 08 reuse the ablation's runs (07 at difficulty 0, 08 its reference and the GA detach
    row) and retrain only their own."""
    full = ABLATIONS[REFERENCE]
    ablation = {ablation_run_name(preset, spec, s) for spec in choose_ablations("all", preset=preset).values()
                for s in seeds}
    names = {ablation_run_name(preset, full, 0)} if {"02_train_eval", "04_attention", "06_transfer"} & set(notebooks) else set()
    names |= ablation if "03_ablation" in notebooks else set()
    patterns = [f"{preset}_transfer_*"] if "06_transfer" in notebooks else []
    if "07_difficulty" in notebooks:        # its derived presets are <preset>-d<difficulty> (attnet.sweep)
        patterns.append(f"{preset}-d*_*")
    if "08_attention_causes" in notebooks:
        from attnet.causes import CAUSES    # not at the top: attnet.causes imports this module
        names |= {ablation_run_name(preset, {**full, **c.spec}, s) for c in CAUSES.values() if c.preset is None
                  for s in seeds} - ablation
        patterns += [f"{preset}-{c.tag}_*" for c in CAUSES.values() if c.preset is not None]
    found = {p for p in runs.glob(f"{preset}*") if p.name in names}
    found |= {p for pattern in patterns for p in runs.glob(pattern)}
    return sorted(p for p in found if p.is_dir())


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
    from attnet import stats          # here, not at the top: the import block is other branches' to edit
    done = runs[runs["status"] == "done"]
    streams = [c[len("test."):-len("_top1")] for c in runs.columns if c.startswith("test.") and c.endswith("_top1")]
    streams = sorted(streams, key=lambda s: (["gp", "sa", "la"] + [s]).index(s))    # the paper's order first
    has_reference = (done["config"] == reference).any()
    diffs = stats.paired_differences(runs, reference, level=level).set_index("config") if has_reference else None
    out = []
    for config, group in runs.groupby("config", sort=False):
        ok = group[group["status"] == "done"]
        row = {"configuration": config, "seeds": f"{len(ok)}/{len(group)}",
               "top-1": stats.mean_text(stats.t_interval(ok.get("test.top1", []), level))}
        for s in streams:
            values = ok[f"test.{s}_top1"].dropna()
            row[s.upper()] = f"{values.mean():.1f}" if len(values) else ""
        train = ok["train.top1"].dropna() if "train.top1" in ok else pd.Series(dtype=float)
        row["last-epoch train top-1 (min)"] = f"{train.min():.1f}" if len(train) else ""
        row[f"Δ vs {reference}"], row["call"] = "", ""
        if diffs is not None and config == reference:
            row["call"] = "reference"
        elif diffs is not None and config in diffs.index:
            d = diffs.loc[config]
            row[f"Δ vs {reference}"], row["call"] = stats.difference_text(d), d["call"]
        failed = group[group["status"] == "failed"]
        row["status"] = "done" if failed.empty else f"failed: {failed['error'].iloc[0]}"
        out.append(row)
    table = pd.DataFrame(out)
    table.attrs["note"] = ablation_note(runs, reference, level)
    return table


def ablation_note(runs: pd.DataFrame, reference: str = REFERENCE, level: float = 0.95) -> str:
    """The method under the ablation table: interval, pairing, seeds, test-set size and its binomial error."""
    from attnet import stats
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


def git_commit(root: Path | None = None) -> str:
    """The checkout's commit, "+local changes" when tracked files outside results/ differ from it
    (results/ is what reproduce rewrites: a --resume call over committed results is still that commit)."""
    root = root or project_root()
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=root)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":!results"],
                           capture_output=True, text=True, cwd=root).stdout.strip()
    return (out.stdout.strip() or "unknown") + ("+local changes" if dirty else "")


TIMINGS_NOTE = ("Wall time of each notebook (s), and the command, commit and CPU of the `attnet reproduce` call that "
                "last ran it: a call replaces the rows of the notebooks it ran and keeps the others.")


def merge_timings(path: Path, timings: list[dict]) -> pd.DataFrame:
    """This call's notebook timings over the earlier table at `path`: the rows of notebooks it did
    not run (an --only call's others; 07 and 08 after a default call) still describe the results
    those notebooks made. Rows of notebooks the kit no longer has go."""
    order = {name: i for i, name in enumerate(NOTEBOOKS + EXTRAS)}
    earlier = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=["notebook"])
    earlier = earlier[earlier["notebook"].isin(order) & ~earlier["notebook"].isin([t["notebook"] for t in timings])]
    table = pd.concat([earlier, pd.DataFrame(timings)])
    return table.sort_values("notebook", key=lambda names: names.map(order)).reset_index(drop=True)


def made_by(timings: pd.DataFrame) -> str:
    """The index's provenance line: each reproduce call behind the results, with its notebooks and minutes."""
    calls = []
    timings = timings.fillna({"command": "an earlier call", "commit": "unknown"})     # a table from before these columns
    timings = timings.assign(machine=timings["machine"].astype(object).fillna("") if "machine" in timings else "")
    for (command, commit, machine), group in timings.groupby(["command", "commit", "machine"], sort=False):
        on = f" on {machine}" if machine else ""
        calls.append(f"{command} at commit {commit}{on} ({', '.join(group['notebook'])}: "
                     f"{group['seconds'].sum() / 60:.1f} min)")
    return "; ".join(calls) + "."


def write_index(results: Path, note: str) -> Path:
    """results/README.md: every table and figure, and the command that made them."""
    lines = ["# Results", "", "Made by " + note, "",
             "Runs are in `runs/<name>/` (config, per-epoch metrics, test metrics, per-video scores); the executed "
             "notebooks are in `notebooks/`. `paper/` holds the paper's tables with empty cells to fill.", ""]
    for table in sorted((results / "tables").glob("*.md")):
        lines += [f"## {table.stem}", "", table.read_text().strip(), ""]
    figures = sorted(p for p in (results / "figures").glob("*") if p.suffix in (".png", ".gif"))
    lines += ["## Figures", ""] + [f"- [{p.name}](figures/{p.name})" for p in figures] + [""]
    path = results / "README.md"
    path.write_text("\n".join(lines))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="attnet reproduce", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="synthetic")
    parser.add_argument("--data-root", default=None, help="dataset root (default: the preset's)")
    parser.add_argument("--only", nargs="+", choices=NOTEBOOKS + EXTRAS, default=None,
                        help=f"run only these notebooks ({', '.join(EXTRAS)} runs only when named)")
    parser.add_argument("--resume", action="store_true",
                        help="keep this preset's finished runs (final.json); without it the runs the called notebooks "
                             "train are deleted and retrained")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="seeds of the ablation (default: 0..N-1, N from the preset's reproduce.cpu / .cuda budget)")
    parser.add_argument("--results", default="results", help="where tables, figures and runs go")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs of every run (default: the preset's); fewer for a quick look")
    parser.add_argument("--jobs", type=int, default=None,
                        help="ablation runs trained at once (default: the preset's budget, else 1 on a GPU, "
                             "2 on a CPU with 2+ cores)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)

    root = project_root()
    preset = args.preset
    if preset.endswith((".yaml", ".yml")):   # a preset file: the notebooks get its name and find it by name
        path = Path(preset).resolve()
        preset = path.stem
        if (CONFIG_DIR / f"{preset}.yaml").is_file() and (CONFIG_DIR / f"{preset}.yaml").resolve() != path:
            raise SystemExit(f"{path}: a preset named {preset!r} ships in {CONFIG_DIR}; rename your file")
        os.environ[PRESET_PATH] = os.pathsep.join(filter(None, [str(path.parent), os.environ.get(PRESET_PATH)]))
    results = Path(args.results)
    if not results.is_absolute():
        results = Path.cwd() / results
    command = "attnet reproduce " + " ".join(sys.argv[1:] if argv is None else argv)
    commit = git_commit()                 # before old runs go and the notebooks rewrite results/
    kind = device_kind()
    seeds, jobs = budget(preset, kind, args.seeds, args.jobs)
    print(f"[reproduce] {kind}: seeds {seeds}, {jobs} run(s) at a time", flush=True)
    notebooks = args.only or NOTEBOOKS
    if not args.resume:                   # a fresh reproduction: the runs its notebooks make go first
        for old in fresh_runs(notebooks, preset, seeds, results / "runs"):
            shutil.rmtree(old)
    # resume=True inside: later notebooks reuse the runs earlier ones made (04 and 06 use the
    # full model that 02 / 03 trained). Inside the checkout the notebooks (which run there) get
    # a relative results_dir, so tables name files as results/..., the same on every machine.
    inside = results.resolve().is_relative_to(root.resolve())
    params = {"preset": preset, "data_root": args.data_root,
              "results_dir": str(results.resolve().relative_to(root.resolve()) if inside else results),
              "resume": True, "seeds": seeds, "configs": "all", "jobs": jobs,
              "epochs": args.epochs}
    timings = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="attnet-progress-") as tmp:
        progress = Path(tmp) / "events.jsonl"
        os.environ[PROGRESS_ENV] = str(progress)        # inherited by the notebooks' kernels
        try:
            for name in notebooks:
                print(f"[reproduce] {name} ...", flush=True)
                tic = time.perf_counter()
                progress.unlink(missing_ok=True)           # each notebook's events on their own
                with ProgressFollower(progress):
                    execute(name, results / "notebooks" / f"{name}.ipynb", params, cwd=root)
                timings.append({"notebook": name, "seconds": round(time.perf_counter() - tic, 1)})
                print(f"[reproduce] {name} done in {timings[-1]['seconds']:.0f} s "
                      f"({time.perf_counter() - started:.0f} s so far)", flush=True)
        finally:
            os.environ.pop(PROGRESS_ENV, None)
    total = time.perf_counter() - started
    from attnet.engine.runtime import cpu_facts, cpu_label
    from attnet.replicate import write_machine
    machine = cpu_label(cpu_facts())      # results can come from calls on several machines: each row says its own
    for row in timings:
        row.update(command=f"`{command}`", commit=commit, machine=machine)
    table = merge_timings(results / "tables" / f"reproduce_timings_{preset}.csv", timings)
    write_table(table, results / "tables" / f"reproduce_timings_{preset}", note=TIMINGS_NOTE)
    write_index(results, made_by(table))
    if "03_ablation" in notebooks:        # the ablation's machine, what replicate compares; an --only call elsewhere keeps it
        write_machine(results, preset)
    print(f"[reproduce] {len(timings)} notebooks in {total / 60:.1f} min; executed notebooks in "
          f"{results / 'notebooks'}, tables in {results / 'tables'}, figures in {results / 'figures'}")
