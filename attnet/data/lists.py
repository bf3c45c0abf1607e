"""Readers for the split files of UCF101, HMDB51, Kinetics and generic list files.

Every reader returns (records, classes): `VideoRecord`s with 0-based labels and the class
names by label. Files are read as their publishers ship them: a BOM, CRLF line ends,
trailing spaces and blank lines are tolerated. Anything else wrong is a `DataError`
naming the file and line.
"""
from __future__ import annotations

import csv
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


class DataError(ValueError):
    """Bad input data: the message names the file (and line) and what to do."""


@dataclass(frozen=True)
class VideoRecord:
    path: Path               # a video file, or a folder of frames
    label: int
    num_frames: int | None = None   # known for frame folders listed with their count


def read_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, stripped text) of the non-blank lines of a text file."""
    if not path.is_file():
        raise DataError(f"{path}: file not found; check the dataset root (see `attnet data layout`)")
    with open(path, encoding="utf-8-sig", newline=None) as f:
        for number, line in enumerate(f, start=1):
            text = line.strip()
            if text:
                yield number, text


def _inside(root: Path, relative: str, where: str) -> Path:
    """root/relative, refusing paths that leave the dataset root."""
    path = (root / relative).resolve()
    if not path.is_relative_to(root.resolve()):
        raise DataError(f"{where}: path {relative!r} escapes the dataset root {root}; list paths must be relative to it")
    return root / relative


def _check_label(label: int, classes: list[str], where: str) -> int:
    if not 0 <= label < len(classes):
        raise DataError(f"{where}: label {label} is outside the {len(classes)} classes (0..{len(classes) - 1})")
    return label


def read_classes(path: Path) -> list[str]:
    """A class file: one name a line ("name", or "index name" with 0- or 1-based indices)."""
    rows = [text.split(maxsplit=1) for _, text in read_lines(path)]
    if rows and all(len(r) == 2 and r[0].isdigit() for r in rows):
        return [name for _, name in sorted(rows, key=lambda r: int(r[0]))]
    return [" ".join(r) for r in rows]


# --- UCF101 ---------------------------------------------------------------------------------
def ucf101(root: Path, split: int, subset: str) -> tuple[list[VideoRecord], list[str]]:
    """ucfTrainTestlist/{classInd,trainlist0N,testlist0N}.txt; videos in UCF-101/<Class>/."""
    lists = root / "ucfTrainTestlist"
    index = {}
    for number, text in read_lines(lists / "classInd.txt"):
        parts = text.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise DataError(f"{lists / 'classInd.txt'}:{number}: expected '<1-based id> <ClassName>', got {text!r}")
        index[parts[1]] = int(parts[0]) - 1
    classes = [name for name, _ in sorted(index.items(), key=lambda kv: kv[1])]
    kind = "trainlist" if subset == "train" else "testlist"
    path = lists / f"{kind}0{split}.txt"
    records = []
    for number, text in read_lines(path):
        where = f"{path}:{number}"
        parts = text.split()
        relative = parts[0]
        folder = relative.split("/")[0]
        if folder not in index:
            raise DataError(f"{where}: class folder {folder!r} is not in classInd.txt")
        label = index[folder]
        if len(parts) == 2:       # trainlist lines carry the 1-based label too: they must agree
            if not parts[1].isdigit() or int(parts[1]) - 1 != label:
                raise DataError(f"{where}: label {parts[1]!r} disagrees with class folder {folder!r}")
        elif len(parts) != 1:
            raise DataError(f"{where}: expected 'Class/v_X.avi [label]', got {text!r}")
        records.append(VideoRecord(_inside(root / "UCF-101", relative, where), label))
    return records, classes


# --- HMDB51 ---------------------------------------------------------------------------------
def hmdb51(root: Path, split: int, subset: str) -> tuple[list[VideoRecord], list[str]]:
    """testTrainMulti_7030_splits/<class>_test_split<N>.txt: tag 1 = train, 2 = test, 0 = unused."""
    lists = root / "testTrainMulti_7030_splits"
    if not lists.is_dir():
        raise DataError(f"{lists}: split folder not found; see `attnet data layout hmdb51`")
    suffix = f"_test_split{split}.txt"
    files = sorted(p for p in lists.iterdir() if p.name.endswith(suffix))
    if not files:
        raise DataError(f"{lists}: no '*{suffix}' files; see `attnet data layout hmdb51`")
    classes = [p.name[: -len(suffix)] for p in files]
    wanted = "1" if subset == "train" else "2"
    records = []
    for label, path in enumerate(files):
        for number, text in read_lines(path):
            parts = text.split()
            if len(parts) != 2 or parts[1] not in ("0", "1", "2"):
                raise DataError(f"{path}:{number}: expected '<video>.avi <0|1|2>', got {text!r}")
            if parts[1] == wanted:
                records.append(VideoRecord(_inside(root / classes[label], parts[0], f"{path}:{number}"), label))
    return records, classes


# --- Kinetics -------------------------------------------------------------------------------
KINETICS_CSV = {"train": ("train.csv",), "val": ("validate.csv", "val.csv"), "test": ("test.csv",)}
CLIP_SUFFIXES = (".mp4", ".mkv", ".webm")   # the CVDF mirror ships mp4; youtube downloads may be mkv/webm


def _kinetics_rows(csv_path: Path) -> list[tuple[str, str, str]]:
    """(where, label, clip name without suffix) of every row of an official Kinetics CSV.
    The label column is absent from some test CSVs: those rows get the label ""."""
    lines = list(read_lines(csv_path))
    if not lines:
        raise DataError(f"{csv_path}: empty annotation file")
    header = next(csv.reader([lines[0][1]]))
    for column in ("youtube_id", "time_start", "time_end"):
        if column not in header:
            raise DataError(f"{csv_path}:1: missing column {column!r}; expected the official Kinetics CSV header "
                            "(label,youtube_id,time_start,time_end,split)")
    rows = []
    for number, text in lines[1:]:
        row = dict(zip(header, next(csv.reader([text]))))
        try:
            name = f"{row['youtube_id']}_{int(float(row['time_start'])):06d}_{int(float(row['time_end'])):06d}"
        except (KeyError, ValueError):
            raise DataError(f"{csv_path}:{number}: malformed row {text!r}") from None
        rows.append((f"{csv_path}:{number}", row.get("label", ""), name))
    return rows


def kinetics_csv(root: Path, subset: str) -> Path:
    """The subset's official CSV under root or root/annotations (the first name that exists)."""
    candidates = [root / d / n for n in KINETICS_CSV[subset] for d in ("", "annotations")]
    return next((p for p in candidates if p.is_file()), candidates[0])


def kinetics(root: Path, subset: str, csv_path: Path | None = None) -> tuple[list[VideoRecord], list[str], list[str]]:
    """Official CSVs (label, youtube_id, time_start, time_end, split[, is_cc]).

    Clips are `<youtube_id>_<start:06d>_<end:06d>.mp4`, in class folders or flat, anywhere
    under root. Classes are the sorted labels of train.csv (beside the CSV when present).
    Returns (records, classes, missing clip names): missing clips are common in Kinetics,
    so they are counted, not fatal. Unlabelled test rows get label -1.
    """
    csv_path = csv_path or kinetics_csv(root, subset)
    rows = _kinetics_rows(csv_path)
    train_csv = csv_path.with_name("train.csv")
    labelled = _kinetics_rows(train_csv) if train_csv.is_file() and train_csv != csv_path else rows
    classes = sorted({label for _, label, _ in labelled if label})
    index = {name: i for i, name in enumerate(classes)}
    found = {Path(f).stem: Path(d) / f for d, _, files in os.walk(root) for f in files
             if f.endswith(CLIP_SUFFIXES)}
    records, missing = [], []
    for where, label, name in rows:
        if label and label not in index:
            raise DataError(f"{where}: label {label!r} is not one of the {len(classes)} training classes")
        if not label and subset == "train":
            raise DataError(f"{where}: training row without a label; pass the official train.csv")
        if name not in found:
            missing.append(f"{name}.mp4")
        else:
            records.append(VideoRecord(found[name], index[label] if label else -1))
    return records, classes, missing


# --- generic lists --------------------------------------------------------------------------
def list_file(root: Path, path: Path, classes: list[str] | None = None) -> tuple[list[VideoRecord], list[str]]:
    """'relative/path label' (videos, mmaction2) or 'relative/path num_frames label' (frame
    folders, the authors' format). Paths may contain spaces: fields are taken from the right,
    so a line whose last two fields are integers is a frame folder. Class names come from a
    classes.txt beside the list when there is one."""
    records = []
    raw = []
    for number, text in read_lines(path):
        where = f"{path}:{number}"
        head, _, last = text.rpartition(" ")
        if not head or not last.lstrip("-").isdigit():
            raise DataError(f"{where}: expected 'relative/path label' or 'relative/path num_frames label', got {text!r}")
        relative, count = head, None
        before, _, middle = head.rpartition(" ")
        if before and middle.isdigit():
            relative, count = before, int(middle)
        raw.append((where, relative, count, int(last)))
    if classes is None:
        class_file = path.parent / "classes.txt"
        classes = read_classes(class_file) if class_file.is_file() else \
            [str(i) for i in range(max((r[3] for r in raw), default=-1) + 1)]
    for where, relative, count, label in raw:
        records.append(VideoRecord(_inside(root, relative, where), _check_label(label, classes, where), count))
    return records, classes


def list_path(given: str | Path | None, root: Path, split: int = 1) -> Path | None:
    """A configured list file with "{root}" and "{split}" filled in, so that a preset names its
    lists under whatever data.root is (None stays None: the reader's default)."""
    if given is None:
        return None
    return Path(str(given).replace("{root}", str(root)).replace("{split}", str(split)))


# --- validation held out of the training list -----------------------------------------------
UCF101_NAME = re.compile(r"v_.+_(g\d+)_c\d+")
# <source video>_<action>_<body part>_<camera motion>_<people>_<viewpoint>_<quality>_<clip number>
HMDB51_NAME = re.compile(r"(.+)_[fhlu]_[cn]m_np\d+_(?:fr|ba|le|ri)_(?:goo|med|bad)_\d+")


def clip_name(record: VideoRecord) -> str:
    """A clip's name: a video's file name without its suffix, a frame folder's whole name
    (folder names may contain dots)."""
    return record.path.name if record.num_frames is not None else record.path.stem


def ucf101_group(record: VideoRecord) -> str:
    """The `gXX` group of `v_<Class>_gXX_cYY.avi` (clips of one group share actor and scene);
    a name without one is its own group."""
    match = UCF101_NAME.fullmatch(clip_name(record))
    return match.group(1) if match else clip_name(record)


def hmdb51_source(record: VideoRecord) -> str:
    """The source video of an HMDB51 clip: its name without the meta tags and clip number
    (clips of one source may differ in viewpoint or quality tags); a name without tags loses
    only a trailing `_N`."""
    name = clip_name(record)
    match = HMDB51_NAME.fullmatch(name)
    if match:
        return match.group(1)
    head, _, number = name.rpartition("_")
    return head if head and number.isdigit() else name


def clip_group(record: VideoRecord) -> str:
    """What a clip is held out with when the dataset is not named (a `list`): its UCF101 group
    or HMDB51 source video when its name is one of theirs, otherwise the clip alone."""
    name = clip_name(record)
    if UCF101_NAME.fullmatch(name):
        return ucf101_group(record)
    if HMDB51_NAME.fullmatch(name):
        return hmdb51_source(record)
    return str(record.path)


def hold_out(records: list[VideoRecord], group, fraction: float,
             seed: int = 0) -> tuple[list[VideoRecord], list[VideoRecord]]:
    """(train, val): about `fraction` of each class's records moved to val, whole groups at a
    time (group(record) -> key), chosen by a seeded shuffle so every run gets the same split.
    A class with a single group stays in train; both lists keep the input order."""
    rng = random.Random(seed)
    chosen: set[tuple[int, str]] = set()
    for label in sorted({r.label for r in records}):
        sizes: dict[str, int] = {}
        for r in records:
            if r.label == label:
                sizes[group(r)] = sizes.get(group(r), 0) + 1
        keys = sorted(sizes)
        rng.shuffle(keys)
        target, taken = fraction * sum(sizes.values()), 0
        for key in keys[:-1]:                # at least one group stays in train
            if taken and abs(taken + sizes[key] - target) >= abs(taken - target):
                break
            chosen.add((label, key))
            taken += sizes[key]
    val = [r for r in records if (r.label, group(r)) in chosen]
    return [r for r in records if (r.label, group(r)) not in chosen], val
