"""Extract a dataset's videos into JPEG frame folders, the fastest layout to train from.

A frame folder costs one JPEG decode per sampled frame, where a video costs the decode from
the keyframe before each sample (`python -m attnet.bench data` prints both rates). Frames
are stored at a short side of at most `short_side` pixels (256: the paper's resize before its
224 crop, so nothing training reads is lost) as `{}.jpg` from 0, the authors' layout:

    attnet data extract-frames --src /data/hmdb51 --dst /data/Datasets --dataset hmdb51
    attnet train --preset hmdb51-frames data.root=/data/Datasets

With --dataset hmdb51 or ucf101 every clip of the three splits goes to
<dst>/HMDB/<class>/<clip>/ (UCF101/<Class>/<clip>/), and the splits to
<dst>/list/{hmdb,ucf}_split<N>_{train,test}.txt, lines "HMDB/<class>/<clip> <frames> <label>",
which the hmdb51-frames and ucf101-frames presets read. Without --dataset every video under
--src becomes the folder of the same relative path without its suffix (a `list` dataset's
lines then name the folders). A folder is written under a temporary name and renamed when
whole: a rerun skips finished videos and redoes an interrupted one.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import torchvision.io
from torchvision.transforms import v2

from attnet.files import write_text

from . import lists
from .decoding import folder_num_frames, frame_count, open_video
from .lists import DataError
from .reencode import VIDEO_SUFFIXES, check_roots, run_videos

TEMPLATE = "{}.jpg"     # the authors' frame names, 0-based: what the frames presets read
CHUNK = 64              # frames decoded, resized and encoded at a time: bounded memory on long videos
# dataset -> (folder under dst, folder of the videos under src, list file prefix): the authors' names
AUTHORS = {"hmdb51": ("HMDB", "", "hmdb"), "ucf101": ("UCF101", "UCF-101", "ucf")}


def extract_video(src: Path, dst: Path, short_side: int = 256, quality: int = 90) -> int:
    """Every frame of `src` as dst/0.jpg, 1.jpg, ..., shrunk to a short side of at most
    `short_side` (never enlarged), written into a temporary folder renamed to `dst` when whole.
    Returns the frame count; an unreadable video is a DataError naming it."""
    decoder = open_video(src, seek_mode="exact")
    count = frame_count(decoder, src)
    partial = dst.with_name(f".{dst.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)          # an interrupted earlier try
    partial.mkdir(parents=True)
    for start in range(0, count, CHUNK):
        try:
            frames = decoder.get_frames_in_range(start, min(start + CHUNK, count)).data
        except Exception as err:                        # torchcodec's RuntimeError / IndexError with FFmpeg's text
            shutil.rmtree(partial)
            raise DataError(f"{src}: cannot decode frames from {start} ({str(err).splitlines()[0]}); "
                            "the file is probably corrupt: re-download it") from None
        if min(frames.shape[-2:]) > short_side:
            frames = v2.functional.resize(frames, short_side, antialias=True)
        for i, data in enumerate(torchvision.io.encode_jpeg(list(frames), quality=quality)):
            torchvision.io.write_file(str(partial / TEMPLATE.format(start + i)), data)
    partial.rename(dst)
    return count


def _videos(src_root: Path, dst_root: Path, dataset: str | None) -> dict[Path, Path]:
    """{video: its frame folder} of every video to extract."""
    if dataset is None:
        return {p: dst_root / p.relative_to(src_root).with_suffix("") for p in sorted(src_root.rglob("*"))
                if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES}
    folder, videos, _ = AUTHORS[dataset]
    read = lists.ucf101 if dataset == "ucf101" else lists.hmdb51
    found = {r.path for split in (1, 2, 3) for subset in ("train", "test") for r in read(src_root, split, subset)[0]}
    return {p: dst_root / folder / p.relative_to(src_root / videos).with_suffix("") for p in sorted(found)}


def _write_lists(src_root: Path, dst_root: Path, dataset: str, counts: dict[Path, int]) -> list[Path]:
    """The authors' list files of every split, for the clips that have a frame folder."""
    folder, videos, prefix = AUTHORS[dataset]
    read = lists.ucf101 if dataset == "ucf101" else lists.hmdb51
    written = []
    for split in (1, 2, 3):
        for subset in ("train", "test"):
            lines = []
            for r in read(src_root, split, subset)[0]:
                out = dst_root / folder / r.path.relative_to(src_root / videos).with_suffix("")
                if out in counts:
                    lines.append(f"{out.relative_to(dst_root).as_posix()} {counts[out]} {r.label}\n")
            path = dst_root / "list" / f"{prefix}_split{split}_{subset}.txt"
            write_text(path, "".join(lines))
            written.append(path)
    return written


def extract_frames(src_root: str | Path, dst_root: str | Path, dataset: str | None = None, short_side: int = 256,
                   quality: int = 90, jobs: int | None = 1, overwrite: bool = False,
                   progress: bool = False) -> dict[str, list]:
    """Frame folders of every video under src_root (see the module doc), `jobs` processes at a
    time (None: every core). Returns {"written": [...], "skipped": [...], "failed": ["path: error", ...],
    "lists": [...]}; a failed video is reported and the others go on."""
    if dataset is not None and dataset not in AUTHORS:
        raise ValueError(f"dataset must be one of {', '.join(AUTHORS)} (or None: the tree as it is), got {dataset!r}")
    if short_side < 1 or not 1 <= quality <= 100:
        raise ValueError(f"short_side must be >= 1 and quality in 1..100, got {short_side} and {quality}")
    src_root, dst_root = check_roots(src_root, dst_root)
    done: dict[str, list] = {"written": [], "skipped": [], "failed": [], "lists": []}
    counts: dict[Path, int] = {}
    todo = []
    for video, out in _videos(src_root, dst_root, dataset).items():
        if out.is_dir() and overwrite:
            shutil.rmtree(out)
        if out.is_dir():
            counts[out] = folder_num_frames(out, TEMPLATE)
            done["skipped"].append(out)
        else:
            todo.append((video, out))
    for out, count, error in run_videos(extract_video, todo, (short_side, quality), jobs, "extract-frames", progress):
        if error is None:
            counts[out] = count
            done["written"].append(out)
        else:
            done["failed"].append(error)
    done["written"].sort()
    if dataset is not None:
        done["lists"] = _write_lists(src_root, dst_root, dataset, counts)
    return done
