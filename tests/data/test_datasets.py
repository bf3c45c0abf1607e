"""Decoding the sampled frames, transforms, multi-clip items, bad videos, the loader."""
import warnings

import pytest
import torch

from attnet.data import DataError, build_dataset, build_loader
from attnet.data.decoding import decode_frames, decode_video, video_num_frames
from attnet.data.transforms import train_transform

from .conftest import decoded_index, index_video, write_jpegs, write_mp4, write_text


@pytest.fixture
def video_root(tmp_path):
    write_mp4(tmp_path / "videos" / "a.mp4", index_video(30))
    write_mp4(tmp_path / "videos" / "b.mp4", index_video(20))
    write_text(tmp_path / "classes.txt", ["zero", "one"])
    write_text(tmp_path / "train.txt", ["videos/a.mp4 0", "videos/b.mp4 1"])
    write_text(tmp_path / "test.txt", ["videos/a.mp4 0", "videos/b.mp4 1"])
    return tmp_path


def test_decode_returns_exactly_the_requested_frames(video_root):
    path = video_root / "videos" / "a.mp4"
    assert video_num_frames(path) == 30
    frames, count = decode_video(path, torch.tensor([0, 7, 7, 29, 3]))
    assert count == 30 and frames.shape == (5, 3, 48, 64) and frames.dtype == torch.uint8
    assert [decoded_index(f) for f in frames] == [0, 7, 7, 29, 3]
    expected = index_video(30)[[0, 7, 7, 29, 3]].float()
    assert (frames.float() - expected).abs().max() <= 2          # lossless x264 up to colour conversion


def test_frame_folders_decode_with_either_template(tmp_path):
    write_jpegs(tmp_path / "clip", index_video(12))
    write_jpegs(tmp_path / "authors", index_video(12), template="{}.jpg", start=0)
    got = decode_frames(tmp_path / "clip", torch.tensor([0, 5, 11]), "img_{:05d}.jpg", start=1)
    assert [decoded_index(f) for f in got] == [0, 5, 11]
    got = decode_frames(tmp_path / "authors", torch.tensor([2, 9]), "{}.jpg", start=0)
    assert [decoded_index(f) for f in got] == [2, 9]


def test_test_items_use_the_deterministic_segment_centres(video_root):
    ds = build_dataset("list", video_root, subset="test", segments=3, size=32, resize=48,
                       list_file=video_root / "test.txt", normalize=False)
    assert ds.frame_indices(0).tolist() == [[5, 15, 25]]
    clip, label = ds[0]
    assert clip.shape == (3, 3, 32, 32) and label == 0
    assert [decoded_index(f) for f in clip] == [5, 15, 25]


def test_multi_clip_and_three_crop_shapes(video_root):
    ds = build_dataset("list", video_root, subset="test", segments=4, num_clips=2, size=32, resize=40,
                       list_file=video_root / "test.txt", normalize=False)
    clip, _ = ds[1]
    assert clip.shape == (2, 4, 3, 32, 32)
    assert [[decoded_index(f) for f in c] for c in clip] == ds.frame_indices(1).tolist() == [[1, 6, 11, 16], [3, 8, 13, 18]]
    three = build_dataset("list", video_root, subset="test", segments=4, num_clips=2, size=32, resize=32,
                          three_crop=True, list_file=video_root / "test.txt")
    assert three[0][0].shape == (6, 4, 3, 32, 32)
    loader = build_loader(ds, batch_size=2, train=False)
    batch, labels = next(iter(loader))
    assert batch.shape == (2, 2, 4, 3, 32, 32) and labels.tolist() == [0, 1]


def test_train_items_are_seeded_and_inside_segments(video_root):
    ds = build_dataset("list", video_root, subset="train", segments=3, size=32, resize=48, normalize=False)
    torch.manual_seed(5)
    first = [decoded_index(f) for f in ds[0][0]]
    torch.manual_seed(5)
    again = [decoded_index(f) for f in ds[0][0]]
    assert first == again
    for i, k in enumerate(first):
        assert 10 * i <= k < 10 * (i + 1)


def test_train_transform_applies_one_crop_and_flip_to_every_frame():
    torch.manual_seed(0)
    frame = torch.randint(0, 256, (1, 3, 60, 80), dtype=torch.uint8)
    clip = frame.expand(6, 3, 60, 80).contiguous()
    transform = train_transform(size=32, resize=48, normalize=True)
    for _ in range(5):
        out = transform(clip)
        assert out.shape == (6, 3, 32, 32)
        assert all(torch.equal(out[0], out[t]) for t in range(6))


def test_corrupt_video_error_names_the_file(video_root):
    (video_root / "videos" / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    write_text(video_root / "bad.txt", ["videos/a.mp4 0", "videos/bad.mp4 1"])
    ds = build_dataset("list", video_root, subset="test", segments=3, size=32, list_file=video_root / "bad.txt")
    with pytest.raises(DataError, match=r"bad.mp4: unreadable or corrupt video"):
        ds[1]
    skip = build_dataset("list", video_root, subset="test", segments=3, size=32, list_file=video_root / "bad.txt",
                         on_bad_video="skip")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        clip, label = skip[1]                  # replaced by the next video (wraps to a.mp4)
    assert label == 0 and skip.skipped == 1
    assert skip.reset_skipped() == 1 and skip.skipped == 0


def test_missing_and_empty_video(video_root):
    (video_root / "videos" / "empty.mp4").write_bytes(b"")
    write_text(video_root / "gone.txt", ["videos/nothing.mp4 0", "videos/empty.mp4 1"])
    ds = build_dataset("list", video_root, subset="test", segments=3, size=32, list_file=video_root / "gone.txt")
    with pytest.raises(DataError, match=r"nothing.mp4: video not found"):
        ds[0]
    with pytest.raises(DataError, match=r"empty.mp4: unreadable or corrupt video"):
        ds[1]
