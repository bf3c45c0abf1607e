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
    maps["gradcam"] = torch.softmax(torch.randn(4, 16), 1).view(4, 4, 4)
    fig = viz.attention_figure(images, maps, title="t", boxes=np.array([[0, 0, 8, 8]] * 4), path=tmp_path / "a.png")
    # frames, then LA, SA and Grad-CAM: a row each, a column per frame
    assert [ax.get_ylabel() for ax in fig.axes[::4]] == ["Frames", "Learning-based Attention",
                                                         "Statistic-based Attention", "Grad-CAM"]
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


def test_figures_are_returned_without_being_left_open_in_pyplot(tmp_path):
    """A notebook shows a returned figure once, as the cell's value: pyplot must not hold
    (and show again) a copy, and scripts must not leak open figures."""
    import matplotlib.pyplot as plt
    plt.close("all")
    metrics = pd.DataFrame({"epoch": [1, 2], "loss": [2.0, 1.0], "val_top1": [10, 40]})
    runs = pd.DataFrame({"config": ["a", "b"], "test.top1": [10.0, 30.0], "status": ["done"] * 2})
    figures = [viz.learning_curves(metrics), viz.stream_accuracy({"top1": 50, "sa_top1": 40}),
               viz.ablation_chart(runs), viz.tsn_timeline(30, 3, [[1, 12, 25]], [[5, 15, 25]])]
    assert plt.get_fignums() == []
    for i, fig in enumerate(figures):
        fig.savefig(tmp_path / f"{i}.png")
        assert is_png(tmp_path / f"{i}.png")
    seeds = pd.DataFrame({"config": ["a", "a", "a"], "test.top1": [10.0, 20.0, 30.0], "status": ["done"] * 3})
    for name in ("first.png", "again.png"):               # no random jitter: the same picture every time
        viz.ablation_chart(seeds, path=tmp_path / name)
    assert (tmp_path / "again.png").read_bytes() == (tmp_path / "first.png").read_bytes()
    bars = figures[1].axes[0].patches
    assert [round(b.get_height(), 1) for b in bars] == [50, 40]


def test_transfer_curves_draw_each_start_on_shared_axes(tmp_path):
    tuned = pd.DataFrame({"epoch": [1, 2], "loss": [1.5, 0.5], "val_top1": [60.0, 90.0]})
    scratch = pd.DataFrame({"epoch": [1, 2, 3], "loss": [2.0, 1.8, 1.6]})         # no validation set
    fig = viz.transfer_curves({"fine-tuned": tuned, "from scratch": scratch}, path=tmp_path / "t.png")
    loss, val = fig.axes
    assert [line.get_label() for line in loss.lines] == ["fine-tuned", "from scratch"]
    assert [list(line.get_ydata()) for line in loss.lines] == [[1.5, 0.5], [2.0, 1.8, 1.6]]
    assert [(line.get_label(), list(line.get_ydata())) for line in val.lines] == [("fine-tuned", [60.0, 90.0])]
    assert is_png(tmp_path / "t.png")


def test_paper_vs_reproduced_chart_groups_rows_by_dataset_and_counts_those_to_fill(tmp_path):
    comparison = pd.DataFrame({
        "method": ["GLKA", "TSN", "I3D", "attnet: GP only"], "dataset": ["HMDB51", "UCF101", "HMDB51", "synthetic"],
        "pretraining": ["Kinetics-600", "ImageNet", "Kinetics", ""],
        "top-1": ["", "83.03", "80.7", "97.1 [95.0, 99.2]"],
        "status": ["to fill from the paper", "quoted", "quoted", "reproduced here"]})
    fig = viz.paper_vs_reproduced_chart(comparison, path=tmp_path / "p.png")
    ax = fig.axes[0]
    ticks = sorted(zip(ax.get_yticks(), ax.get_yticklabels()), key=lambda tick: -tick[0])   # top down
    labels = [label.get_text() for _, label in ticks]
    assert labels == ["TSN · UCF101 · pre-trained on ImageNet", "I3D · HMDB51 · pre-trained on Kinetics",
                      "attnet: GP only · synthetic"]                   # HMDB51 first seen on a row left out
    quoted, ours = ax.containers
    assert list(quoted.lines[0].get_xdata()) == [83.03, 80.7] and list(ours.lines[0].get_xdata()) == [97.1]
    segment = ours.lines[2][0].get_segments()[0]                        # the interval [95.0, 99.2]
    assert [round(x, 6) for x in segment[:, 0]] == [95.0, 99.2]
    assert ax.get_title() == "quoted and reproduced top-1 (rows still to fill from the paper: 1)"
    assert is_png(tmp_path / "p.png")


def test_class_samples_shows_the_first_video_of_each_class_with_its_box(tmp_path):
    from attnet.data import build_dataset, synthetic
    root = synthetic.ensure(tmp_path / "syn", num_classes=3, frames=8, size=32, distractors=1,
                            videos_per_class={"train": 1, "val": 1, "test": 2})
    test = build_dataset("synthetic", root, subset="test", segments=4, size=32, resize=32, normalize=False)
    boxes_of = lambda r: synthetic.load_boxes(root, r.path.relative_to(root))  # noqa: E731
    fig = viz.class_samples(test, boxes_of, frames=3)
    axes = np.array(fig.axes).reshape(3, 3)
    labels = [r.label for r in test.records]
    for row in range(3):
        i = labels.index(row)                      # the first test video of class `row`
        clip, _ = test[i]
        indices = test.frame_indices(i)[0]
        boxes = boxes_of(test.records[i])
        for col, t in enumerate([0, 2, 3]):        # 3 of 4 sampled frames: linspace(0, 3, 3) rounded
            np.testing.assert_allclose(axes[row, col].images[0].get_array(), clip[t].permute(1, 2, 0).numpy())
            (patch,) = axes[row, col].patches
            x0, y0, x1, y1 = boxes[indices[t]]
            assert patch.get_xy() == (x0 - 0.5, y0 - 0.5) and (patch.get_width(), patch.get_height()) == (x1 - x0, y1 - y0)
        assert axes[row, 0].get_ylabel() == test.classes[row]
