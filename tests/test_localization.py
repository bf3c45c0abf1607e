"""Attention mass in a box and the pointing game, by hand."""
import numpy as np
import pytest
import torch

from attnet.localization import (as_distribution, box_coverage, grad_cam, localization_scores, mass_in_box,
                                 pointing_hit, uniform_baseline)


def test_mass_counts_the_covered_share_of_each_cell():
    a = np.array([[0.4, 0.3], [0.2, 0.1]])                 # 2x2 map over a 4x4 image: 2x2-pixel cells
    assert mass_in_box(a, (0, 0, 2, 2), (4, 4)) == pytest.approx(0.4)
    assert mass_in_box(a, (1, 1, 3, 3), (4, 4)) == pytest.approx(0.25 * (0.4 + 0.3 + 0.2 + 0.1))
    assert mass_in_box(a, (0, 0, 4, 4), (4, 4)) == pytest.approx(1.0)
    assert box_coverage((2, 2), (2, 0, 4, 1), (4, 4)).tolist() == [[0.0, 0.5], [0.0, 0.0]]


def test_pointing_uses_the_centre_of_the_strongest_cell():
    a = np.array([[0.1, 0.2], [0.3, 0.4]])                 # max at row 1, col 1: centre (3, 3)
    assert pointing_hit(a, (2, 2, 4, 4), (4, 4))
    assert not pointing_hit(a, (0, 0, 2, 2), (4, 4))
    assert not pointing_hit(a, (0, 0, 3, 3), (4, 4))        # x1/y1 exclusive


def test_uniform_baseline():
    mass, hit = uniform_baseline((7, 7), (0, 0, 16, 16), (112, 112))
    assert mass == pytest.approx(16 * 16 / 112 ** 2)
    assert hit == pytest.approx(1 / 49)                     # only the centre (8, 8) is inside


def test_scores_per_frame_and_stream(tmp_path):
    from attnet.data import build_dataset, synthetic
    from attnet.models import GLKANet
    root = synthetic.generate(tmp_path, num_classes=2, videos_per_class={"train": 1, "val": 1, "test": 1},
                              frames=8, size=64)
    ds = build_dataset("synthetic", root, subset="test", segments=4, size=64, resize=64)
    model = GLKANet(2, backbone="tiny", hidden_size=8, streams=("gp", "la"))
    scores = localization_scores(model, ds, lambda r: synthetic.load_boxes(root, r.path.relative_to(root)))
    assert set(scores["stream"]) == {"la", "uniform"} and len(scores) == 2 * 2 * 4
    assert scores["mass"].between(0, 1).all()
    with pytest.raises(ValueError, match="no attention stream"):
        localization_scores(GLKANet(2, backbone="tiny", hidden_size=8, streams=("gp",)), ds, None)


def test_oracle_stream_scores_its_box_coverage_ceiling(tmp_path):
    """The oracle's map is coverage / sum(coverage), so its mass in the box is sum(c^2) / sum(c),
    never below uniform attention's sum(c) / (h w)."""
    from attnet.data import build_dataset, synthetic
    from attnet.models import GLKANet
    root = synthetic.generate(tmp_path, num_classes=2, videos_per_class={"train": 1, "val": 1, "test": 1},
                              frames=8, size=64)
    ds = build_dataset("synthetic", root, subset="test", segments=4, size=64, resize=64)
    boxes_of = lambda r: synthetic.load_boxes(root, r.path.relative_to(root))   # noqa: E731
    scores = localization_scores(GLKANet(2, backbone="tiny", hidden_size=8, streams=("gp", "oracle")), ds, boxes_of)
    assert set(scores["stream"]) == {"oracle", "uniform"}
    for _, row in scores[scores["stream"] == "oracle"].iterrows():
        cover = box_coverage((4, 4), boxes_of(ds.records[row["video"]])[row["frame"]], (64, 64))
        assert row["mass"] == pytest.approx((cover ** 2).sum() / cover.sum(), rel=1e-5)
    paired = scores.pivot_table(index=["video", "frame"], columns="stream", values="mass")
    assert (paired["oracle"] >= paired["uniform"] - 1e-9).all()


def test_a_hand_made_cam_is_scored_as_a_distribution():
    cams = torch.tensor([[[0.0, 2.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.0]]])    # the second: ReLU zeroed it all
    maps = as_distribution(cams)
    torch.testing.assert_close(maps, torch.tensor([[[0.0, 0.5], [0.25, 0.25]], [[0.25, 0.25], [0.25, 0.25]]]))
    a = maps[0].numpy()                                    # over a 4x4 image: 2x2-pixel cells
    assert mass_in_box(a, (2, 0, 4, 4), (4, 4)) == pytest.approx(0.75)    # the right column
    assert mass_in_box(a, (0, 0, 2, 2), (4, 4)) == pytest.approx(0.0)
    assert pointing_hit(a, (2, 0, 4, 2), (4, 4)) and not pointing_hit(a, (0, 2, 2, 4), (4, 4))


def _hand_grad_cam(model, clip):
    """Grad-CAM written out: d z_k / d F for the fused top class k, its spatial mean per frame and
    channel as weights, ReLU of the weighted channel sum."""
    feats = {}
    hook = model.backbone.register_forward_hook(lambda module, inputs, output: feats.setdefault("f", output))
    try:
        logits = model(clip[None]).logits
    finally:
        hook.remove()
    grad, = torch.autograd.grad(logits[0, logits.argmax(1).item()], feats["f"])
    return torch.relu((grad.mean(dim=(2, 3), keepdim=True) * feats["f"]).sum(1)).detach()


@pytest.mark.parametrize("temporal", ["sru", "gru"])
def test_grad_cam_is_the_hand_computed_map_per_frame(temporal):
    from attnet.models import GLKANet
    torch.manual_seed(0)
    model = GLKANet(3, backbone="tiny", hidden_size=8, temporal=temporal).eval()
    clip = torch.randn(6, 3, 64, 64)
    maps = grad_cam(model, clip)
    assert maps.shape == (6, 4, 4) and torch.isfinite(maps).all()          # one map a frame, on the attention grid
    cams = _hand_grad_cam(model, clip)
    assert (cams.sum(dim=(1, 2)) > 0).any()                # the comparison is not only of uniform frames
    torch.testing.assert_close(maps, as_distribution(cams))
    assert not model.training and all(p.grad is None for p in model.parameters())


def test_grad_cam_rows_score_the_model_s_map(tmp_path):
    from attnet.data import build_dataset, synthetic
    from attnet.models import GLKANet
    root = synthetic.generate(tmp_path, num_classes=2, videos_per_class={"train": 1, "val": 1, "test": 1},
                              frames=8, size=64)
    ds = build_dataset("synthetic", root, subset="test", segments=4, size=64, resize=64)
    boxes_of = lambda r: synthetic.load_boxes(root, r.path.relative_to(root))   # noqa: E731
    torch.manual_seed(0)
    model = GLKANet(2, backbone="tiny", hidden_size=8, streams=("gp", "sa"))
    scores = localization_scores(model, ds, boxes_of, gradcam=True)
    assert set(scores["stream"]) == {"sa", "gradcam", "uniform"}
    maps = grad_cam(model, ds[1][0])
    boxes = boxes_of(ds.records[1])
    for t, frame in enumerate(ds.frame_indices(1)[0].tolist()):
        row = scores[(scores["video"] == 1) & (scores["frame"] == frame) & (scores["stream"] == "gradcam")]
        if len(row):                                       # frames with the actor in view
            assert row["mass"].item() == pytest.approx(mass_in_box(maps[t].numpy(), boxes[frame], (64, 64)))
            assert row["hit"].item() == pointing_hit(maps[t].numpy(), boxes[frame], (64, 64))
