"""Re-encode a dataset's videos with a short keyframe interval, for fast sampled decoding.

A sampled frame costs the decode from the keyframe before it, so 12-segment sampling of a
video with one keyframe every 250 frames (x264's default) decodes almost the whole video,
while with one every 4 frames it decodes about 2.5 frames per sample (`python -m
attnet.bench data` prints the rates per keyframe interval). `reencode` writes a copy of a
dataset root with the same tree and file names, so the official split files still apply:

    attnet data reencode --src /data/UCF101 --dst /data/UCF101-gop4 --gop 4

Other files (split lists, CSVs) are copied. Finished videos are kept: a rerun skips them.
`--jobs` videos are re-encoded at a time (default: one per core), under a progress bar.
Audio is dropped. A `.webm` clip becomes `.mp4` (WebM cannot hold H.264); Kinetics finds
clips by name without the suffix.
"""
from __future__ import annotations

import os
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Iterator

import torch

from .decoding import frame_count, open_video, read_frames
from .encoding import write_h264
from .lists import DataError

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".webm", ".mov")


def target(src_root: Path, dst_root: Path, path: Path) -> Path:
    """Where `path` goes under dst_root: the same relative path (.webm -> .mp4)."""
    out = dst_root / path.relative_to(src_root)
    return out.with_suffix(".mp4") if out.suffix == ".webm" else out


def reencode_video(src: Path, dst: Path, gop: int = 4, crf: int = 18) -> int:
    """Decode every frame of `src` and write it to `dst` as H.264 with a keyframe every `gop`
    frames (via a temporary file, so an interrupted run leaves no half-written video).
    Returns the frame count."""
    decoder = open_video(src, seek_mode="exact")
    frames = read_frames(decoder, src, torch.arange(frame_count(decoder, src)))
    fps = decoder.metadata.average_fps or 25.0
    dst.parent.mkdir(parents=True, exist_ok=True)
    # yuv420p with even sides is what every H.264 decoder reads; no B-frames, so decode order
    # is display order (AVI cannot reorder them, and a seek decodes no frame twice)
    frames = frames[..., : frames.shape[-2] // 2 * 2, : frames.shape[-1] // 2 * 2]
    write_h264(dst, frames.permute(0, 2, 3, 1), fps, crf=crf, g=gop, keyint_min=gop, sc_threshold=0, bf=0)
    return len(frames)


def check_roots(src_root: str | Path, dst_root: str | Path) -> tuple[Path, Path]:
    """(src_root, dst_root) as paths: the source exists and the copy lies outside it."""
    src_root, dst_root = Path(src_root), Path(dst_root)
    if not src_root.is_dir():
        raise DataError(f"{src_root}: source dataset root not found")
    if dst_root.resolve() == src_root.resolve() or src_root.resolve() in dst_root.resolve().parents:
        raise DataError(f"{dst_root}: the destination must lie outside the source root {src_root}")
    return src_root, dst_root


def _guarded(work, src: Path, dst: Path, args: tuple) -> tuple[Path, object, str | None]:
    """(dst, work's result, None) or (dst, None, error): a pool task that never raises a DataError."""
    try:
        return dst, work(src, dst, *args), None
    except DataError as err:
        return dst, None, str(err)


def _one_thread() -> None:
    torch.set_num_threads(1)                            # one process per core


def run_videos(work, tasks: list[tuple[Path, Path]], args: tuple = (), jobs: int | None = None, desc: str = "videos",
               progress: bool = True) -> Iterator[tuple[Path, object, str | None]]:
    """(dst, result, error) of work(src, dst, *args) for each (src, dst) task, in the order they
    finish, `jobs` processes at a time (default: every core; 1: in this process) under a tqdm
    bar. A DataError is that video's error and the others go on."""
    from tqdm import tqdm
    jobs = jobs or os.cpu_count() or 1
    with tqdm(total=len(tasks), desc=desc, unit="video", disable=not progress) as bar:
        if jobs == 1:
            for src, dst in tasks:
                yield _guarded(work, src, dst, args)
                bar.update()
            return
        # spawn: a forked child would inherit the parent's OpenMP and FFmpeg threads mid-state
        with ProcessPoolExecutor(jobs, mp_context=get_context("spawn"), initializer=_one_thread) as pool:
            futures = [pool.submit(_guarded, work, src, dst, args) for src, dst in tasks]
            try:
                for future in as_completed(futures):
                    yield future.result()
                    bar.update()
            finally:
                for future in futures:
                    future.cancel()


def reencode(src_root: str | Path, dst_root: str | Path, gop: int = 4, crf: int = 18, overwrite: bool = False,
             jobs: int | None = 1, progress: bool = False) -> dict[str, list]:
    """Copy the tree of src_root to dst_root, re-encoding every video (see the module doc),
    `jobs` processes at a time (None: every core). Returns {"written": [...], "skipped": [...],
    "copied": [...], "failed": ["path: error", ...]}; a failed video is reported and the others go on."""
    if gop < 1:
        raise ValueError(f"gop must be >= 1, got {gop}")
    src_root, dst_root = check_roots(src_root, dst_root)
    done: dict[str, list] = {"written": [], "skipped": [], "copied": [], "failed": []}
    todo = []
    for path in sorted(p for p in src_root.rglob("*") if p.is_file()):
        out = target(src_root, dst_root, path)
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, out)
            done["copied"].append(out)
        elif out.is_file() and not overwrite:
            done["skipped"].append(out)
        else:
            todo.append((path, out))
    for out, _, error in run_videos(reencode_video, todo, (gop, crf), jobs, "reencode", progress):
        done["written" if error is None else "failed"].append(out if error is None else error)
    done["written"].sort()
    return done
