"""The synthetic dataset: deterministic, boxes on the actor, readable by the real loaders."""
import json
import os

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


# sha256 (first 16 hex digits) of render(0, (3, 0, 1), frames=8, size=64) and of
# render(4, (0, 4, 7), frames=16, size=112), made by the generator before the difficulty
# knob existed (commit 6d47630): difficulty 0 must keep those videos byte for byte.
BEFORE_THE_KNOB = {(0, (3, 0, 1), 8, 64): "57d6c5ee5cdd2d6b", (4, (0, 4, 7), 16, 112): "374b3568e69c4b8b"}


@pytest.mark.parametrize("args", list(BEFORE_THE_KNOB))
def test_difficulty_zero_reproduces_the_videos_made_before_the_knob(args):
    import hashlib
    video, _ = synthetic.render(*args, difficulty=0)
    assert hashlib.sha256(video.tobytes()).hexdigest()[:16] == BEFORE_THE_KNOB[args]
    assert np.array_equal(video, synthetic.render(*args)[0])


def test_difficulty_shrinks_the_actor_and_adds_decoys_the_first_acting_out_the_opposite_motion():
    area, decoys = {}, {}
    for difficulty in (0, 1, 2):
        settings = synthetic.difficulty_settings(difficulty)
        decoys[difficulty] = settings["decoys"]
        boxes = [synthetic.render(label, (0, label, i), frames=8, size=112, difficulty=difficulty)[1]
                 for label in (0, 4, 6) for i in range(3)]
        area[difficulty] = np.mean([((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).mean() for b in boxes])
    # side factor 1 / (1 + difficulty / 2): 1, 2/3, 1/2 -> area factor 1, 4/9, 1/4 (up to pixel rounding)
    assert area[1] / area[0] == pytest.approx(4 / 9, abs=0.04) and area[2] / area[0] == pytest.approx(1 / 4, abs=0.04)
    assert decoys == {0: 0, 1: 2, 2: 4} and synthetic.difficulty_settings(0.5)["decoys"] == 1
    # the decoys are drawn: at difficulty 1 the frames differ from difficulty 0 outside the actor's box too,
    # and the pixels a "move right" actor leaves alone get + marks (near-white) moving leftwards
    easy, _ = synthetic.render(0, (0, 0, 0), frames=8, size=112, difficulty=0)
    hard, boxes = synthetic.render(0, (0, 0, 0), frames=8, size=112, difficulty=1)
    assert (boxes[-1, 0] - boxes[0, 0]) > 20                                   # the actor still moves right
    mask = np.ones(hard.shape[:3], bool)
    for f, (x0, y0, x1, y1) in enumerate(boxes):
        mask[f, y0:y1, x0:x1] = False
    assert (np.abs(hard.astype(int) - easy.astype(int)).max(axis=-1)[mask] > 60).sum() > 100
    for difficulty, area in ((0.25, 0.25), (1, 1.0)):                          # the first decoy's area / the actor's
        (ax, _, aside), tracks = _decoy_tracks(label=0, seed=(0, 0, 0), difficulty=difficulty)
        xs, ys, sides = tracks[0]
        assert xs[-1] < xs[0] and np.allclose(ys, ys[0])                      # it moves left, straight,
        assert np.allclose(xs[0] - xs, ax[::-1][0] - ax[::-1])                # along the actor's path reversed
        assert np.allclose((sides / aside[::-1]) ** 2, area)
        assert sides.max() / 2 <= xs.min() and xs.max() <= 112 - sides.max() / 2   # inside the frame


def _decoy_tracks(label, seed, difficulty, frames=8, size=112):
    """The decoys render() adds, recomputed through the module's own helpers."""
    settings = synthetic.difficulty_settings(difficulty)
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 1.0, frames)
    synthetic._background(rng, size)
    ax, ay, aside = synthetic._actor_path(label, t, rng, size)
    actor = (ax, ay, aside * settings["scale"])
    decoys = synthetic._decoys(label, t, actor, settings, np.random.default_rng([*seed, 1]), size)
    return actor, [(xs, ys, sides) for xs, ys, sides, _ in decoys]


def test_harder_videos_are_still_a_function_of_the_seed():
    a, boxes = synthetic.render(5, (2, 5, 1), frames=8, size=64, difficulty=1.5)
    b, boxes_again = synthetic.render(5, (2, 5, 1), frames=8, size=64, difficulty=1.5)
    assert np.array_equal(a, b) and np.array_equal(boxes, boxes_again)
    assert not np.array_equal(a, synthetic.render(5, (3, 5, 1), frames=8, size=64, difficulty=1.5)[0])
    with pytest.raises(ValueError, match="difficulty must be >= 0"):
        synthetic.render(0, 0, difficulty=-1)


def test_the_dataset_records_its_difficulty_and_ensure_tells_them_apart(tmp_path):
    import json
    counts = {"train": 1, "val": 1, "test": 1}
    root = synthetic.generate(tmp_path / "hard", num_classes=2, videos_per_class=counts, frames=6, size=32,
                              difficulty=1.0)
    assert json.loads((root / "meta.json").read_text())["difficulty"] == 1.0
    stamp = (root / "meta.json").stat().st_mtime_ns
    synthetic.ensure(root, num_classes=2, videos_per_class=counts, frames=6, size=32, difficulty=1.0)
    assert (root / "meta.json").stat().st_mtime_ns == stamp                    # same arguments: kept
    synthetic.ensure(root, num_classes=2, videos_per_class=counts, frames=6, size=32)
    assert json.loads((root / "meta.json").read_text())["difficulty"] == 0.0    # other difficulty: regenerated


def test_attnet_data_synth_takes_the_difficulty(tmp_path, capsys):
    import json
    from attnet.data import cli
    cli.main(["synth", "--out", str(tmp_path / "s"), "--classes", "2", "--train", "1", "--val", "1", "--test", "1",
              "--frames", "6", "--size", "32", "--difficulty", "0.5"])
    assert json.loads((tmp_path / "s" / "meta.json").read_text())["difficulty"] == 0.5
    video, boxes = synthetic.render(1, (0, 1, 2), frames=6, size=32, difficulty=0.5)   # class 1, third video: test
    assert np.array_equal(np.load(tmp_path / "s" / "boxes" / "move_left" / "move_left_0002.npy"), boxes)


def test_flat_light_removes_the_colour_cue_and_keeps_boxes_and_the_default_videos():
    lit, lit_boxes = synthetic.render(0, (0, 0, 3), frames=8, size=112)           # move right
    flat, flat_boxes = synthetic.render(0, (0, 0, 3), frames=8, size=112, lighting=False)
    assert np.array_equal(lit, synthetic.render(0, (0, 0, 3), frames=8, size=112, lighting=True)[0])
    assert np.array_equal(lit_boxes, flat_boxes)                      # same random draws: same paths
    assert (boxes_moved := flat_boxes[-1, 0] - flat_boxes[0, 0]) > 30, boxes_moved

    def actor_colour(video, boxes, f):
        x0, y0, x1, y1 = boxes[f]
        return video[f, y0:y1, x0:x1].reshape(-1, 3).astype(float).mean(0)

    # lit: moving right, the actor turns from red to blue (light red 50 + 170 (1 - x), blue 50 + 170 x)
    lit_change = actor_colour(lit, lit_boxes, -1) - actor_colour(lit, lit_boxes, 0)
    assert lit_change[0] < -30 and lit_change[2] > 30
    # flat: the same colour wherever it stands (tint, X mark and noise only)
    flat_change = actor_colour(flat, flat_boxes, -1) - actor_colour(flat, flat_boxes, 0)
    assert np.abs(flat_change).max() < 8
    # and the background's left and right halves are lit alike
    left, right = flat[..., :56, :].astype(float).mean(), flat[..., 56:, :].astype(float).mean()
    lit_red = lit[..., :56, 0].astype(float).mean() - lit[..., 56:, 0].astype(float).mean()
    flat_red = flat[..., :56, 0].astype(float).mean() - flat[..., 56:, 0].astype(float).mean()
    assert lit_red > 30 and abs(flat_red) < 8 and abs(left - right) < 8


def test_ensure_regenerates_when_the_lighting_changes(tmp_path):
    import json
    small = dict(num_classes=2, videos_per_class={"train": 1, "val": 1, "test": 1}, frames=4, size=32)
    synthetic.ensure(tmp_path, **small)
    assert json.loads((tmp_path / "meta.json").read_text())["lighting"] is True
    synthetic.ensure(tmp_path, **small, lighting=False)
    assert json.loads((tmp_path / "meta.json").read_text())["lighting"] is False


def test_processes_ensuring_one_dataset_at_once_generate_it_once(tmp_path, monkeypatch):
    import multiprocessing
    import time
    calls = tmp_path / "calls.txt"

    def slow_generate(out, **wanted):            # what generate leaves behind, slowly: meta.json last
        with open(calls, "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(0.5)
        out.mkdir(parents=True, exist_ok=True)
        (out / "meta.json").write_text(json.dumps(wanted))
        return out

    monkeypatch.setattr(synthetic, "generate", slow_generate)
    fork = multiprocessing.get_context("fork")   # the children keep the patched generate
    procs = [fork.Process(target=synthetic.ensure, args=(tmp_path / "data",), kwargs={"num_classes": 2})
             for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0]
    assert len(calls.read_text().split()) == 1   # without the lock both generate (checked: 2 lines)
