"""Re-encode a dataset's videos with a short keyframe interval, for fast sampled decoding.

A sampled frame costs the decode from the keyframe before it, so 12-segment sampling of a
video with one keyframe every 250 frames (x264's default) decodes almost the whole video,
while with one every 4 frames it decodes about 2.5 frames per sample (`python -m
attnet.bench data` prints the rates per keyframe interval). `reencode` writes a copy of a
dataset root with the same tree and file names, so the official split files still apply:

    attnet data reencode --src /data/UCF101 --dst /data/UCF101-gop4 --gop 4

Other files (split lists, CSVs) are copied. Finished videos are kept: a rerun skips them.
Audio is dropped. A `.webm` clip becomes `.mp4` (WebM cannot hold H.264); Kinetics finds
clips by name without the suffix.
"""
from __future__ import annotations

import shutil
from pathlib import Path

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


def reencode(src_root: str | Path, dst_root: str | Path, gop: int = 4, crf: int = 18, overwrite: bool = False,
             log=print) -> dict[str, list]:
    """Copy the tree of src_root to dst_root, re-encoding every video (see the module doc).
    Returns {"written": [...], "skipped": [...], "copied": [...], "failed": ["path: error", ...]};
    a failed video is reported and the others go on."""
    src_root, dst_root = Path(src_root), Path(dst_root)
    if not src_root.is_dir():
        raise DataError(f"{src_root}: source dataset root not found")
    if gop < 1:
        raise ValueError(f"gop must be >= 1, got {gop}")
    if dst_root.resolve() == src_root.resolve() or src_root.resolve() in dst_root.resolve().parents:
        raise DataError(f"{dst_root}: the destination must lie outside the source root {src_root}")
    done: dict[str, list] = {"written": [], "skipped": [], "copied": [], "failed": []}
    files = sorted(p for p in src_root.rglob("*") if p.is_file())
    videos = [p for p in files if p.suffix.lower() in VIDEO_SUFFIXES]
    for path in files:
        out = target(src_root, dst_root, path)
        if path.suffix.lower() not in VIDEO_SUFFIXES:
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, out)
            done["copied"].append(out)
        elif out.is_file() and not overwrite:
            done["skipped"].append(out)
        else:
            try:
                reencode_video(path, out, gop, crf)
                done["written"].append(out)
            except DataError as err:
                done["failed"].append(str(err))
            finished = len(done["written"]) + len(done["failed"])
            if finished % 100 == 0:
                log(f"  {finished + len(done['skipped'])}/{len(videos)} videos")
    return done
