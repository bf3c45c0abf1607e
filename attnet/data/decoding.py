"""Frame decoding: only the sampled frames, from video files or frame folders; and the decoded
cache, every frame of a video decoded once into a .npy file that all runs and processes map."""
from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torchvision.io

from attnet.files import atomic_path

from .lists import DataError

# torchvision 0.29 flags its image codecs as deprecated; they remain the JPEG path for frame folders
warnings.filterwarnings("ignore", message="The image decoding and encoding capabilities of TorchVision",
                        category=DeprecationWarning)


def not_found(path: Path) -> DataError:
    return DataError(f"{path}: video not found; check the dataset root and the list file")


def open_video(path: Path, seek_mode: str = "approximate"):
    """A torchcodec VideoDecoder. "approximate" trusts the container's index instead of
    scanning the whole file first, which is what makes a sampled read cheap (`python -m
    attnet.bench data` prints both modes)."""
    from torchcodec.decoders import VideoDecoder   # imported here: FFmpeg is loaded on first use
    if not path.is_file():
        raise not_found(path)
    try:
        return VideoDecoder(str(path), dimension_order="NCHW", seek_mode=seek_mode)
    except Exception as err:   # torchcodec raises RuntimeError/ValueError with FFmpeg's text
        raise DataError(f"{path}: unreadable or corrupt video ({str(err).splitlines()[0]}); "
                        "re-download it or remove it from the list") from None


def frame_count(decoder, path: Path) -> int:
    """Frame count from the container's metadata (falls back to duration x fps)."""
    meta = decoder.metadata
    count = meta.num_frames
    if not count and meta.duration_seconds and meta.average_fps:
        count = int(meta.duration_seconds * meta.average_fps)
    if not count:
        raise DataError(f"{path}: video has no decodable frame; re-download it or remove it from the list")
    return int(count)


def read_frames(decoder, path: Path, indices: torch.Tensor) -> torch.Tensor:
    """uint8 [len(indices), 3, H, W]: each distinct index is decoded once, in order.

    Indices come from the container's frame count, which some files over-report (a header
    written before the last frames were lost). When a decode fails, the file is scanned for
    the frames it really has and indices past its end read its last real frame."""
    unique, inverse = torch.unique(indices, return_inverse=True)
    try:
        return decoder.get_frames_at(unique.tolist()).data[inverse]
    except Exception as err:
        reason = str(err).splitlines()[0]
    scanned = open_video(path, "exact")
    real = frame_count(scanned, path)
    if int(unique[-1]) < real:            # the failing frames exist: the file is damaged, not short
        raise DataError(f"{path}: cannot decode frames {unique.tolist()[:4]}... ({reason}); "
                        "the file is probably corrupt: re-download it")
    try:
        frames = scanned.get_frames_at(unique.clamp(max=real - 1).tolist()).data
    except Exception as err:
        raise DataError(f"{path}: cannot decode frames {unique.tolist()[:4]}... ({str(err).splitlines()[0]}); "
                        "the file is probably truncated: re-download it") from None
    warnings.warn(f"{path}: the container reports more frames than the {real} it holds; "
                  f"frames past {real - 1} read as frame {real - 1}", stacklevel=2)
    return frames[inverse]


def video_num_frames(path: Path) -> int:
    return frame_count(open_video(path), path)


def decode_video(path: Path, indices: torch.Tensor, seek_mode: str = "approximate") -> tuple[torch.Tensor, int]:
    """uint8 [len(indices), 3, H, W] frames at `indices` (clamped to the real length), and the length."""
    decoder = open_video(path, seek_mode)
    count = frame_count(decoder, path)
    return read_frames(decoder, path, indices.clamp(0, count - 1)), count


def folder_num_frames(folder: Path, template: str) -> int:
    """Number of frames in a folder named by `template` (e.g. 'img_{:05d}.jpg')."""
    if not folder.is_dir():
        raise DataError(f"{folder}: frame folder not found; check the dataset root and the list file")
    suffix = Path(template.format(0)).suffix
    count = sum(1 for p in folder.iterdir() if p.suffix == suffix)
    if count == 0:
        raise DataError(f"{folder}: no '{suffix}' frames; check frame_template ({template!r})")
    return count


def decode_frames(folder: Path, indices: torch.Tensor, template: str, start: int = 1,
                  device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 [len(indices), 3, H, W] from JPEG files; frame k is template.format(k + start).
    Each distinct frame is read once and all are decoded in one `decode_jpeg` call: batched
    nvJPEG with device="cuda", libjpeg on the CPU (the same pixels as one file at a time)."""
    if not folder.is_dir():
        raise DataError(f"{folder}: frame folder not found; check the dataset root and the list file")
    wanted = indices.tolist()
    distinct = list(dict.fromkeys(wanted))
    paths = [folder / template.format(k + start) for k in distinct]
    data = []
    for path in paths:
        try:
            data.append(torchvision.io.read_file(str(path)))
        except (RuntimeError, OSError) as err:
            raise _unreadable(path, err) from None
    try:
        frames = torchvision.io.decode_jpeg(data, mode=torchvision.io.ImageReadMode.RGB, device=device)
    except RuntimeError:                # name the file: decode one at a time until it fails
        for path, raw in zip(paths, data):
            try:
                torchvision.io.decode_jpeg(raw, mode=torchvision.io.ImageReadMode.RGB, device=device)
            except RuntimeError as err:
                raise _unreadable(path, err) from None
        raise
    position = {k: i for i, k in enumerate(distinct)}
    return torch.stack(frames)[[position[k] for k in wanted]]


def _unreadable(path: Path, err: Exception) -> DataError:
    return DataError(f"{path}: cannot read frame ({str(err).splitlines()[0]}); "
                     "check frame_template, frame_start and the frame count in the list")


CACHE_FORMAT = 1     # bump when what a cache file holds changes: every older file is then re-decoded


def cache_file(cache_dir: Path, source: Path, settings: str) -> Path:
    """Where the decoded frames of `source` live: named after its path under cache_dir's parent
    (the dataset root), keyed by its size, its mtime and the decode `settings`, so a rewritten
    video or other settings never read an older file."""
    if not source.exists():             # the decoder's own error, so on_bad_video=skip counts it
        raise not_found(source)
    stat = source.stat()
    key = hashlib.sha1(f"{CACHE_FORMAT}|{stat.st_size}|{stat.st_mtime_ns}|{settings}".encode()).hexdigest()[:16]
    try:
        name = source.resolve().relative_to(cache_dir.parent.resolve())
    except ValueError:                      # a listed path outside the root
        name = Path(hashlib.sha1(str(source.resolve()).encode()).hexdigest())
    return cache_dir / f"{name}.{key}.npy"


def cached_frames(path: Path, decode: Callable[[], torch.Tensor]) -> np.ndarray:
    """The uint8 frames stored at `path`, memory-mapped read-only; on the first call, decode()
    is written there atomically (processes racing on one video each write a file of their own
    and rename it over, with the same content). Files of older keys stay until .decoded/ is
    deleted: two settings in use at once (with and without actor boxes) must not evict each other."""
    if not path.is_file():
        frames = decode().numpy()
        try:
            with atomic_path(path) as tmp, open(tmp, "wb") as f:
                np.save(f, frames)
        except OSError as err:
            raise DataError(f"{path}: cannot write the decoded cache ({err.strerror or err}); make "
                            f"{path.parent} writable and free disk space, or set data.cache=false") from None
    return np.load(path, mmap_mode="r")
