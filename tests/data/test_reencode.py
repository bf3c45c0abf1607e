"""`attnet data reencode`: same tree and names, short GOP, the same frames, resumable."""
import pytest
from torchcodec.decoders import VideoDecoder

from attnet.data import DataError, build_dataset, cli
from attnet.data.reencode import reencode, target

from .conftest import decoded_index, index_video, write_avi, write_mp4, write_text


def keyframes(path) -> list[int]:
    return VideoDecoder(str(path), seek_mode="exact")._get_key_frame_indices().tolist()


@pytest.fixture
def src(tmp_path):
    root = tmp_path / "src"
    write_avi(root / "videos" / "a.avi", index_video(30))
    write_mp4(root / "videos" / "b.mp4", index_video(20))
    write_text(root / "test.txt", ["videos/a.avi 0", "videos/b.mp4 1"])
    return root


def test_videos_get_the_keyframe_interval_and_keep_their_frames(src, tmp_path):
    assert keyframes(src / "videos" / "b.mp4") == [0]                    # x264's default: one GOP
    done = reencode(src, tmp_path / "dst", gop=4)
    dst = tmp_path / "dst"
    assert sorted(p.name for p in done["written"]) == ["a.avi", "b.mp4"]
    assert [p.name for p in done["copied"]] == ["test.txt"] and done["failed"] == []
    assert keyframes(dst / "videos" / "a.avi") == list(range(0, 30, 4))
    assert keyframes(dst / "videos" / "b.mp4") == list(range(0, 20, 4))
    frames = VideoDecoder(str(dst / "videos" / "a.avi")).get_frames_in_range(0, 30).data
    assert [decoded_index(f) for f in frames] == list(range(30))
    # the official lists still apply: the copy is a drop-in dataset root
    ds = build_dataset("list", dst, subset="test", segments=3, size=32, resize=48, normalize=False)
    assert [decoded_index(f) for f in ds[1][0]] == [3, 10, 16]


def test_rerun_keeps_finished_videos_and_failures_are_listed(src, tmp_path, capsys):
    (src / "videos" / "bad.mp4").write_bytes(b"not a video")
    with pytest.raises(SystemExit):
        cli.main(["reencode", "--src", str(src), "--dst", str(tmp_path / "dst"), "--gop", "2", "--jobs", "1"])
    out = capsys.readouterr()
    assert "2 videos re-encoded (keyframe every 2 frames), 0 kept from an earlier run" in out.out
    assert "failed: " in out.out and "bad.mp4: unreadable or corrupt video" in out.out
    assert "1 videos could not be re-encoded" in out.err
    assert not list((tmp_path / "dst").rglob(".*tmp*"))                  # no half-written file left
    done = reencode(src, tmp_path / "dst", gop=2)
    assert len(done["skipped"]) == 2 and done["written"] == [] and len(done["failed"]) == 1


def test_bad_arguments(src, tmp_path):
    with pytest.raises(DataError, match="must lie outside the source root"):
        reencode(src, src / "copy")
    with pytest.raises(DataError, match="source dataset root not found"):
        reencode(tmp_path / "none", tmp_path / "dst")
    assert target(src, tmp_path / "dst", src / "k" / "x_000001_000011.webm") == tmp_path / "dst" / "k" / \
        "x_000001_000011.mp4"
