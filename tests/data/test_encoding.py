"""H.264 through the ffmpeg program: the same frames give the same bytes, in one process and
across processes; a missing program or a refused option is one clear line."""
import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch

from attnet.data import encoding, synthetic
from attnet.data.decoding import open_video, read_frames
from attnet.data.lists import DataError


def test_frames_come_back_close_to_what_was_written_with_the_asked_keyframe_interval(tmp_path):
    video, _ = synthetic.render(0, (0, 0, 0), frames=12, size=64)
    path = tmp_path / "v.mp4"
    encoding.write_h264(path, video, fps=8, crf=0, g=4, bf=0)
    decoder = open_video(path, seek_mode="exact")
    back = read_frames(decoder, path, torch.arange(12)).permute(0, 2, 3, 1).numpy()
    assert back.shape == video.shape and decoder.metadata.average_fps == 8
    # crf 0 is lossless in yuv420p: what is left is the colour conversion and chroma subsampling
    assert np.abs(back.astype(int) - video).mean() < 4
    keyframes = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries", "frame=key_frame",
                                "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True).stdout.split()
    keyframes = [k.strip(",") for k in keyframes]
    assert keyframes == ["1", "0", "0", "0"] * 3
    assert [p.name for p in tmp_path.iterdir()] == ["v.mp4"]            # the temporary file is gone


def test_the_same_frames_give_the_same_bytes_call_after_call(tmp_path):
    videos = [synthetic.render(0, (0, 0, i), frames=16, size=112)[0] for i in range(4)]
    digests = []
    for i, video in enumerate(videos + videos[:1]):     # torchcodec's encoder changed pictures between such calls
        encoding.write_h264(tmp_path / f"{i}.mp4", video, fps=8, tune="fastdecode")
        digests.append(hashlib.md5((tmp_path / f"{i}.mp4").read_bytes()).hexdigest())
    assert digests[4] == digests[0] and len(set(digests[:4])) == 4


@pytest.mark.slow
def test_a_dataset_generated_in_two_processes_is_the_same_bytes(tmp_path):
    # with torchcodec's VideoEncoder 9 of these 16 videos differed in decoded pixels
    code = ("import sys; from attnet.data import synthetic; synthetic.generate(sys.argv[1], num_classes=2, "
            "videos_per_class={'train': 6, 'val': 1, 'test': 1})")
    for name in ("a", "b"):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / name)], check=True)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert sum(f.suffix == ".mp4" for f in files) == 16
    assert [f for f in files if (tmp_path / "a" / f).read_bytes() != (tmp_path / "b" / f).read_bytes()] == []


def test_no_ffmpeg_program_or_a_refused_option_is_one_line_naming_the_file(tmp_path, monkeypatch):
    video = np.zeros((2, 16, 16, 3), np.uint8)
    with pytest.raises(DataError, match=r"x\.mp4: ffmpeg could not write it \(.*nosuchoption"):
        encoding.write_h264(tmp_path / "x.mp4", video, fps=8, nosuchoption=1)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match=r"x\.mp4: frames must be uint8 \[T, H, W, 3\], got float32"):
        encoding.write_h264(tmp_path / "x.mp4", video.astype(np.float32), fps=8)
    monkeypatch.setattr(encoding.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match=r"x\.mp4: the ffmpeg program is not on PATH; .*make system-deps"):
        encoding.write_h264(tmp_path / "x.mp4", video, fps=8)
