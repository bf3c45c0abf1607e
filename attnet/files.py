"""File helpers every layer shares: atomic writes, the one weights-only load, the git commit.

Nothing here imports the rest of attnet, so data, models and the engine can all use it.
"""
from __future__ import annotations

import os
import pickle
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import torch


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and what to do."""


@contextmanager
def atomic_path(path: Path):
    """A temporary path unique to this process beside `path`, renamed over it on success;
    concurrent writers never share a temporary file and a kill leaves `path` whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False, float_format="%.6g", compression="gzip" if Path(path).suffix == ".gz" else None)


def save_atomic(obj, path: Path) -> None:
    """torch.save through atomic_path: a crash never leaves a half-written file."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_weights(path: Path, fix: str) -> dict:
    """The one way attnet reads a .pt / .pth / .pkl: tensors and plain data only
    (weights_only), every failure one line naming the file and `fix`."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; {fix}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: empty checkpoint file (the write was cut off); {fix}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: not a plain checkpoint; attnet never unpickles code (it holds objects "
                              f"other than tensors and plain data); {fix}") from None
    except Exception as err:   # truncated zip, bad magic number, EOF: torch's text without the file name
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{path}: truncated or corrupt checkpoint ({reason[:120]}); {fix}") from None


def git_commit(root: Path | None = None, short: bool = False, ignore: str | None = None) -> str | None:
    """The commit of the checkout holding `root` (default: this package), None outside a git checkout;
    "+local changes" when tracked files (outside `ignore`) differ from it."""
    cwd = Path(root) if root else Path(__file__).parent
    try:
        head = subprocess.run(["git", "rev-parse", *(["--short"] if short else []), "HEAD"], capture_output=True,
                              text=True, timeout=10, cwd=cwd).stdout.strip()
        if not head:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".",
                                *([f":!{ignore}"] if ignore else [])],
                               capture_output=True, text=True, timeout=10, cwd=cwd).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+local changes" if dirty else "")
