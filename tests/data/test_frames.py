"""`attnet data extract-frames`: frame folders the frames presets read, resumable, failures listed."""
from pathlib import Path

import pytest
import torch
import torchvision.io

from attnet.config import load_config
from attnet.data import DataError, build_dataset, cli
from attnet.data.frames import extract_frames

from .conftest import decoded_index, index_video, write_avi, write_mp4, write_text

CLIPS = {"brush_hair": ["April_09_brush_hair_u_nm_np1_ba_goo_0", "Haarek_mmen_brush_hair_h_cm_np1_fr_goo_0"],
         "cartwheel": ["Parada_de_mao_cartwheel_f_cm_np1_ba_med_1", "turnles!!_cartwheel_f_cm_np1_ri_med_0"]}


@pytest.fixture
def hmdb(tmp_path):
    """HMDB51 as published: <class>/<clip>.avi (12 frames of 48x64 for the first class, 9 for the
    second) and split 1 lists: the first clip of a class trains, the second tests."""
    root = tmp_path / "hmdb51"
    for label, (cls, clips) in enumerate(CLIPS.items()):
        for clip in clips:
            write_avi(root / cls / f"{clip}.avi", index_video(12 - 3 * label))
        for split in (1, 2, 3):
            write_text(root / "testTrainMulti_7030_splits" / f"{cls}_test_split{split}.txt",
                       [f"{clips[0]}.avi 1", f"{clips[1]}.avi 2"])
    return root


def frame(path) -> torch.Tensor:
    return torchvision.io.decode_jpeg(torchvision.io.read_file(str(path)))


def test_hmdb51_becomes_the_authors_layout_that_hmdb51_frames_reads(hmdb, tmp_path):
    dst = tmp_path / "Datasets"
    done = extract_frames(hmdb, dst, dataset="hmdb51", short_side=32, jobs=1, progress=False)
    assert done["failed"] == [] and done["skipped"] == [] and len(done["written"]) == 4
    folder = dst / "HMDB" / "brush_hair" / CLIPS["brush_hair"][0]
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{i}.jpg" for i in range(12))
    assert len(list((dst / "HMDB" / "cartwheel" / CLIPS["cartwheel"][1]).iterdir())) == 9
    assert frame(folder / "0.jpg").shape == (3, 32, 42)             # 48x64 shrunk to a short side of 32
    assert [decoded_index(frame(folder / f"{i}.jpg")) for i in range(12)] == list(range(12))
    assert (dst / "list" / "hmdb_split1_train.txt").read_text() == \
        f"HMDB/brush_hair/{CLIPS['brush_hair'][0]} 12 0\nHMDB/cartwheel/{CLIPS['cartwheel'][0]} 9 1\n"
    assert (dst / "list" / "hmdb_split3_test.txt").read_text() == \
        f"HMDB/brush_hair/{CLIPS['brush_hair'][1]} 12 0\nHMDB/cartwheel/{CLIPS['cartwheel'][1]} 9 1\n"
    d = load_config("hmdb51-frames", [f"data.root={dst}"]).data
    test = build_dataset(d.name, dst, subset="test", segments=3, size=32, resize=32, normalize=False,
                         test_list=d.test_list, frame_template=d.frame_template, frame_start=d.frame_start)
    assert [decoded_index(f) for f in test[0][0]] == [2, 6, 10] and test[1][1] == 1


def test_a_rerun_skips_finished_videos_and_redoes_a_half_written_one(hmdb, tmp_path):
    dst = tmp_path / "Datasets"
    extract_frames(hmdb, dst, dataset="hmdb51", short_side=256, jobs=1, progress=False)
    first = dst / "HMDB" / "brush_hair" / CLIPS["brush_hair"][0]
    assert frame(first / "0.jpg").shape == (3, 48, 64)              # smaller than the short side: kept as is
    stamp = (first / "3.jpg").stat().st_mtime_ns
    cut = dst / "HMDB" / "cartwheel" / CLIPS["cartwheel"][0]
    cut.rename(cut.with_name(f".{cut.name}.partial"))               # as a process killed mid-video leaves it
    (cut.with_name(f".{cut.name}.partial") / "5.jpg").unlink()
    done = extract_frames(hmdb, dst, dataset="hmdb51", jobs=1, progress=False)
    assert done["written"] == [cut] and len(done["skipped"]) == 3
    assert len(list(cut.iterdir())) == 9 and not list(dst.rglob("*.partial"))
    assert (first / "3.jpg").stat().st_mtime_ns == stamp             # finished folders untouched
    assert (dst / "list" / "hmdb_split2_train.txt").read_text().endswith(f"{CLIPS['cartwheel'][0]} 9 1\n")


@pytest.fixture
def tree(tmp_path):
    src = tmp_path / "src"
    write_mp4(src / "videos" / "walk" / "a.mp4", index_video(7))
    write_avi(src / "videos" / "run" / "b.avi", index_video(5))
    (src / "videos" / "run" / "bad.mp4").write_bytes(b"not a video")
    (src / "notes.txt").write_text("not a video either")
    return src


def test_a_corrupt_video_is_listed_and_the_others_are_extracted(tree, tmp_path, capsys):
    with pytest.raises(SystemExit):
        cli.main(["extract-frames", "--src", str(tree), "--dst", str(tmp_path / "dst"), "--jobs", "1"])
    out = capsys.readouterr()
    assert "2 videos extracted to frame folders (short side <= 256, {}.jpg from 0), 0 kept from an earlier run, " \
           "1 failed, 0 list files written" in out.out
    assert "failed: " in out.out and "bad.mp4: unreadable or corrupt video" in out.out
    assert "1 videos could not be extracted" in out.err
    assert sorted(p.relative_to(tmp_path / "dst").as_posix() for p in (tmp_path / "dst").rglob("*.jpg")) == \
        [f"videos/run/b/{i}.jpg" for i in range(5)] + [f"videos/walk/a/{i}.jpg" for i in range(7)]
    assert not list((tmp_path / "dst").rglob("*.partial"))
    write_text(tmp_path / "dst" / "test.txt", ["videos/walk/a 0", "videos/run/b 1"])
    ds = build_dataset("list", tmp_path / "dst", subset="test", segments=2, size=32, resize=48, normalize=False,
                       frame_template="{}.jpg", frame_start=0)
    assert [decoded_index(f) for f in ds[1][0]] == [1, 3]              # 5 frames counted from the folder


def test_bad_arguments(hmdb, tmp_path):
    with pytest.raises(DataError, match="must lie outside the source root"):
        extract_frames(hmdb, hmdb / "frames")
    with pytest.raises(DataError, match="source dataset root not found"):
        extract_frames(tmp_path / "none", tmp_path / "dst")
    with pytest.raises(ValueError, match="dataset must be one of hmdb51, ucf101"):
        extract_frames(hmdb, tmp_path / "dst", dataset="kinetics600")


@pytest.mark.slow        # spawns two processes that import torch (about 40 s on 2 busy cores)
def test_the_process_pool_writes_what_one_process_writes(tree, tmp_path):
    one = extract_frames(tree, tmp_path / "one", jobs=1, progress=False)
    two = extract_frames(tree, tmp_path / "two", jobs=2, progress=False)
    assert [p.relative_to(tmp_path / "two") for p in two["written"]] == \
        [p.relative_to(tmp_path / "one") for p in one["written"]] == [Path("videos/run/b"), Path("videos/walk/a")]
    assert len(two["failed"]) == 1 and "bad.mp4: unreadable or corrupt video" in two["failed"][0]
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.jpg"))
    assert files == sorted(p.relative_to(tmp_path / "two") for p in (tmp_path / "two").rglob("*.jpg"))
    assert all((tmp_path / "one" / f).read_bytes() == (tmp_path / "two" / f).read_bytes() for f in files)
