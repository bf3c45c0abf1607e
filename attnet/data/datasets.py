"""ClipDataset: records -> TSN-sampled, decoded, transformed clips; and `build_dataset`."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info
from torchvision import tv_tensors
from torchvision.transforms import v2

from attnet.registry import Registry

from . import lists, synthetic
from .decoding import (cache_file, cached_frames, decode_frames, folder_num_frames, frame_count, open_video,
                       read_frames, video_num_frames)
from .lists import DataError, VideoRecord
from .sampling import eval_indices, train_indices
from .transforms import Clips, ClipTransform, to_device

SUBSETS = ("train", "val", "test")
_SKIP_SLOTS = 64   # one counter per loader worker (modulo), so no lock is needed


def is_frame_folder(record: VideoRecord) -> bool:
    """Frame folders are directories, or listed with a frame count and not a file (folder
    names may contain dots, so the suffix decides nothing)."""
    return record.path.is_dir() or (record.num_frames is not None and not record.path.is_file())


class ClipDataset(Dataset):
    """Items are (clip, label): clip float [T, 3, S, S], or [clips, T, 3, S, S] when
    num_clips > 1 or three-crop testing (clips x crops in the leading dimension).

    `build_loader` fetches `uint8_item`s instead, uint8 `Clips`: the workers only decode and
    draw the crops, and `transforms.to_device` makes the same float clips from a batch on the
    training device.

    Training items use random TSN offsets and the random crop/flip; other subsets use the
    deterministic offsets of `frame_indices` and the centre crop.

    With `boxes_root`, items are (clip, label, boxes): the ground-truth actor boxes of the
    sampled frames, float [T, 4] (or [clips, T, 4]) x0, y0, x1, y1 in the clip's pixels, read
    from boxes_root/boxes/<class>/<name>.npy (the synthetic layout) and put through the same
    resize, crop and flip as the frames.
    """

    def __init__(self, records: list[VideoRecord], classes: list[str], train: bool, segments: int = 12,
                 num_clips: int = 1, size: int = 224, resize: int | None = None,
                 frame_template: str = "img_{:05d}.jpg", frame_start: int = 1, three_crop: bool = False,
                 on_bad_video: str = "error", normalize: bool = True, hflip: bool = True,
                 cache: str | Path | None = None, boxes_root: str | Path | None = None) -> None:
        if boxes_root is not None and three_crop and not train:
            raise ValueError("actor boxes with three-crop testing are not supported: set three_crop=False")
        if on_bad_video not in ("error", "skip"):
            raise ValueError(f"on_bad_video must be 'error' or 'skip', got {on_bad_video!r}")
        if segments < 1 or num_clips < 1:
            raise ValueError(f"segments and num_clips must be >= 1, got {segments} and {num_clips}")
        self.records, self.classes, self.train = records, classes, train
        self.segments, self.num_clips = segments, 1 if train else num_clips
        self.frame_template, self.frame_start = frame_template, frame_start
        self.on_bad_video = on_bad_video
        self.three_crop = three_crop and not train
        resize = resize or round(size * 256 / 224)
        if resize < size:
            raise ValueError(f"resize ({resize}) must be >= size ({size}): the shorter side is resized, then cropped")
        self.transform = ClipTransform(size, resize, train, normalize, hflip, self.three_crop)
        self._lengths: dict[int, int] = {}
        # cache (a directory, build_dataset's <root>/.decoded): every frame of a video is decoded
        # once, resized, into a .npy file there that every later read, run and process maps.
        # With actor boxes the frames are stored as decoded (the boxes take the same resize).
        self.cache = None if cache is None else Path(cache)
        self._resize = resize
        self.missing: list[str] = []     # listed but absent clips (Kinetics), left out of `records`
        # Bad-video counts in shared memory: DataLoader workers (fork, spawn or forkserver) add to
        # the same storage, so the trainer can report an epoch's skips after the workers are gone.
        self._skipped = torch.zeros(_SKIP_SLOTS, dtype=torch.int64).share_memory_()
        self.boxes_root = None if boxes_root is None else Path(boxes_root)

    def __len__(self) -> int:
        return len(self.records)

    @property
    def skipped(self) -> int:
        """Bad videos replaced since the last `reset_skipped()` (on_bad_video="skip")."""
        return int(self._skipped.sum())

    def reset_skipped(self) -> int:
        """Return the skip count and start a new one (the trainer calls it after each epoch)."""
        count = self.skipped
        self._skipped.zero_()
        return count

    def num_frames(self, index: int) -> int:
        record = self.records[index]
        if index not in self._lengths:
            if is_frame_folder(record):
                self._lengths[index] = record.num_frames or folder_num_frames(record.path, self.frame_template)
            else:
                self._lengths[index] = video_num_frames(record.path)
        return self._lengths[index]

    def _indices(self, num_frames: int) -> torch.Tensor:
        if self.train:
            return train_indices(num_frames, self.segments)[None]
        return eval_indices(num_frames, self.segments, self.num_clips)

    def frame_indices(self, index: int) -> torch.Tensor:
        """[clips, T] frame indices of item `index`: the deterministic test offsets for "val" and
        "test" (what the items use); for "train", a fresh random draw from the global torch RNG."""
        return self._indices(self.num_frames(index))

    def _read(self, index: int, pick) -> tuple[torch.Tensor, torch.Tensor]:
        """(frames, indices) of item `index`, where indices = pick(frame count) and frames are
        the decoded frames at indices.flatten(); a video file is opened once for both."""
        record = self.records[index]
        if is_frame_folder(record):
            indices = pick(self.num_frames(index))
            return decode_frames(record.path, indices.flatten(), self.frame_template, self.frame_start), indices
        decoder = open_video(record.path)
        indices = pick(frame_count(decoder, record.path))
        return read_frames(decoder, record.path, indices.flatten()), indices

    def _decoded(self, index: int) -> np.ndarray:
        """Every frame of item `index`, uint8 [F, 3, H, W], from the decoded cache (made on first use)."""
        record = self.records[index]
        resize = None if self.boxes_root is not None else self._resize
        settings = f"resize={resize} template={self.frame_template} start={self.frame_start}"

        def decode() -> torch.Tensor:
            frames, _ = self._read(index, torch.arange)
            return frames if resize is None else v2.functional.resize(frames, resize, antialias=True)
        return cached_frames(cache_file(self.cache, record.path, settings), decode)

    def _boxes(self, index: int, indices: torch.Tensor, canvas: tuple[int, int]) -> list[tv_tensors.BoundingBoxes]:
        """The actor boxes of the sampled frames, one BoundingBoxes [T, 4] per clip."""
        path = self.records[index].path
        boxes = synthetic.load_boxes(self.boxes_root, path.relative_to(self.boxes_root))
        if len(boxes) <= int(indices.max()):
            raise DataError(f"{path}: its box file has {len(boxes)} boxes, but frame {int(indices.max())} was sampled; "
                            "regenerate the boxes with the video")
        picked = torch.from_numpy(boxes[indices.numpy()].astype(np.float32))
        return [tv_tensors.BoundingBoxes(b, format="XYXY", canvas_size=canvas) for b in picked]

    def _load(self, index: int) -> tuple[Clips, torch.Tensor | None]:
        if self.cache is None:
            frames, indices = self._read(index, self._indices)
        else:                               # the same indices and frames as the uncached read
            video = self._decoded(index)
            indices = self._indices(len(video))
            frames = torch.from_numpy(video[indices.flatten().numpy()])
        frames = frames.view(len(indices), self.segments, *frames.shape[1:])
        crops = self.transform.crops(*frames.shape[-2:], len(indices))
        boxes = None
        if self.boxes_root is not None:                      # boxes take the frames' resize, crop and flip
            boxes = torch.stack([self.transform.boxes(b, c).as_subclass(torch.Tensor)
                                 for b, c in zip(self._boxes(index, indices, frames.shape[-2:]), crops.tolist())])
            boxes = boxes[0] if len(boxes) == 1 else boxes
        return Clips(frames, crops, self.transform), boxes

    def __getitem__(self, index: int) -> tuple:
        """A float item, transformed here on the CPU as `to_device` transforms a batch."""
        clip, *rest = self.uint8_item(index)
        return (to_device(Clips(clip.frames[None], clip.crops[None], clip.transform), "cpu")[0], *rest)

    def uint8_item(self, index: int) -> tuple:
        """(Clips, label[, boxes]) of `index`; a bad video is replaced by the next readable one
        with on_bad_video="skip"."""
        for attempt in range(len(self.records)):
            i = (index + attempt) % len(self.records)
            try:
                clip, boxes = self._load(i)
                return (clip, self.records[i].label) if boxes is None else (clip, self.records[i].label, boxes)
            except DataError as err:
                if self.on_bad_video == "error":
                    raise
                worker = get_worker_info()
                self._skipped[0 if worker is None else (worker.id + 1) % _SKIP_SLOTS] += 1
                warnings.warn(f"skipped bad video: {err}", stacklevel=2)
        raise DataError("every video of the dataset failed to decode; see the warnings above")


def validation(name: str, root: str | Path, val_fraction: float = 0.1, select_on_test: bool = False,
               val_list: str | Path | None = None) -> str:
    """Where a dataset's "val" subset comes from: "list" (its own validation list), "test"
    (select_on_test, the authors' protocol: the best epoch is chosen on the test list), "held
    out" (val_fraction of the training list, whole groups: `lists.hold_out`) or "none" (the
    last epoch is tested). UCF101 and HMDB51 ship no validation list, nor does a `list` dataset
    without val_list or <root>/val.txt; Kinetics, the synthetic data and datasets registered
    elsewhere have their own."""
    if name in ("ucf101", "hmdb51") or (name == "list" and val_list is None and not (Path(root) / "val.txt").is_file()):
        return "test" if select_on_test else "held out" if val_fraction > 0 else "none"
    return "list"


# what a held-out validation keeps together; a `list` goes by its clips' names (lists.clip_group)
HOLD_OUT_GROUPS = {"ucf101": lists.ucf101_group, "hmdb51": lists.hmdb51_source}


def _official(name: str):
    """UCF101 / HMDB51: their split lists (train and test; "val" is held out by build_dataset)."""
    read = lists.ucf101 if name == "ucf101" else lists.hmdb51

    def records(root: Path, subset: str, split: int = 1, **_) -> tuple[list[VideoRecord], list[str], list[str]]:
        if split not in (1, 2, 3):
            raise ValueError(f"{name} has splits 1, 2 and 3, got {split}")
        return (*read(root, split, subset), [])
    return records


def _kinetics(name: str):
    """Kinetics: the annotation CSVs; clips listed but absent are counted and left out."""
    def records(root: Path, subset: str, kinetics_csv: str | Path | None = None, **_):
        found, classes, missing = lists.kinetics(root, subset, Path(kinetics_csv) if kinetics_csv else None)
        if missing:
            warnings.warn(f"{name} {subset}: {len(missing)} clips listed but not found under {root} "
                          f"(e.g. {missing[0]}); they are left out", stacklevel=3)
        return found, classes, missing
    return records


def _list_file(root: Path, subset: str, list_file: str | Path | None = None, **_):
    """A list file per subset (default <root>/<subset>.txt): videos or the authors' frame folders."""
    found, classes = lists.list_file(root, Path(list_file) if list_file else root / f"{subset}.txt")
    return found, classes, []


# name -> reader(root, subset, *, split, list_file, kinetics_csv) -> (records, classes, missing clips);
# "val" is asked of a reader only where `validation` says the dataset has its own list
DATASETS = Registry("dataset")
for _name in ("ucf101", "hmdb51"):
    DATASETS.register(_name, _official(_name))
for _name in ("kinetics400", "kinetics600"):
    DATASETS.register(_name, _kinetics(_name))
DATASETS.register("list", _list_file)
DATASETS.register("synthetic", _list_file)


def build_dataset(name: str, root: str | Path, split: int = 1, subset: str = "train", segments: int = 12,
                  num_clips: int = 1, size: int = 224, resize: int | None = None,
                  list_file: str | Path | None = None, kinetics_csv: str | Path | None = None,
                  frame_template: str = "img_{:05d}.jpg", frame_start: int = 1, three_crop: bool = False,
                  on_bad_video: str = "error", normalize: bool = True, hflip: bool = True,
                  cache: bool = False, boxes: bool = False, val_fraction: float = 0.1,
                  select_on_test: bool = False, train_list: str | Path | None = None,
                  val_list: str | Path | None = None, test_list: str | Path | None = None) -> ClipDataset:
    """A dataset by name, read from its official layout under `root` (see `attnet data layout`).

    `list` datasets read <root>/<subset>.txt, or train_list / val_list / test_list (list_file:
    the asked subset's); "{root}" and "{split}" in those paths are filled in.
    Where the dataset ships no validation list (UCF101, HMDB51, a `list` without val_list or
    <root>/val.txt), "val" is `val_fraction` of the training list, held out by group (UCF101
    `gXX`, HMDB51 source video, otherwise by clip; see `lists.hold_out`) and left out of "train",
    so model selection never sees the test list. val_fraction=0: no "val" (a DataError).
    select_on_test=True is the authors' protocol: "val" is the test list and "train" the whole
    training list. (`validation` says which applies.)
    hflip=False turns off the training flip (the synthetic classes include left vs right).
    cache=True decodes each video once into root/.decoded/ (all frames, uint8, resized), read memory-mapped after.
    boxes=True adds each frame's ground-truth actor box to the items (root/boxes/, as the synthetic dataset has).
    """
    read = DATASETS.get(name)
    if subset not in SUBSETS:
        raise ValueError(f"unknown subset {subset!r}: choose from {', '.join(SUBSETS)}")
    if not 0 <= val_fraction < 1:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    root = Path(root)
    if not root.is_dir():
        hint = "`attnet data synth`" if name == "synthetic" else f"`attnet data layout {name}`"
        raise DataError(f"{root}: dataset root not found; see {hint}")
    given = {"train": train_list, "val": val_list, "test": test_list} | ({subset: list_file} if list_file else {})
    given = {k: lists.list_path(v, root, split) for k, v in given.items()}
    source = validation(name, root, val_fraction, select_on_test, given["val"])
    if subset == "val" and source == "none":
        raise DataError(f"{name} at {root}: no validation list and data.val_fraction=0; set data.val_fraction=0.1 "
                        "to hold one out of the training list" + (", data.val_list=<file>" if name == "list" else "")
                        + ", or data.select_on_test=true for the authors' protocol")
    if subset == "val" and source == "list" and given["val"] is not None and not given["val"].is_file():
        raise DataError(f"{given['val']}: validation list not found; fix data.val_list, or unset it to hold out "
                        "data.val_fraction of the training list")
    read_as = {"test": "test", "held out": "train"}.get(source, subset) if subset == "val" else subset
    records, classes, missing = read(root, read_as, split=split, list_file=given[read_as], kinetics_csv=kinetics_csv)
    if source == "held out" and subset != "test":
        train, val = lists.hold_out(records, HOLD_OUT_GROUPS.get(name, lists.clip_group), val_fraction)
        records = val if subset == "val" else train
    if not records:
        raise DataError(f"{root}: no videos for {name} split {split} subset {subset!r}; see `attnet data check`")
    dataset = ClipDataset(records, classes, subset == "train", segments, num_clips, size, resize,
                          frame_template, frame_start, three_crop, on_bad_video, normalize, hflip,
                          root / ".decoded" if cache else None,
                          boxes_root=root if boxes else None)
    dataset.missing = missing
    return dataset
