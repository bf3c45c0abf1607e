"""TSN indices: hand-computed for train (seeded) and test."""
import torch

from attnet.data.sampling import eval_indices, train_indices


def test_eval_indices_are_segment_centres_and_spread_clips():
    # 30 frames, 3 segments of 10: centres at 5, 15, 25
    assert eval_indices(30, 3).tolist() == [[5, 15, 25]]
    # 2 clips: offsets 1/4 and 3/4 of each segment -> 2.5, 7.5 within [0, 10)
    assert eval_indices(30, 3, clips=2).tolist() == [[2, 12, 22], [7, 17, 27]]
    # 10 frames, 4 segments of 2.5 frames: floor((i + 0.5) * 2.5) = 1, 3, 6, 8
    assert eval_indices(10, 4).tolist() == [[1, 3, 6, 8]]


def test_short_videos_repeat_frames_in_order():
    assert eval_indices(3, 6).tolist() == [[0, 0, 1, 1, 2, 2]]
    idx = train_indices(2, 5)
    assert idx.tolist() == sorted(idx.tolist()) and set(idx.tolist()) <= {0, 1}


def test_train_indices_are_one_uniform_draw_per_segment():
    gen = torch.Generator().manual_seed(7)
    u = torch.rand(4, generator=gen, dtype=torch.float64)
    expected = [int((i + u[i].item()) * 40 / 4) for i in range(4)]
    got = train_indices(40, 4, torch.Generator().manual_seed(7))
    assert got.tolist() == expected
    for i, k in enumerate(got.tolist()):
        assert 10 * i <= k < 10 * (i + 1)


def test_train_draws_cover_each_segment():
    seen = torch.stack([train_indices(12, 3) for _ in range(400)])
    for i in range(3):
        assert set(seen[:, i].tolist()) == {4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3}
