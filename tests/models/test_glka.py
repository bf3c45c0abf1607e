"""GLKANet: every stream subset, the fusion layer, score fusion, size and learnability."""
import itertools

import pytest
import torch

from attnet.losses import GLKALoss
from attnet.models import GLKANet, build_backbone
from attnet.models.backbones import PretrainedWeightsError

SUBSETS = [s for r in (1, 2, 3) for s in itertools.combinations(("gp", "sa", "la"), r)]


def small(streams=("gp", "sa", "la"), **kw):
    kw = {"backbone": "tiny", "hidden_size": 16, "num_layers": 2, **kw}
    return GLKANet(5, streams=streams, **kw)


@pytest.mark.parametrize("fusion_layer", [True, False], ids=["fusion", "no-fusion"])
@pytest.mark.parametrize("streams", SUBSETS, ids="+".join)
def test_every_subset_runs_forward_and_backward(streams, fusion_layer):
    model = small(streams, fusion_layer=fusion_layer)
    out = model(torch.randn(2, 3, 3, 64, 64))
    assert out.logits.shape == (2, 5)
    assert set(out.stream_logits) == set(streams)
    assert set(out.attention) == set(streams) - {"gp"}
    for maps in out.attention.values():
        assert maps.shape == (2, 3, 4, 4)
        torch.testing.assert_close(maps.sum(dim=(2, 3)), torch.ones(2, 3))
    torch.testing.assert_close(out.logits, torch.stack(list(out.stream_logits.values())).mean(0))
    GLKALoss()(out, torch.tensor([0, 3]))[0].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
    width = {s: model.temporal[s].rnn.layers[0].input_size for s in streams}
    for s in streams:
        assert width[s] == 128 * (2 if s != "gp" and fusion_layer else 1)


def test_fusion_layer_feeds_global_and_local_vectors():
    """With the fusion layer the SA head sees [g ; v]: zeroing its g-half weights must change nothing
    only when g is what those rows multiply."""
    model = small(("sa",)).eval()
    x = torch.randn(1, 2, 3, 64, 64)
    feats = model.backbone(x.flatten(0, 1))
    g = feats.mean(dim=(2, 3))
    v, _ = model.pool["sa"](feats)
    expected = model.temporal["sa"](torch.cat([g, v], 1).view(1, 2, -1))
    torch.testing.assert_close(model(x).logits, expected)


def test_probability_fusion_is_log_of_mean_softmax():
    model = small(score_fusion="probs").eval()
    out = model(torch.randn(2, 2, 3, 64, 64))
    probs = torch.stack([torch.softmax(z, 1) for z in out.stream_logits.values()]).mean(0)
    torch.testing.assert_close(out.logits.exp(), probs)


def test_time_steps_come_from_the_input():
    model = small().eval()
    assert model(torch.randn(1, 7, 3, 64, 64)).attention["sa"].shape == (1, 7, 4, 4)


@pytest.mark.parametrize("bad", [(), ("gp", "xx"), ("sa", "sa")])
def test_bad_streams_rejected(bad):
    with pytest.raises(ValueError, match="streams must be"):
        small(bad)


def test_tiny_backbone_gives_7x7_at_112px():
    assert build_backbone("tiny")(torch.randn(1, 3, 112, 112)).shape == (1, 128, 7, 7)


def test_replace_heads_keeps_the_rest():
    model = small()
    before = model.temporal["sa"].rnn.layers[0].weight.clone()
    model.replace_heads(11)
    assert model(torch.randn(1, 2, 3, 64, 64)).logits.shape == (1, 11)
    assert torch.equal(model.temporal["sa"].rnn.layers[0].weight, before)


def test_parameter_count_of_the_paper_model():
    model = GLKANet(51, backbone="resnet34")
    resnet34_without_fc = 21_797_672 - (512 * 1000 + 1000)        # torchvision total minus its fc
    sa = 1 + 1                                                      # alpha, beta
    la = (512 * 128 + 128) + (128 * 1 + 1)                          # W1, b1, w2, b2
    sru_layer = lambda i, d, k: i * d * k + 2 * d + 2 * d           # weight, weight_c, bias
    fc = 1024 * 51 + 51
    gp_head = sru_layer(512, 1024, 4) + 2 * sru_layer(1024, 1024, 3) + fc     # input 512 != 1024: k = 4
    att_head = 3 * sru_layer(1024, 1024, 3) + fc                               # [g ; v] is 1024 wide
    expected = resnet34_without_fc + sa + la + gp_head + 2 * att_head
    assert expected == 48_807_132
    assert sum(p.numel() for p in model.parameters()) == expected


def eval_accuracy(model, clips, labels):
    model.eval()
    with torch.no_grad():
        accuracy = model(clips).logits.argmax(1).eq(labels).float().mean().item()
    model.train()
    return accuracy


def test_small_model_overfits_eight_clips_with_the_full_loss():
    torch.manual_seed(0)
    model = GLKANet(8, backbone="tiny", hidden_size=32, num_layers=2, dropout=0.0)
    clips, labels = torch.randn(8, 4, 3, 48, 48), torch.arange(8)
    criterion = GLKALoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        loss, _ = criterion(model(clips), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if eval_accuracy(model, clips, labels) == 1.0:
            break
    assert eval_accuracy(model, clips, labels) == 1.0
    assert losses[-1] < 0.5 * losses[0]


def test_imagenet_offline_fails_fast_with_instructions(monkeypatch, tmp_path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    import socket

    def refuse(*args, **kwargs):
        raise OSError("network unreachable")
    monkeypatch.setattr(socket, "create_connection", refuse)
    with pytest.raises(PretrainedWeightsError, match=r"resnet34-[0-9a-f]+\.pth.*pretrained="):
        build_backbone("resnet34", "imagenet")


def test_local_pretrained_file_in_torchvision_layout(tmp_path):
    import torchvision
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(reference.state_dict(), path)
    net = build_backbone("resnet18", str(path))
    torch.testing.assert_close(net[0].weight, reference.conv1.weight)
    torch.testing.assert_close(net[7][1].bn2.running_var, reference.layer4[1].bn2.running_var)
    with pytest.raises(FileNotFoundError, match="missing.pth: pretrained weights file not found"):
        build_backbone("resnet18", str(tmp_path / "missing.pth"))


def test_registries_are_importable_and_list_the_names():
    from attnet.models import BACKBONES, STREAMS, TEMPORAL_MODELS
    assert {"resnet18", "resnet34", "resnet50", "tiny"} <= set(BACKBONES)
    assert list(STREAMS) == ["gp", "sa", "la", "oracle"]
    assert list(TEMPORAL_MODELS) == ["sru", "lstm", "gru", "mean"]
    with pytest.raises(ValueError, match="registered are tiny, resnet18, resnet34, resnet50"):
        build_backbone("vgg")


def test_oracle_stream_attends_to_the_box_and_joins_the_ga_loss():
    """tiny backbone at 64 px: 4x4 maps of 16 px cells; the box covers cells (0, 0) and (0, 1)."""
    model = small(("gp", "oracle")).eval()
    x = torch.randn(2, 3, 3, 64, 64)
    boxes = torch.tensor([0, 0, 32, 16]).expand(2, 3, 4)
    out = model(x, boxes)
    expected = torch.zeros(4, 4)
    expected[0, :2] = 0.5
    torch.testing.assert_close(out.attention["oracle"], expected.expand(2, 3, 4, 4))
    feats = model.backbone(x.flatten(0, 1))
    v = torch.cat([feats.mean(dim=(2, 3)), feats[:, :, 0, :2].mean(-1)], 1)
    torch.testing.assert_close(out.stream_logits["oracle"], model.temporal["oracle"](v.view(2, 3, -1)))
    assert model.temporal["oracle"].rnn.layers[0].input_size == 2 * 128      # fusion layer [g ; v]
    _, parts = GLKALoss()(out, torch.tensor([0, 1]))
    assert set(parts) == {"ce", "ga_oracle"}


def test_oracle_without_boxes_is_a_clear_error():
    model = small(("oracle",))
    with pytest.raises(ValueError, match=r"oracle stream needs the actor boxes \[B, T, 4\] = \[1, 2, 4\], got none"):
        model(torch.randn(1, 2, 3, 64, 64))
    with pytest.raises(ValueError, match=r"got shape \(1, 4\)"):
        model(torch.randn(1, 2, 3, 64, 64), torch.zeros(1, 4))
