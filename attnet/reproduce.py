"""`attnet reproduce`: run the kit's notebooks 00-06 with papermill and collect tables and figures.

    attnet reproduce --preset synthetic                       # the default CPU reproduction
    attnet reproduce --preset hmdb51 --data-root /data/hmdb51 # the paper's experiments, on GPUs
    attnet reproduce --preset hmdb51 --executor slurm --partition gpu   # the ablation as a SLURM job array
    attnet reproduce --only 03_ablation --fresh               # one notebook, its runs retrained

A reproduction goes into its own folder (reproduction/<preset>, or --results) and ends by
comparing its ablation's calls with the committed results/, call by call. The same command again
keeps every finished run, continues the unfinished ones from their last.pt and, with a
submitit executor, collects the jobs an earlier call submitted. It runs inside a checkout (the
notebooks are not part of the installed package).
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path

import pandas as pd
import yaml

from attnet.ablation import (ABLATIONS, PROGRESS_ENV, REFERENCE, ablation_run_name, choose_ablations, runs_table,
                             settings_error)
from attnet.config import CONFIG_DIR, PRESET_PATH, load_config
from attnet.executors import EXECUTORS, gpu_count
from attnet.files import atomic_path, git_commit
from attnet.machine import cpu_facts, cpu_label, write_machine
from attnet.replicate import write_replication
from attnet.results import RETRAINED
from attnet.tables import write_table

KERNELS: weakref.WeakSet = weakref.WeakSet()     # the kernel managers running notebooks, for Ctrl-C to stop
NOTEBOOKS = ("00_quickstart", "01_data", "02_train_eval", "03_ablation", "04_attention", "05_results", "06_transfer")


def project_root() -> Path:
    """The checkout whose notebooks/ to run: the working directory or the one holding this
    package (an editable install), whichever has the kit's notebooks."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[1]):
        if (root / "notebooks" / f"{NOTEBOOKS[0]}.ipynb").is_file():
            return root
    raise SystemExit("attnet reproduce runs the notebooks of a checkout of attnet: run it inside one")


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

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
            await super()._async_launch_kernel(kernel_cmd, **kw)
            KERNELS.add(self)

        async def _async_interrupt_kernel(self) -> None:
            """No SIGINT on the way out: jupyter_client interrupts before every shutdown, and a kernel
            caught inside a message handler then logs "KeyboardInterrupt caught in kernel" (and at
            times a traceback) to the terminal, though the notebook has finished."""
            if not self.shutting_down:
                await super()._async_interrupt_kernel()

    return IPCKernelManager


def execute(source: Path, output: Path, parameters: dict, cwd: Path) -> None:
    """Run the notebook `source` with papermill into `output`, passing only the parameters it declares.
    The executed notebook names its input and output relative to `cwd`: a committed one names no
    folder of the machine that made it."""
    import nbformat
    import papermill
    declared = papermill.inspect_notebook(str(source))
    output.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(str(source), str(output), kernel_name="python3", progress_bar=False,
                               parameters={k: v for k, v in parameters.items() if k in declared},
                               cwd=str(cwd), kernel_manager_class=kernel_manager_class())
    notebook = nbformat.read(output, as_version=4)
    notebook.metadata.papermill.update(input_path=os.path.relpath(source, cwd),
                                       output_path=os.path.relpath(output, cwd))
    with atomic_path(output) as tmp:
        nbformat.write(notebook, tmp)


class ProgressFollower:
    """Follows the events that report_progress appends to `path` (from another process) and draws
    them as one tqdm bar: runs done of total, elapsed and time left, the last run's result (cut to
    60 characters); a failed run is written out whole above the bar as it happens."""

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
                result = event["result"] if len(event["result"]) <= 60 else event["result"][:57] + "..."
                self.bar.set_postfix_str(f"last: {event['run']}: {result}", refresh=False)   # one line wide
                self.bar.update(1)


def device_kind() -> str:
    """"cuda" where torch sees a GPU, else "cpu": which of a preset's reproduce budgets applies."""
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def budget(preset: str, kind: str, seeds: list[int] | None = None, jobs: int | None = None) -> tuple[list[int], int]:
    """(seeds, runs at once) of a reproduce call on a `kind` device: what the command line says,
    else the preset's reproduce.<kind> budget, else GPUs x its jobs_per_gpu on GPUs and two runs
    on a multi-core CPU (see run_ablation)."""
    chosen = getattr(load_config(preset).reproduce, kind)
    default = max(1, gpu_count()) * chosen.jobs_per_gpu if kind == "cuda" else min(2, os.cpu_count() or 1)
    return seeds or list(range(chosen.seeds)), jobs or chosen.jobs or default


def fresh_runs(notebooks, preset: str, seeds, runs: Path, configs="all") -> list[Path]:
    """The runs that a call retrains with --fresh, and so deletes first: the runs its notebooks
    train and no others (also what a stopped call counts as finished or stopped)."""
    full = ABLATIONS[REFERENCE]
    ablation = {ablation_run_name(preset, spec, s) for spec in choose_ablations(configs, preset=preset).values()
                for s in seeds}
    names = {ablation_run_name(preset, full, 0)} if {"02_train_eval", "04_attention", "06_transfer"} & set(notebooks) else set()
    names |= ablation if "03_ablation" in notebooks else set()
    patterns = [f"{preset}_transfer_*"] if "06_transfer" in notebooks else []
    found = {p for p in runs.glob(f"{preset}*") if p.name in names}
    found |= {p for pattern in patterns for p in runs.glob(pattern)}
    return sorted(p for p in found if p.is_dir())


TIMINGS_NOTE = ("Wall time of each notebook (s), and the command, commit and CPU of the `attnet reproduce` call that "
                "last ran it: a call replaces the rows of the notebooks it ran and keeps the others.")


def merge_timings(path: Path, timings: list[dict]) -> pd.DataFrame:
    """This call's notebook timings over the earlier table at `path`: the rows of notebooks it did
    not run (an --only call's others) still describe the results
    those notebooks made. Rows of notebooks the kit no longer has go."""
    order = {name: i for i, name in enumerate(NOTEBOOKS)}
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
    if (results / RETRAINED).is_dir():
        lines += [f"`{RETRAINED}/<name>/` holds runs that 04 trained again because their record in `runs/` kept no "
                  "checkpoint; the executed 04 says how each compares with its record.", ""]
    for table in sorted((results / "tables").glob("*.md")):
        lines += [f"## {table.stem}", "", table.read_text().strip(), ""]
    figures = sorted(p for p in (results / "figures").glob("*") if p.suffix in (".png", ".gif"))
    lines += ["## Figures", ""] + [f"- [{p.name}](figures/{p.name})" for p in figures] + [""]
    path = results / "README.md"
    path.write_text("\n".join(lines))
    return path


def changed_runs(preset: str, seeds, results: str, data_root: str | None, epochs: int | None,
                 configs="all") -> list[str]:
    """One line per finished ablation run that this call would not reuse (trained with other
    settings): record.check_finished's reason, and the two ways on, keep or retrain."""
    lines = []
    for spec in choose_ablations(configs, preset=preset).values():
        for seed in seeds:
            error = settings_error(preset, spec, seed, results, data_root, epochs)
            if error:
                lines.append(error.split("; retrain it")[0])
    return lines


def keep_or_retrain(command: list[str], run_dir: Path, epochs: int | None) -> str:
    """The two commands for a finished run trained with other settings: its own epochs (what
    --epochs sets), or --fresh."""
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    keep = ("`" + shlex.join(without(command, "--epochs", 1) + ["--epochs", str(saved["optim"]["epochs"])]) + "`"
            if epochs != saved["optim"]["epochs"] else "the preset as it was when the run trained")
    return f"keep it: {keep}; retrain it: `{shlex.join(without(command, '--fresh') + ['--fresh'])}`"


def without(command: list[str], flag: str, values: int = 0) -> list[str]:
    """`command` without `flag` (and the `values` words after it)."""
    out, skip = [], 0
    for word in command:
        if skip:
            skip -= 1
        elif word == flag:
            skip = values
        else:
            out.append(word)
    return out


def stop_kernels() -> None:
    """Ctrl-C: every notebook kernel stops now, with the runs it trains (its process group): what
    they finished stays, and each unfinished run continues from its last.pt."""
    for manager in list(KERNELS):
        process = getattr(manager.provisioner, "process", None)
        if process is not None and process.poll() is None:
            try:
                os.killpg(manager.provisioner.pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def compare_with_committed(root: Path, results: Path, results_dir: str, preset: str) -> str:
    """A reproduction's ablation against the committed results/, call by call (attnet.replicate), in
    its tables/replication_<preset> (which 05_results shows); the line that says how many agree,
    or "" where there is nothing to compare."""
    committed = root / "results"
    if results.resolve() == committed.resolve() or not runs_table(committed, preset).is_file() \
            or not runs_table(results, preset).is_file():
        return ""
    same, calls, path = write_replication(committed, results, preset, command=(
        f"python -m attnet.replicate results {results_dir} --preset {preset} "
        f"--out {results_dir}/tables/replication_{preset}"), out=results / "tables" / f"replication_{preset}")
    return (f"[reproduce] {same} of {calls} ablation calls agree with the committed results/ (A: the committed "
            f"reproduction, B: this one): {path}")


def ablation_runs(results: Path, preset: str) -> pd.DataFrame:
    """03's per-run table in `results` (empty where 03 wrote none), read once after 03 ran."""
    path = runs_table(results, preset)
    return pd.read_csv(path, keep_default_na=False) if path.is_file() else pd.DataFrame(columns=["run", "status"])


def pending_runs(runs: pd.DataFrame) -> int:
    """Ablation runs a submitit executor left queued or running."""
    return int(runs["status"].isin(["queued", "running"]).sum())


def trained_since(runs: pd.DataFrame, results: Path, since: float) -> bool:
    """Whether one of the runs finished after `since` (epoch seconds): only a call that trained
    some of the ablation may write its machine; one that reused every run did not make them."""
    finals = [results / "runs" / run / "final.json" for run in runs["run"]]
    return any(final.is_file() and final.stat().st_mtime >= since for final in finals)


def failed_runs(runs: pd.DataFrame, results: Path) -> str:
    """The line that ends a call whose ablation had failed runs, or "": the table keeps them as
    failed rows and the other notebooks go on, but the call must not read as done."""
    failed = runs[runs["status"] == "failed"]
    if failed.empty:
        return ""
    first = failed.iloc[0]
    return (f"[reproduce] {len(failed)} of {len(runs)} ablation runs failed, first {first['run']}: {first['error']} "
            f"(each run's log: {results / 'logs' / 'ablation'}/<run>.log)")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="attnet reproduce", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="synthetic")
    parser.add_argument("--data-root", default=None, help="dataset root (default: the preset's)")
    parser.add_argument("--only", nargs="+", choices=NOTEBOOKS, default=None, help="run only these notebooks")
    parser.add_argument("--fresh", action="store_true",
                        help="retrain: the runs the called notebooks train are deleted first (default: finished runs "
                             "are kept and unfinished ones continue from their last.pt)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="seeds of the ablation (default: 0..N-1, N from the preset's reproduce.cpu / .cuda budget)")
    parser.add_argument("--results", default=None,
                        help="where tables, figures and runs go (default: reproduction/<preset>, compared with the "
                             "committed results/ at the end; maintainers regenerate results/ with --results results)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="training epochs of every run (default: the preset's); fewer for a quick look")
    parser.add_argument("--configs", nargs="+", default=None, metavar="ROW",
                        help="rows of the ablation (attnet.ablation.ABLATIONS' names; default: all of them, the "
                             "oracle control only on data with actor boxes)")
    parser.add_argument("--jobs", type=int, default=None,
                        help="ablation runs trained at once (default: the preset's budget, else GPUs x its "
                             "reproduce.cuda.jobs_per_gpu on GPUs, 2 on a CPU with 2+ cores)")
    parser.add_argument("--executor", choices=EXECUTORS, default="pool",
                        help="where the ablation's runs train: a process pool here (default), one SLURM job each "
                             "(one array, submitted and left: the same command later collects them), or submitit's "
                             "local executor (the SLURM path, on this machine)")
    slurm = parser.add_argument_group("--executor slurm (default: the preset's reproduce.slurm)")
    slurm.add_argument("--partition", default=None)
    slurm.add_argument("--account", default=None)
    slurm.add_argument("--time", type=int, default=None, help="minutes per job; a job out of time resumes in a new one")
    slurm.add_argument("--gpus", type=int, default=None, help="GPUs per job")
    slurm.add_argument("--cpus", type=int, default=None, help="CPU cores per job")
    words = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(words)

    if args.executor == "slurm" and not shutil.which("sbatch"):
        raise SystemExit("--executor slurm: no sbatch here; run it on a SLURM login node (or try the same path with "
                         "--executor submitit-local)")
    root = project_root()
    preset = args.preset
    if preset.endswith((".yaml", ".yml")):   # a preset file: the notebooks get its name and find it by name
        path = Path(preset).resolve()
        preset = path.stem
        if (CONFIG_DIR / f"{preset}.yaml").is_file() and (CONFIG_DIR / f"{preset}.yaml").resolve() != path:
            raise SystemExit(f"{path}: a preset named {preset!r} ships in {CONFIG_DIR}; rename your file")
        os.environ[PRESET_PATH] = os.pathsep.join(filter(None, [str(path.parent), os.environ.get(PRESET_PATH)]))
    results = Path(args.results or Path("reproduction") / preset)
    if not results.is_absolute():
        results = Path.cwd() / results
    command = ["attnet", "reproduce", *words]
    commit = git_commit(root, short=True, ignore="results") or "unknown"   # before the notebooks write results
    kind = device_kind()
    seeds, jobs = budget(preset, kind, args.seeds, args.jobs)
    configs = args.configs or "all"
    try:
        choose_ablations(configs, preset=preset)          # a misspelt row stops here, before any run
    except ValueError as err:
        raise SystemExit(f"--{err}") from None       # "--configs: unknown ablation(s) ..."
    where = f"{jobs} run(s) at a time" if args.executor == "pool" else f"one {args.executor} job per run"
    print(f"[reproduce] {kind}: seeds {seeds}, {where}; into {results}", flush=True)
    notebooks = list(args.only or NOTEBOOKS)
    # Inside the checkout the notebooks (which run there) get a relative results_dir, so tables
    # name files as reproduction/..., the same on every machine.
    inside = results.resolve().is_relative_to(root.resolve())
    results_dir = str(results.resolve().relative_to(root.resolve()) if inside else results)
    if args.fresh:                        # a fresh reproduction: the runs its notebooks make go first
        for old in fresh_runs(notebooks, preset, seeds, results / "runs", configs):
            shutil.rmtree(old)
            shutil.rmtree(results / RETRAINED / old.name, ignore_errors=True)   # 04's retrain of a record
    elif "03_ablation" in notebooks:
        changed = changed_runs(preset, seeds, str(results), args.data_root, args.epochs, configs)
        if changed:
            first = results / "runs" / Path(changed[0].split(":")[0]).parent.name
            for line in changed:
                print(f"[reproduce] {line}", flush=True)
            raise SystemExit(f"[reproduce] {len(changed)} finished run(s) trained with other settings; "
                             + keep_or_retrain(command, first, args.epochs))
    if args.executor != "pool" and "03_ablation" in notebooks:    # the jobs first: the others reuse their runs
        notebooks.remove("03_ablation")
        notebooks.insert(0, "03_ablation")
    # resume=True inside: later notebooks reuse the runs earlier ones made (04 and 06 use the
    # full model that 02 / 03 trained).
    params = {"preset": preset, "data_root": args.data_root, "results_dir": results_dir,
              "resume": True, "seeds": seeds, "configs": configs, "jobs": jobs, "epochs": args.epochs,
              "executor": args.executor,
              "slurm": {k: getattr(args, k) for k in ("partition", "account", "time", "gpus", "cpus")}}
    timings, agreement, ablation = [], "", None
    started, began = time.perf_counter(), time.time()
    interrupted = []

    def on_interrupt(signum, frame):
        interrupted.append(signum)
        stop_kernels()
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_interrupt)
    with tempfile.TemporaryDirectory(prefix="attnet-progress-") as tmp:
        progress = Path(tmp) / "events.jsonl"
        os.environ[PROGRESS_ENV] = str(progress)        # inherited by the notebooks' kernels
        try:
            for name in notebooks:
                print(f"[reproduce] {name} ...", flush=True)
                tic = time.perf_counter()
                progress.unlink(missing_ok=True)           # each notebook's events on their own
                with ProgressFollower(progress):
                    execute(root / "notebooks" / f"{name}.ipynb", results / "notebooks" / f"{name}.ipynb", params, root)
                timings.append({"notebook": name, "seconds": round(time.perf_counter() - tic, 1)})
                print(f"[reproduce] {name} done in {timings[-1]['seconds']:.0f} s "
                      f"({time.perf_counter() - started:.0f} s so far)", flush=True)
                if name != "03_ablation":
                    continue
                ablation = ablation_runs(results, preset)
                if not pending_runs(ablation):
                    if trained_since(ablation, results, began):      # the ablation's machine, what replicate compares
                        write_machine(results, preset)
                    agreement = compare_with_committed(root, results, results_dir, preset)
                else:
                    print(f"[reproduce] {pending_runs(ablation)} ablation runs are queued or running "
                          f"(job ids in {results / 'jobs'}); the same command later collects them and runs the "
                          f"other notebooks: {shlex.join(without(command, '--fresh'))}", flush=True)
                    notebooks = notebooks[:1]
                    break
        except BaseException:
            if not interrupted:
                raise
            runs = fresh_runs(notebooks, preset, seeds, results / "runs", configs)
            done = sum((run / "final.json").is_file() for run in runs)
            raise SystemExit(f"[reproduce] stopped: {done} runs finished, {len(runs) - done} stopped (each continues "
                             f"from its last.pt); continue with: {shlex.join(without(command, '--fresh'))}") from None
        finally:
            signal.signal(signal.SIGINT, previous)
            os.environ.pop(PROGRESS_ENV, None)
    total = time.perf_counter() - started
    machine = cpu_label(cpu_facts())      # results can come from calls on several machines: each row says its own
    for row in timings:
        row.update(command=f"`{shlex.join(command)}`", commit=commit, machine=machine)
    table = merge_timings(results / "tables" / f"reproduce_timings_{preset}.csv", timings)
    write_table(table, results / "tables" / f"reproduce_timings_{preset}", note=TIMINGS_NOTE)
    write_index(results, made_by(table))
    print(f"[reproduce] {len(timings)} notebooks in {total / 60:.1f} min; executed notebooks in "
          f"{results / 'notebooks'}, tables in {results / 'tables'}, figures in {results / 'figures'}")
    if agreement:
        print(agreement, flush=True)
    failed = failed_runs(ablation, results) if ablation is not None else ""
    if failed:
        raise SystemExit(failed)
