"""Writing H.264 with the ffmpeg program, so that the same frames give the same file.

torchcodec's VideoEncoder (0.x, this kit's pin) encodes the same frames to different pictures
from one call to the next (in one process and across processes; about 2 in 3 of the synthetic
videos differed in decoded pixels, by up to 36 levels, between two generations on one
machine), so a dataset generated twice trained differently. The ffmpeg program, fed the raw
RGB frames on stdin, writes the same bytes every time; x264 runs on one thread, whose output
does not depend on the machine's core count. tests/data/test_encoding.py checks it.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import torch

from attnet.files import atomic_path

from .lists import DataError

FFMPEG_HINT = "install Debian's ffmpeg (`make system-deps` does; or apt-get install ffmpeg)"


def write_h264(path: str | Path, frames: np.ndarray | torch.Tensor, fps: float, crf: int = 18,
               **x264: str | int) -> None:
    """frames: uint8 RGB [T, H, W, 3] (even H and W) -> `path` as H.264 in yuv420p at `crf`,
    with x264 options (tune="fastdecode", g=4, bf=0, ...) given as ffmpeg's own flags.
    Written through a temporary file beside it: an interrupted call leaves no half a video."""
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise DataError(f"{path}: the ffmpeg program is not on PATH; {FFMPEG_HINT}")
    frames = np.ascontiguousarray(frames.numpy() if isinstance(frames, torch.Tensor) else frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{path}: frames must be uint8 [T, H, W, 3], got {frames.dtype} {list(frames.shape)}")
    t, h, w, _ = frames.shape
    options = [arg for key, value in x264.items() for arg in (f"-{key}", str(value))]
    with atomic_path(Path(path)) as tmp:
        command = [exe, "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
                   "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "-",
                   "-c:v", "libx264", "-threads", "1", "-pix_fmt", "yuv420p", "-crf", str(crf), *options,
                   "-f", "mp4", str(tmp)]
        done = subprocess.run(command, input=frames.tobytes(), capture_output=True)
        if done.returncode != 0:
            said = "; ".join(line.strip() for line in done.stderr.decode(errors="replace").splitlines() if line.strip())
            raise DataError(f"{path}: ffmpeg could not write it ({said or f'exit {done.returncode}'})")
