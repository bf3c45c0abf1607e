"""The run record under results/runs/<name>/: one writer per run directory, atomic files,
resume that applies and notes changed settings, nothing non-finite saved.

An epoch's record is its checkpoint: last.pt carries the metrics rows of every finished
epoch, and metrics.csv is rewritten from them, so the two can never disagree whatever
instant the process dies at.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
from pathlib import Path

import torch
import yaml

from attnet.config import Config, flat_config
from attnet.files import write_text

LOCK_NAME = ".lock"
# may differ on --resume without being a change of the experiment
RESUME_FREE = ("imports", "run.resume", "run.overwrite", "run.name", "run.device", "run.threads", "run.log_every",
               "run.tensorboard")
# where a finished run was trained, not what: it is reused (run.resume) whatever these say now
FINISHED_FREE = RESUME_FREE + ("run.out_dir", "data.root", "data.workers", "data.cache")
# what the checkpoint's tensors or optimizer state are made of: a resume cannot change them
RESUME_FIXED = ("model.backbone", "model.streams", "model.fusion_layer", "model.temporal", "model.hidden_size",
                "model.num_layers", "optim.name", "data.name", "run.out_dir")

_held: dict[Path, int] = {}        # run dir -> fd of its flocked lock file, for this process


class RunLocked(RuntimeError):
    """Another process is training this run."""


# --- one process per run directory ------------------------------------------------------------
def lock(run_dir: Path) -> None:
    """Hold run_dir/.lock (flock) for this process; another process holding it -> RunLocked,
    having touched nothing but the directory's existence."""
    run_dir = Path(run_dir).resolve()
    if run_dir in _held:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunLocked(f"{run_dir}: another process is training this run (it holds {LOCK_NAME}); wait for it "
                        "or choose another run.name") from None
    _held[run_dir] = fd


def holds(run_dir: Path) -> bool:
    return Path(run_dir).resolve() in _held


def release(run_dir: Path) -> None:
    fd = _held.pop(Path(run_dir).resolve(), None)
    if fd is not None:
        os.close(fd)                                 # closing the descriptor drops the flock


def clear(run_dir: Path) -> None:
    """Empty a run directory for run.overwrite, keeping the lock file this process holds."""
    for entry in Path(run_dir).iterdir():
        if entry.name != LOCK_NAME:
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()


def has_run(run_dir: Path) -> bool:
    return run_dir.is_dir() and any(p.name != LOCK_NAME for p in run_dir.iterdir())


def has_progress(run_dir: Path) -> bool:
    """A checkpoint or final.json: what a new run of the name would lose. A run that failed
    before its first checkpoint (config.yaml, error.txt) holds nothing to keep."""
    return (run_dir / "final.json").is_file() or any((run_dir / "checkpoints").glob("*.pt"))


def write_error(run_dir: Path, text: str) -> None:
    """error.txt for the registry ("failed"), only by the process that owns the run."""
    if holds(run_dir):
        write_text(Path(run_dir) / "error.txt", text)


def write_final(run_dir: Path, final: dict) -> None:
    """final.json, and no stale error.txt beside it."""
    write_text(run_dir / "final.json", json.dumps(final, indent=1))
    (run_dir / "error.txt").unlink(missing_ok=True)


# --- config on resume ---------------------------------------------------------------------------
def config_changes(saved: dict, cfg: Config) -> dict[str, tuple]:
    """{key: (recorded value, value now)} of the experiment settings that differ. A record
    without a launch section was trained by one process; a config whose launch is not resolved
    (a table asking what a run was trained with, not a process about to train it) leaves the
    launch out."""
    launch = {"world_size": 1, "device_batch_size": (saved.get("data") or {}).get("batch_size")}
    before, now = flat_config({"launch": launch} | saved), flat_config(cfg.to_dict())
    if cfg.launch.device_batch_size is None:
        now = {k: v for k, v in now.items() if not k.startswith("launch.")}
    return {k: (before.get(k), v) for k, v in now.items() if before.get(k) != v and k not in RESUME_FREE}


def check_finished(run_dir: Path, cfg: Config) -> None:
    """A finished run is reused only for the settings it was trained with: one trained under others
    (another optim.epochs, say, after a preset changed) would enter a table as if made by the preset.
    optim.amp=auto asks for what each machine does best, so it matches the precision it resolved to
    where the run trained (bf16 or fp16 on a GPU, bf16 on a CPU with bfloat16 units, fp32 on one
    without; the record names it); an explicit optim.amp must equal the record's."""
    path = run_dir / "config.yaml"
    saved = yaml.safe_load(path.read_text()) if path.is_file() else {}
    free = FINISHED_FREE + (("optim.amp",) if cfg.optim.amp == "auto" else ())
    changes = {k: v for k, v in config_changes(saved, cfg).items()
               if k not in free and not k.startswith("reproduce.")}
    if changes:
        said = "; ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in changes.items())
        raise ValueError(f"{path}: this finished run was trained with other settings ({said}); retrain it with "
                         "run.overwrite=true (attnet reproduce --fresh), or ask for its own settings")


def record_config(run_dir: Path, cfg: Config, resumed_after: int | None = None) -> None:
    """config.yaml states what runs. On resume the changed settings are applied and noted as
    comments at the top (earlier notes kept); settings the checkpoint is made of are refused."""
    path = run_dir / "config.yaml"
    if resumed_after is None or not path.is_file():
        write_text(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        return
    text = path.read_text()
    changes = config_changes(yaml.safe_load(text), cfg)
    if "launch.world_size" in changes:
        (old, new), batch = changes["launch.world_size"], cfg.data.batch_size
        raise ValueError(f"{path}: trained by {old} process(es), resumed by {new}: data.batch_size={batch} is split "
                         f"over the processes, so each would take another batch; resume with {old} (torchrun "
                         f"--nproc-per-node / srun --ntasks) or pass run.overwrite=true to start again")
    fixed = [k for k in changes if k in RESUME_FIXED]
    if fixed:
        raise ValueError(f"{path}: cannot resume with a different {', '.join(fixed)} (the checkpoint is built on "
                         f"it); resume with the recorded values or pass run.overwrite=true to start again")
    if not changes:
        return
    notes = [line for line in text.splitlines() if line.startswith("#")]
    notes += [f"# resumed after epoch {resumed_after}: {k}: {old!r} -> {new!r}" for k, (old, new) in changes.items()]
    write_text(path, "\n".join(notes) + "\n" + yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def apply_optim(optimizer: torch.optim.Optimizer, scheduler, cfg: Config) -> None:
    """After loading a checkpoint's optimizer and scheduler: continue with the configured
    optim.lr / weight_decay / momentum (the state stores the old ones) on the schedule of
    the configured optim.epochs."""
    o = cfg.optim
    scheduler.base_lrs = [o.lr] * len(optimizer.param_groups)
    for group, schedule in zip(optimizer.param_groups, scheduler.lr_lambdas):
        group["initial_lr"], group["lr"] = o.lr, o.lr * schedule(scheduler.last_epoch)
        group["weight_decay"] = o.weight_decay
        if "momentum" in group:
            group["momentum"] = o.momentum


# --- finite checkpoints -------------------------------------------------------------------------
def non_finite(state) -> list[str]:
    """Names of the floating tensors in a nested state holding NaN or inf."""
    found: list[str] = []

    def walk(value, name: str) -> None:
        if isinstance(value, torch.Tensor):
            if value.is_floating_point() and not torch.isfinite(value).all():
                found.append(name)
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{name}.{k}" if name else str(k))
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                walk(v, f"{name}[{i}]")
    walk(state, "")
    return found


def restart_hint(ckpt_dir: Path) -> str:
    """What to do after divergence: resume from last.pt only if one was saved (all saved
    checkpoints are finite)."""
    last = ckpt_dir / "last.pt"
    if last.is_file():
        return (f"the last good checkpoint is {last}; resume from it with --resume and a lower optim.lr "
                "(or optim.clip_grad)")
    return ("no checkpoint was saved before it; restart with run.overwrite=true and a lower optim.lr "
            "(or optim.clip_grad)")
