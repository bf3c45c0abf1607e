"""Items with ground-truth actor boxes (boxes=True): the sampled frames' boxes, moved by the
same resize, crop and flip as the frames."""
import numpy as np
import pytest
import torch

from attnet.data import build_dataset

from .conftest import decoded_index, index_video, write_mp4, write_text


def frame_box(f: int) -> list[int]:
    """Frame f's box in the 48 x 64 (H x W) video: it moves 2 px right per frame."""
    return [16 + 2 * f, 8, 40 + 2 * f, 40]


@pytest.fixture
def box_root(tmp_path):
    write_mp4(tmp_path / "videos" / "a" / "v0.mp4", index_video(12, 48, 64))
    write_mp4(tmp_path / "videos" / "a" / "v1.mp4", index_video(12, 48, 64))
    (tmp_path / "boxes" / "a").mkdir(parents=True)
    np.save(tmp_path / "boxes" / "a" / "v0.npy", np.array([frame_box(f) for f in range(12)], dtype=np.int32))
    np.save(tmp_path / "boxes" / "a" / "v1.npy", np.zeros((12, 4), dtype=np.int32))
    write_text(tmp_path / "classes.txt", ["a"])
    for subset in ("train", "test"):
        write_text(tmp_path / f"{subset}.txt", ["videos/a/v0.mp4 0", "videos/a/v1.mp4 0"])
    return tmp_path


def test_boxes_follow_the_resize_and_centre_crop_of_their_frames(box_root):
    """Resize 48 x 64 -> 24 x 32 (x 0.5), centre crop 24 (4 px off the left):
    box f -> [8 + f - 4, 4, 20 + f - 4, 20], x clipped to the 24 px crop."""
    data = build_dataset("list", box_root, subset="test", segments=3, num_clips=2, size=24, resize=24,
                         normalize=False, boxes=True)
    clips, label, boxes = data[0]
    assert clips.shape == (2, 3, 3, 24, 24) and label == 0 and boxes.shape == (2, 3, 4)
    assert boxes.dtype == torch.float32
    for c in range(2):
        for t in range(3):
            f = decoded_index(clips[c, t])                  # the frame the clip holds
            assert f == data.frame_indices(0)[c, t]
            assert boxes[c, t].tolist() == [4 + f, 4, min(16 + f, 24), 20]


def test_boxes_without_rescaling_are_the_saved_boxes(box_root):
    data = build_dataset("list", box_root, subset="train", val_fraction=0, segments=4, size=48, resize=48,
                         hflip=False, normalize=False, boxes=True)
    torch.manual_seed(0)
    clip, _, boxes = data[0]
    assert clip.shape == (4, 3, 48, 48)
    left = None
    for t in range(4):
        f = decoded_index(clip[t])
        x0, y0, x1, y1 = frame_box(f)
        if left is None:                                     # the random crop's offset, the same for every frame
            left = x0 - boxes[t, 0].item()
        assert boxes[t].tolist() == [x0 - left, y0, min(x1 - left, 48), y1]
    assert 0 <= left <= 16
    assert data[1][2].tolist() == [[0, 0, 0, 0]] * 4      # actor out of view: empty boxes stay empty


def test_flip_mirrors_the_boxes(box_root):
    """Train items, flip on: 48 px crop at a random left offset L in 0..16, then maybe x -> 48 - x.
    Every item's boxes must be one of the two for some L, and both must occur."""
    def cropped(f, left):
        x0, y0, x1, y1 = frame_box(f)
        return [max(x0 - left, 0), y0, min(x1 - left, 48), y1]

    data = build_dataset("list", box_root, subset="train", val_fraction=0, segments=2, size=48, resize=48,
                         normalize=False, boxes=True)
    seen = set()
    for seed in range(12):
        torch.manual_seed(seed)
        clip, _, boxes = data[0]
        frames = [decoded_index(c) for c in clip]
        for left in range(17):
            plain = [cropped(f, left) for f in frames]
            flipped = [[48 - b[2], b[1], 48 - b[0], b[3]] for b in plain]
            if boxes.tolist() in (plain, flipped):
                seen.add("plain" if boxes.tolist() == plain else "flipped")
                break
        else:
            pytest.fail(f"boxes {boxes.tolist()} of frames {frames} match no crop offset, flipped or not")
    assert seen == {"plain", "flipped"}


def test_missing_box_file_names_it(box_root):
    (box_root / "boxes" / "a" / "v1.npy").unlink()
    data = build_dataset("list", box_root, subset="test", segments=2, size=24, resize=24, boxes=True)
    with pytest.raises(FileNotFoundError, match=r"boxes/a/v1\.npy: no ground-truth boxes"):
        data[1]


def test_items_without_boxes_are_pairs(box_root):
    item = build_dataset("list", box_root, subset="test", segments=2, size=24, resize=24)[0]
    assert len(item) == 2


def test_three_crop_with_boxes_is_refused(box_root):
    with pytest.raises(ValueError, match="three_crop=False"):
        build_dataset("list", box_root, subset="test", segments=2, size=24, three_crop=True, boxes=True)
