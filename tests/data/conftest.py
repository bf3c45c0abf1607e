"""Tiny real files in the datasets' formats, made per test in a tmp dir."""
from pathlib import Path

import pytest
import torch


def index_video(num_frames: int, height: int = 48, width: int = 64) -> torch.Tensor:
    """uint8 [F, 3, H, W] whose frame i is a flat grey of value 8 * i: decodable back to its index."""
    values = (torch.arange(num_frames, dtype=torch.uint8) * 8).view(-1, 1, 1, 1)
    return values.expand(num_frames, 3, height, width).contiguous()


def write_mp4(path: Path, frames: torch.Tensor, fps: int = 25, **options) -> Path:
    from torchcodec.encoders import VideoEncoder
    path.parent.mkdir(parents=True, exist_ok=True)
    VideoEncoder(frames, frame_rate=fps).to_file(str(path), codec="libx264", pixel_format="yuv444p", crf=0, **options)
    return path


def write_avi(path: Path, frames: torch.Tensor, fps: int = 25) -> Path:
    """MPEG-4 part 2 in AVI, the codec and container UCF101 and HMDB51 ship."""
    from torchcodec.encoders import VideoEncoder
    path.parent.mkdir(parents=True, exist_ok=True)
    VideoEncoder(frames, frame_rate=fps).to_file(str(path), codec="mpeg4", pixel_format="yuv420p")
    return path


def over_report_avi(path: Path, count: int) -> Path:
    """Patch an AVI's headers to claim `count` frames (the main header's dwTotalFrames and the
    video stream header's dwLength), as files whose last frames were lost do."""
    import struct
    data = bytearray(path.read_bytes())
    avih, strh = data.find(b"avih"), data.find(b"strh")
    assert avih > 0 and data[strh + 8:strh + 12] == b"vids"
    struct.pack_into("<I", data, avih + 8 + 16, count)
    struct.pack_into("<I", data, strh + 8 + 32, count)
    path.write_bytes(bytes(data))
    return path


def write_jpegs(folder: Path, frames: torch.Tensor, template: str = "img_{:05d}.jpg", start: int = 1) -> Path:
    import torchvision.io
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        torchvision.io.write_file(str(folder / template.format(i + start)), torchvision.io.encode_jpeg(frame, quality=100))
    return folder


def decoded_index(frame: torch.Tensor) -> int:
    """Which index_video frame a decoded (uint8 or [0, 1] float) frame is."""
    value = frame.float().mean().item() * (255 if frame.is_floating_point() else 1)
    return int(round(value / 8))


def write_text(path: Path, lines: list[str], crlf: bool = True, bom: bool = False) -> Path:
    """Lines as a publisher might ship them: CRLF, trailing spaces, a blank line, an optional BOM."""
    path.parent.mkdir(parents=True, exist_ok=True)
    end = "\r\n" if crlf else "\n"
    body = end.join(line + "  " for line in lines) + end + end
    path.write_bytes(("\ufeff" if bom else "").encode() + body.encode())
    return path


@pytest.fixture
def ucf_root(tmp_path):
    root = tmp_path / "ucf"
    write_text(root / "ucfTrainTestlist" / "classInd.txt", ["1 ApplyEyeMakeup", "2 Archery", "3 Basketball"], bom=True)
    write_text(root / "ucfTrainTestlist" / "trainlist01.txt",
               ["ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1", "Basketball/v_Basketball_g08_c01.avi 3"])
    write_text(root / "ucfTrainTestlist" / "testlist01.txt", ["Archery/v_Archery_g01_c01.avi"])
    return root


@pytest.fixture
def hmdb_root(tmp_path):
    root = tmp_path / "hmdb"
    split = root / "testTrainMulti_7030_splits"
    write_text(split / "brush_hair_test_split1.txt", ["a.avi 1", "b.avi 2", "c.avi 0"])
    write_text(split / "cartwheel_test_split1.txt", ["d.avi 2", "e.avi 1", "f.avi 1"])
    return root


HMDB_CLIPS = {   # the authors' list names, by class: clips of one source differ in their tags
    "brush_hair": ["April_09_brush_hair_u_nm_np1_ba_goo_0", "April_09_brush_hair_u_nm_np1_fr_goo_1",
                   "Brushing_my_long_hair_brush_hair_u_nm_np1_ba_goo_2", "Brushing_my_long_hair_brush_hair_u_nm_np1_fr_goo_0",
                   "Haarek_mmen_brush_hair_h_cm_np1_fr_goo_0", "red_head_brush_hair_u_cm_np1_fr_goo_1",
                   "Ella_brushing_her_amazing_long_hair_brush_hair_u_cm_np1_ba_goo_0"],
    "cartwheel": ["Aerial_Cartwheel_Tutorial_By_Jujimufu_cartwheel_f_nm_np1_ri_med_0",
                  "Parada_de_mao_cartwheel_f_cm_np1_ba_med_1", "Parada_de_mao_cartwheel_f_cm_np1_fr_med_2",
                  "turnles!!_cartwheel_f_cm_np1_ri_med_0", "turnles!!_cartwheel_f_cm_np1_ri_med_1",
                  "how_to_do_a_cartwheel_cartwheel_f_cm_np1_ri_med_0"],
}


def authors_hmdb(root: Path, frames: int = 0, size: int = 32) -> Path:
    """The authors' release layout: <root>/HMDB/<class>/<video>/0.jpg.. (0-based) and
    <root>/list/hmdb_split1_{train,test}.txt lines "HMDB/<class>/<video> <frames> <label>"; the
    last clip of each class is a test clip. frames=0 writes the lists only."""
    train, test = [], []
    for label, (cls, clips) in enumerate(HMDB_CLIPS.items()):
        for i, clip in enumerate(clips):
            count = frames or 10 + i
            (test if i == len(clips) - 1 else train).append(f"HMDB/{cls}/{clip} {count} {label}")
            if frames:
                video = index_video(frames, size, size)
                write_jpegs(root / "HMDB" / cls / clip, video if label == 0 else 255 - video, "{}.jpg", 0)
    write_text(root / "list" / "hmdb_split1_train.txt", train, crlf=False)
    write_text(root / "list" / "hmdb_split1_test.txt", test, crlf=False)
    return root
