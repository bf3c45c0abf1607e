"""Decoding the sampled frames, transforms, multi-clip items, bad videos, the loader."""
import os
import warnings

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from attnet.data import DataError, build_dataset, build_loader
from attnet.data.decoding import decode_frames, decode_video, video_num_frames
from attnet.data.transforms import Clips, ClipTransform, to_device

from attnet.data.sampling import train_indices

from .conftest import decoded_index, index_video, over_report_avi, write_avi, write_jpegs, write_mp4, write_text


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


def one_at_a_time(folder, indices, template, start):
    """The per-file JPEG decode that decode_frames batches: the oracle its pixels must equal."""
    import torchvision.io
    return torch.stack([torchvision.io.decode_jpeg(torchvision.io.read_file(str(folder / template.format(k + start))),
                                                   mode=torchvision.io.ImageReadMode.RGB) for k in indices.tolist()])


def test_batched_jpeg_decode_gives_the_per_file_pixels(tmp_path):
    """Lossy noise JPEGs (any decoder difference would show) and the synthetic generator's own
    frame folders: the batched call returns the per-file pixels bit for bit, repeats included."""
    from attnet.data import synthetic
    import torchvision.io
    noise = torch.randint(0, 256, (10, 3, 24, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    folder = tmp_path / "noise"
    folder.mkdir()
    for i, frame in enumerate(noise):
        torchvision.io.write_file(str(folder / f"{i}.jpg"), torchvision.io.encode_jpeg(frame, quality=70))
    indices = torch.tensor([3, 3, 0, 9, 4, 3])
    got = decode_frames(folder, indices, "{}.jpg", start=0, device="cpu")
    assert got.dtype == torch.uint8 and got.shape == (6, 3, 24, 40)
    assert torch.equal(got, one_at_a_time(folder, indices, "{}.jpg", 0))
    assert not torch.equal(got[2], noise[0])                        # lossy: the oracle is not trivially the input
    root = synthetic.generate(tmp_path / "synthetic", num_classes=2, videos_per_class={"train": 1, "val": 0, "test": 0},
                              frames=6, size=32, frame_folders=True)
    clip = next((root / "frames").rglob("img_00001.jpg")).parent
    everything = torch.arange(6)
    assert torch.equal(decode_frames(clip, everything, "img_{:05d}.jpg"), one_at_a_time(clip, everything, "img_{:05d}.jpg", 1))


def test_a_corrupt_jpeg_in_a_batch_is_named(tmp_path):
    write_jpegs(tmp_path / "clip", index_video(4))
    (tmp_path / "clip" / "img_00003.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(DataError, match=r"clip/img_00003.jpg: cannot read frame"):
        decode_frames(tmp_path / "clip", torch.tensor([0, 1, 2, 3]), "img_{:05d}.jpg")


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
    assert batch.frames.shape == (2, 2, 4, 3, 48, 64) and batch.frames.dtype == torch.uint8
    assert to_device(batch, "cpu").shape == (2, 2, 4, 3, 32, 32) and labels.tolist() == [0, 1]


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
    transform = ClipTransform(size=32, resize=48, train=True, normalize=True)
    for _ in range(5):
        out = to_device(Clips(clip[None, None], transform.crops(60, 80)[None], transform), "cpu")[0]
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


def test_ucf101_and_hmdb51_read_their_avi_files_end_to_end(ucf_root, hmdb_root):
    write_avi(ucf_root / "UCF-101" / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01.avi", index_video(24))
    write_avi(ucf_root / "UCF-101" / "Basketball" / "v_Basketball_g08_c01.avi", index_video(12))
    write_avi(ucf_root / "UCF-101" / "Archery" / "v_Archery_g01_c01.avi", index_video(30))
    train = build_dataset("ucf101", ucf_root, subset="train", segments=4, size=32, resize=48, normalize=False,
                          val_fraction=0)                      # the whole training list (no validation held out)
    assert len(train) == 2 and [r.label for r in train.records] == [0, 2]
    clip, label = train[0]
    assert label == 0 and all(6 * i <= decoded_index(f) < 6 * (i + 1) for i, f in enumerate(clip))
    test = build_dataset("ucf101", ucf_root, subset="test", segments=3, size=32, resize=48, normalize=False)
    clip, label = test[0]
    assert len(test) == 1 and label == 1 and [decoded_index(f) for f in clip] == [5, 15, 25]

    for name, frames in [("brush_hair/a.avi", 10), ("brush_hair/b.avi", 20), ("cartwheel/d.avi", 8),
                         ("cartwheel/e.avi", 9), ("cartwheel/f.avi", 9)]:     # c.avi (tag 0) is never opened
        write_avi(hmdb_root / name, index_video(frames))
    train = build_dataset("hmdb51", hmdb_root, subset="train", segments=2, size=32, resize=48, val_fraction=0)
    assert len(train) == 3 and [train[i][1] for i in range(3)] == [0, 1, 1]
    test = build_dataset("hmdb51", hmdb_root, subset="test", segments=2, size=32, resize=48, normalize=False)
    assert [decoded_index(f) for f in test[1][0]] == [2, 6] and test[1][1] == 1


def test_frame_folder_named_with_dots_and_missing_frame(tmp_path):
    write_jpegs(tmp_path / "clips" / "v_Run.g01", index_video(8))
    write_text(tmp_path / "test.txt", ["clips/v_Run.g01 8 0", "clips/v_Run.g01 12 0"])
    ds = build_dataset("list", tmp_path, subset="test", segments=4, size=32, resize=48, normalize=False)
    assert [decoded_index(f) for f in ds[0][0]] == [1, 3, 5, 7]
    with pytest.raises(DataError, match=r"v_Run.g01/img_00011.jpg: cannot read frame"):
        ds[1]                                    # the list claims 12 frames; there are 8


def test_truncated_video_fails_with_its_name(video_root):
    whole = write_mp4(video_root / "videos" / "fast.mp4", index_video(30), extra_options={"movflags": "+faststart"})
    data = whole.read_bytes()
    (video_root / "videos" / "cut.mp4").write_bytes(data[: len(data) * 2 // 3])   # header intact, tail gone
    write_text(video_root / "cut.txt", ["videos/cut.mp4 0"])
    ds = build_dataset("list", video_root, subset="test", segments=3, size=32, list_file=video_root / "cut.txt")
    assert ds.num_frames(0) == 30
    with pytest.raises(DataError, match=r"cut.mp4: cannot decode frames .* truncated"):
        ds[0]


def test_train_frame_indices_are_fresh_draws(video_root):
    ds = build_dataset("list", video_root, subset="train", segments=3, size=32)
    draws = torch.cat([ds.frame_indices(0) for _ in range(50)])
    assert draws.shape == (50, 3) and len({tuple(d) for d in draws.tolist()}) > 1
    assert all(10 * i <= k < 10 * (i + 1) for row in draws.tolist() for i, k in enumerate(row))


@pytest.mark.parametrize("context", ["fork", "spawn"])
def test_skip_count_comes_back_from_loader_workers(video_root, context):
    (video_root / "videos" / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    write_text(video_root / "mixed.txt", ["videos/a.mp4 0", "videos/bad.mp4 0", "videos/b.mp4 1"])
    ds = build_dataset("list", video_root, subset="test", segments=3, size=32, resize=32,
                       list_file=video_root / "mixed.txt", on_bad_video="skip")
    loader = DataLoader(ds, batch_size=3, num_workers=1, multiprocessing_context=context)
    labels = torch.cat([batch[1] for batch in loader])
    assert labels.tolist() == [0, 1, 1]          # the bad video is replaced by the next one
    assert ds.skipped == 1 and ds.reset_skipped() == 1 and ds.skipped == 0


@pytest.mark.parametrize("subset", ["train", "test"])
def test_cached_items_equal_decoded_items_and_each_video_is_decoded_once(video_root, subset, monkeypatch):
    from attnet.data import datasets
    plain = build_dataset("list", video_root, subset=subset, segments=4, num_clips=2, size=32, resize=48)
    cached = build_dataset("list", video_root, subset=subset, segments=4, num_clips=2, size=32, resize=48, cache=True)
    opened = []
    monkeypatch.setattr(datasets, "open_video", lambda path: opened.append(path.name) or decode_open(path))
    for _ in range(3):                                  # three epochs
        for i in range(2):
            torch.manual_seed(i)
            want, label = plain[i]
            torch.manual_seed(i)
            got, cached_label = cached[i]
            assert torch.equal(got, want) and label == cached_label
    assert opened.count("a.mp4") == 3 + 1 and opened.count("b.mp4") == 3 + 1   # plain: every read; cached: once


def decode_open(path):
    from attnet.data.decoding import open_video
    return open_video(path)


@pytest.mark.parametrize("cache", [False, True])
def test_frames_past_the_real_end_read_the_last_real_frame(tmp_path, cache):
    """An AVI whose header claims 30 frames but holds 10: indices sampled from 30 past frame 9
    read frame 9, in test and training items, decoded or cached."""
    over_report_avi(write_avi(tmp_path / "v" / "long.avi", index_video(10)), 30)
    write_text(tmp_path / "list.txt", ["v/long.avi 0"])
    assert video_num_frames(tmp_path / "v" / "long.avi") == 30                 # the header's claim
    kwargs = dict(segments=6, size=32, resize=48, list_file=tmp_path / "list.txt", normalize=False, cache=cache)
    test = build_dataset("list", tmp_path, subset="test", **kwargs)
    with pytest.warns(UserWarning, match=r"long.avi: the container reports more frames than the 10 it holds"):
        clip, _ = test[0]
    assert test.frame_indices(0).tolist() == [[2, 7, 12, 17, 22, 27]]           # floor((i + 0.5) * 30 / 6)
    assert [decoded_index(f) for f in clip] == [2, 7, 9, 9, 9, 9]
    train = build_dataset("list", tmp_path, subset="train", **kwargs)
    for seed in range(3):
        torch.manual_seed(seed)
        expected = train_indices(30, 6).clamp(max=9).tolist()
        torch.manual_seed(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clip, _ = train[0]
        assert [decoded_index(f) for f in clip] == expected



def textured_video(num_frames: int, height: int = 48, width: int = 64) -> torch.Tensor:
    """uint8 [F, 3, H, W] noise: a resize of it changes every pixel, unlike a flat grey frame."""
    return torch.randint(0, 256, (num_frames, 3, height, width), generator=torch.Generator().manual_seed(0),
                         dtype=torch.uint8)


@pytest.mark.parametrize("subset", ["train", "test"])
def test_decoded_cache_gives_the_uncached_frames_and_is_shared_on_disk(tmp_path, subset, monkeypatch):
    from attnet.data import datasets
    write_mp4(tmp_path / "videos" / "t.mp4", textured_video(40))
    write_text(tmp_path / f"{subset}.txt", ["videos/t.mp4 0"])
    kwargs = dict(segments=5, num_clips=2, size=32, resize=40, normalize=False)   # 48x64 -> 40x53, then crops
    plain = build_dataset("list", tmp_path, subset=subset, **kwargs)
    cached = build_dataset("list", tmp_path, subset=subset, cache=True, **kwargs)
    for seed in range(3):
        torch.manual_seed(seed)
        want, _ = plain[0]
        torch.manual_seed(seed)
        got, _ = cached[0]
        assert torch.equal(got, want)
    files = list((tmp_path / ".decoded" / "videos").glob("t.mp4.*.npy"))
    assert len(files) == 1 and np.load(files[0], mmap_mode="r").shape == (40, 3, 40, 53)   # every frame, resized
    monkeypatch.setattr(datasets, "open_video", lambda path: pytest.fail(f"{path} decoded again"))
    other = build_dataset("list", tmp_path, subset=subset, cache=True, **kwargs)      # another run or process
    torch.manual_seed(0)
    again, _ = other[0]
    torch.manual_seed(0)
    assert torch.equal(again, cached[0][0])


def test_a_rewritten_video_is_decoded_again(video_root):
    path = video_root / "videos" / "a.mp4"
    kwargs = dict(segments=3, size=32, resize=48, normalize=False)
    cached = build_dataset("list", video_root, subset="test", cache=True, **kwargs)
    assert [decoded_index(f) for f in cached[0][0]] == [5, 15, 25]       # floor((i + 0.5) * 30 / 3)
    before = path.stat().st_mtime_ns
    write_mp4(path, index_video(30).flip(0))                             # same length, frames reversed
    os.utime(path, ns=(before + 10**9, before + 10**9))
    assert [decoded_index(f) for f in cached[0][0]] == [24, 14, 4]
    write_mp4(path, index_video(12))                                     # another length
    fresh = build_dataset("list", video_root, subset="test", **kwargs)
    assert torch.equal(cached[0][0], fresh[0][0]) and [decoded_index(f) for f in cached[0][0]] == [2, 6, 10]


def test_an_unwritable_cache_is_one_line_naming_the_file(video_root):
    (video_root / ".decoded").write_text("a file where the cache directory should be")
    cached = build_dataset("list", video_root, subset="test", segments=3, size=32, cache=True)
    with pytest.raises(DataError, match=r"\.decoded/videos/a\.mp4\.[0-9a-f]{16}\.npy: cannot write the decoded cache "
                                        r".*or set data\.cache=false"):
        cached[0]


def test_loader_workers_share_the_decoded_cache_and_give_the_main_process_batches(video_root):
    """data.cache with data.workers > 0: each worker process fills or maps the same on-disk files."""
    kwargs = dict(subset="test", segments=3, size=32, resize=48, normalize=False)
    inline = torch.cat([clips for clips, _ in DataLoader(build_dataset("list", video_root, **kwargs), batch_size=1)])
    cached = build_dataset("list", video_root, cache=True, **kwargs)
    for _ in range(2):                                   # the workers make the files, then map them
        got = torch.cat([clips for clips, _ in DataLoader(cached, batch_size=1, num_workers=2)])
        assert torch.equal(got, inline)
    assert sorted(f.name.split(".")[0] for f in (video_root / ".decoded" / "videos").glob("*.npy")) == ["a", "b"]
