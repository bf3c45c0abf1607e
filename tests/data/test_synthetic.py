"""The synthetic dataset: deterministic, boxes on the actor, readable by the real loaders."""
import numpy as np
import pytest

from attnet.data import build_dataset
from attnet.data import synthetic


def test_render_is_deterministic_and_boxes_hold_the_actor_mark():
    a, boxes = synthetic.render(0, (3, 0, 1), frames=8, size=64)
    b, boxes_again = synthetic.render(0, (3, 0, 1), frames=8, size=64)
    assert np.array_equal(a, b) and np.array_equal(boxes, boxes_again)
    assert not np.array_equal(a, synthetic.render(0, (4, 0, 1), frames=8, size=64)[0])
    for frame, (x0, y0, x1, y1) in zip(a, boxes):
        n = min(x1 - x0, y1 - y0)
        diagonal = frame[y0 + np.arange(n), x0 + np.arange(n)]      # the actor's X: near-white pixels
        assert n >= 6 and diagonal.min() > 200


@pytest.mark.parametrize("label, check", [
    (0, lambda b: b[-1, 0] > b[0, 0]), (1, lambda b: b[-1, 0] < b[0, 0]),
    (2, lambda b: b[-1, 1] > b[0, 1]), (3, lambda b: b[-1, 1] < b[0, 1]),
    (6, lambda b: (b[-1, 2] - b[-1, 0]) > (b[0, 2] - b[0, 0])), (7, lambda b: (b[-1, 2] - b[-1, 0]) < (b[0, 2] - b[0, 0])),
])
def test_class_motion_shows_in_the_boxes(label, check):
    _, boxes = synthetic.render(label, (0, label, 0), frames=16, size=112)
    assert check(boxes)


def test_orbits_turn_in_opposite_directions():
    def turning(label):
        _, boxes = synthetic.render(label, (0, label, 0), frames=16, size=112)
        centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        step = np.diff(centre, axis=0)
        cross = step[:-1, 0] * step[1:, 1] - step[:-1, 1] * step[1:, 0]   # screen coordinates: y down
        return np.sign(cross).mean()
    assert turning(4) > 0.8 and turning(5) < -0.8


def test_generate_writes_lists_boxes_and_videos_the_loaders_read(tmp_path):
    counts = {"train": 2, "val": 1, "test": 1}
    root = synthetic.generate(tmp_path / "syn", num_classes=3, videos_per_class=counts, frames=10, size=64,
                              seed=1, frame_folders=True)
    ds = build_dataset("synthetic", root, subset="test", segments=5, size=64, resize=64, normalize=False)
    assert ds.classes == ["move_right", "move_left", "move_down"] and len(ds) == 3
    rel = ds.records[2].path.relative_to(root)
    boxes = synthetic.load_boxes(root, rel)
    video, expected_boxes = synthetic.render(2, (1, 2, 3), frames=10, size=64)
    assert np.array_equal(boxes, expected_boxes)
    clip, label = ds[2]
    decoded = (clip * 255).round().permute(0, 2, 3, 1).numpy()
    written = video[ds.frame_indices(2)[0].numpy()].astype(np.float32)
    assert label == 2 and np.abs(decoded - written).mean() < 7        # codec error only (crf 18, 4:2:0)
    frames_ds = build_dataset("list", root, subset="test", segments=5, size=64, resize=64,
                              list_file=root / "test_frames.txt", normalize=False)
    assert (frames_ds[2][0] - clip).abs().mean() < 0.04                # same frames, JPEG vs x264 error
    assert synthetic.ensure(root, num_classes=3, videos_per_class=counts, frames=10, size=64, seed=1,
                            frame_folders=True) == root
