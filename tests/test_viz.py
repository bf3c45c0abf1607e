"""Figures are real PNGs; the paper's darkening and the map smoothing by hand."""
import numpy as np
import pandas as pd
import torch

from attnet import viz


def is_png(path):
    return path.is_file() and path.stat().st_size > 2000 and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_darken_keeps_attended_pixels_and_dims_the_rest():
    images = np.full((1, 2, 2, 3), 200, dtype=np.uint8)
    weights = np.array([[[1.0, 0.0], [0.5, 0.0]]])
    out = viz.darken(images, weights, floor=0.1)
    assert out[0, 0, 0, 0] == 200 and out[0, 0, 1, 0] == 20 and out[0, 1, 0, 0] == int(200 * 0.55)


def test_smoothed_maps_peak_where_attention_is():
    maps = torch.zeros(2, 7, 7)
    maps[0, 1, 5] = 1.0
    maps[1, 6, 0] = 1.0
    up = viz.smooth_maps(maps, (112, 112))
    assert up.shape == (2, 112, 112) and up.min() >= 0 and up.max() == 1.0
    r, c = np.unravel_index(up[0].argmax(), (112, 112))       # inside cell (1, 5): rows 16-31, cols 80-95
    assert 16 <= r < 32 and 80 <= c < 96
    r, c = np.unravel_index(up[1].argmax(), (112, 112))       # inside cell (6, 0)
    assert 96 <= r < 112 and 0 <= c < 16 and up[1, 8, 100] < 0.05


def test_figures_are_written(tmp_path):
    images = (np.random.default_rng(0).random((4, 32, 32, 3)) * 255).astype(np.uint8)
    maps = {"la": torch.softmax(torch.randn(4, 16), 1).view(4, 4, 4), "sa": torch.softmax(torch.randn(4, 16), 1).view(4, 4, 4)}
    viz.attention_figure(images, maps, title="t", boxes=np.array([[0, 0, 8, 8]] * 4), path=tmp_path / "a.png")
    gif = viz.attention_gif(images, maps, tmp_path / "a.gif")
    metrics = pd.DataFrame({"epoch": [1, 2], "loss": [2.0, 1.0], "loss_ce": [1.8, 0.9], "val_top1": [10, 40],
                            "train_top1": [12, 50], "val_sa_top1": [5, 30]})
    viz.learning_curves(metrics, path=tmp_path / "c.png")
    viz.stream_accuracy({"top1": 50, "gp_top1": 20, "sa_top1": 40, "la_top1": 45}, path=tmp_path / "s.png")
    runs = pd.DataFrame({"config": ["a", "a", "b"], "test.top1": [10.0, 20.0, 30.0], "status": ["done"] * 3})
    viz.ablation_chart(runs, path=tmp_path / "ab.png")
    viz.tsn_timeline(30, 3, [[1, 12, 25]], [[5, 15, 25]], path=tmp_path / "tsn.png")
    for name in ("a.png", "c.png", "s.png", "ab.png", "tsn.png"):
        assert is_png(tmp_path / name), name
    assert gif.read_bytes()[:6] == b"GIF89a"
