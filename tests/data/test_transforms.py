"""uint8 clips transformed in batches (`to_device`) against the per-clip v2.Compose float
pipeline the workers ran before: the same sampled frames, crops and flips, equal bit for bit on CPU."""
import numpy as np
import pytest
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from attnet.data import Clips, build_dataset, build_loader, to_device
from attnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ClipTransform, collate

from .conftest import write_jpegs, write_mp4, write_text


def float_pipeline(train: bool, size: int, resize: int, normalize: bool = True, hflip: bool = True,
                   three_crop: bool = False) -> v2.Compose:
    """The oracle: the per-clip float transform of uint8 [T, 3, H, W] that loader workers ran."""
    if train:
        geometry = [v2.RandomCrop(size), *([v2.RandomHorizontalFlip()] if hflip else [])]
    else:
        geometry = [ThreeCrop(size) if three_crop else v2.CenterCrop(size)]
    tail = [v2.ToDtype(torch.float32, scale=True), *([v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)] if normalize else [])]
    return v2.Compose([v2.Resize(resize, antialias=True), *geometry, *tail])


class ThreeCrop(torch.nn.Module):
    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, clip):
        h, w = clip.shape[-2:]
        s = self.size
        if w >= h:
            return torch.stack([clip[..., (h - s) // 2:(h - s) // 2 + s, x:x + s] for x in (0, (w - s) // 2, w - s)])
        return torch.stack([clip[..., y:y + s, (w - s) // 2:(w - s) // 2 + s] for y in (0, (h - s) // 2, h - s)])


def textured(num_frames: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """uint8 [F, 3, H, W] blurred noise: every resize, crop and flip changes it."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.randint(0, 256, (num_frames, 3, height, width), generator=g).float()
    return torch.nn.functional.avg_pool2d(noise, 3, 1, 1).to(torch.uint8)


def float_items(ds, indices, pipeline) -> list[torch.Tensor]:
    """The old worker's items: ds's sampled frames through `pipeline` clip by clip, then the
    three-crop and single-clip reshapes (the RNG draws in the same order: indices, crop, flip)."""
    out = []
    for i in indices:
        frames, picked = ds._read(i, ds._indices)
        clips = torch.stack([pipeline(c) for c in frames.view(len(picked), ds.segments, *frames.shape[1:])])
        clips = clips.flatten(0, 1) if ds.three_crop else clips
        out.append(clips[0] if len(clips) == 1 else clips)
    return out


@pytest.fixture
def mixed_root(tmp_path):
    """Two lossless mp4s of 48 x 64 and a JPEG folder of 48 x 64; a 40 x 72 mp4 for mixed batches."""
    write_mp4(tmp_path / "v" / "a.mp4", textured(20, 48, 64, 1))
    write_mp4(tmp_path / "v" / "b.mp4", textured(16, 48, 64, 2))
    write_jpegs(tmp_path / "v" / "c", textured(18, 48, 64, 3))
    write_mp4(tmp_path / "v" / "wide.mp4", textured(12, 40, 72, 4))
    write_text(tmp_path / "same.txt", ["v/a.mp4 0", "v/b.mp4 1", "v/c 18 0"])
    write_text(tmp_path / "mixed.txt", ["v/a.mp4 0", "v/wide.mp4 1"])
    return tmp_path


def test_batched_resize_equals_the_per_clip_resize():
    """The uint8 antialiased resize of a [B, clips, T, 3, H, W] batch is the per-clip one, also
    for the channels-last frames torchcodec returns."""
    frames = textured(2 * 3 * 4, 30, 44).view(2, 3, 4, 3, 30, 44)
    channels_last = frames.movedim(3, -1).contiguous().movedim(-1, 3)
    for x in (frames, channels_last):
        batched = v2.functional.resize(x, [37], antialias=True)
        per_clip = torch.stack([torch.stack([v2.functional.resize(c, [37], antialias=True) for c in b]) for b in x])
        assert batched.shape == (2, 3, 4, 3, 37, 54) and torch.equal(batched, per_clip)


def test_the_float_resize_a_gpu_runs_is_within_one_level_of_the_cpu_uint8_one():
    """CUDA has no uint8 antialiased kernel: torchvision resizes in float32 there and rounds."""
    frames = textured(6, 48, 64)
    native = v2.functional.resize(frames, [41], antialias=True)
    via_float = v2.functional.resize(frames.float(), [41], antialias=True).round().to(torch.uint8)
    assert 0 < (native.int() - via_float.int()).abs().max() <= 1


@pytest.mark.parametrize("train, size, resize, hflip", [(True, 32, 44, True), (True, 31, 37, False),
                                                        (False, 31, 41, True), (False, 32, 32, True)])
def test_items_and_batches_equal_the_float_pipeline_bit_for_bit(mixed_root, train, size, resize, hflip):
    """Same frames, crop offsets (41 -> 41 x 54 puts the centre crop of 31 at a rounded 12, not 11)
    and flips as the float pipeline, and the same float32 values, item by item and as a batch."""
    subset = "train" if train else "test"
    ds = build_dataset("list", mixed_root, subset=subset, segments=5, size=size, resize=resize, hflip=hflip,
                       list_file=mixed_root / "same.txt", val_fraction=0)       # every listed video
    pipeline = float_pipeline(train, size, resize, hflip=hflip)
    for seed in range(4):
        torch.manual_seed(seed)
        expected = float_items(ds, range(3), pipeline)
        torch.manual_seed(seed)
        got = [ds[i][0] for i in range(3)]
        assert all(g.shape == (5, 3, size, size) and torch.equal(g, e) for g, e in zip(got, expected))
        torch.manual_seed(seed)
        clips, labels = collate([ds.uint8_item(i) for i in range(3)])
        assert isinstance(clips, Clips) and clips.frames.dtype == torch.uint8
        assert clips.frames.shape == (3, 1, 5, 3, 48, 64)
        assert torch.equal(to_device(clips, "cpu"), torch.stack(expected)) and labels.tolist() == [0, 1, 0]


def test_multi_clip_three_crop_batches_equal_the_float_pipeline(mixed_root):
    ds = build_dataset("list", mixed_root, subset="test", segments=3, num_clips=2, size=32, resize=36,
                       three_crop=True, list_file=mixed_root / "same.txt")
    expected = torch.stack(float_items(ds, range(3), float_pipeline(False, 32, 36, three_crop=True)))
    batch, labels = next(iter(build_loader(ds, batch_size=3, train=False, workers=1)))   # Clips pickled back
    assert batch.crops.shape == (3, 6, 4) and batch.crops[0, :, 0].tolist() == [0, 0, 0, 1, 1, 1]
    assert batch.crops[0, :3, 1:3].tolist() == [[2, 0], [2, 8], [2, 16]]      # 36 x 48: along the width
    got = to_device(batch, "cpu")
    assert got.shape == (3, 6, 3, 3, 32, 32) and torch.equal(got, expected)


def test_videos_of_different_sizes_are_cropped_in_the_worker(mixed_root):
    ds = build_dataset("list", mixed_root, subset="train", segments=4, size=32, resize=40,
                       list_file=mixed_root / "mixed.txt", val_fraction=0)
    torch.manual_seed(3)
    expected = torch.stack(float_items(ds, range(2), float_pipeline(True, 32, 40)))
    torch.manual_seed(3)
    clips, _ = collate([ds.uint8_item(i) for i in range(2)])
    assert clips.crops is None and clips.frames.shape == (2, 1, 4, 3, 32, 32) and clips.frames.dtype == torch.uint8
    assert torch.equal(to_device(clips, "cpu"), expected)


def test_crops_draw_as_random_crop_and_flip_and_centre_as_centre_crop():
    """(clip, top, left, flip) rows: the draws of v2.RandomCrop then v2.RandomHorizontalFlip."""
    torch.manual_seed(7)
    top, left = torch.randint(0, 48 - 32 + 1, ()).item(), torch.randint(0, 64 - 32 + 1, ()).item()
    flip = bool(torch.rand(1) < 0.5)
    torch.manual_seed(7)
    assert ClipTransform(32, 48, train=True).crops(96, 128).tolist() == [[0, top, left, flip]]
    assert ClipTransform(31, 41).crops(48, 64, clips=2).tolist() == [[0, 5, 12, 0], [1, 5, 12, 0]]


def test_actor_boxes_follow_the_float_pipeline(tmp_path):
    """Boxes through resize 48 x 64 -> 40 x 53, a random crop of 32 and the flip, as v2 moves them."""
    write_mp4(tmp_path / "videos" / "a" / "v0.mp4", textured(12, 48, 64))
    (tmp_path / "boxes" / "a").mkdir(parents=True)
    boxes = np.array([[4 + 3 * f, 6, 30 + 3 * f, 44] for f in range(12)], dtype=np.int32)
    np.save(tmp_path / "boxes" / "a" / "v0.npy", boxes)
    write_text(tmp_path / "train.txt", ["videos/a/v0.mp4 0"])
    ds = build_dataset("list", tmp_path, subset="train", segments=4, size=32, resize=40, boxes=True, val_fraction=0)
    pipeline = float_pipeline(True, 32, 40)
    for seed in range(6):
        torch.manual_seed(seed)
        frames, picked = ds._read(0, ds._indices)
        expected = pipeline(frames, tv_tensors.BoundingBoxes(torch.from_numpy(boxes[picked[0].numpy()]).float(),
                                                             format="XYXY", canvas_size=(48, 64)))
        torch.manual_seed(seed)
        clip, _, got = ds[0]
        assert torch.equal(clip, expected[0]) and torch.equal(got, expected[1].as_subclass(torch.Tensor))
