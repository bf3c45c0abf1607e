"""Each pooling stream on a hand-computed 2-channel, 2x2 example."""
import math

import pytest
import torch

from attnet.models.attention import (STREAMS, GlobalPooling, LearnedAttention, OracleAttention, StatisticAttention,
                                     build_attention)

# positions in row-major order: f_0 = (1, 0), f_1 = (0, 1), f_2 = (2, 2), f_3 = (0, 0)
POSITIONS = [(1.0, 0.0), (0.0, 1.0), (2.0, 2.0), (0.0, 0.0)]
FEATS = torch.tensor(POSITIONS).t().reshape(1, 2, 2, 2)


def softmax(values):
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def weighted_sum(weights):
    return [sum(a * f[c] for a, f in zip(weights, POSITIONS)) for c in range(2)]


def test_global_pooling_is_the_mean_with_uniform_weights():
    pooled, weights = GlobalPooling()(FEATS)
    assert pooled.tolist() == [[0.75, 0.75]]
    assert weights.shape == (1, 2, 2) and torch.all(weights == 0.25)


@pytest.mark.parametrize("alpha, beta", [(1.0, 0.0), (2.0, 5.0), (-1.0, 0.3)])
def test_statistic_attention_by_hand(alpha, beta):
    sa = StatisticAttention()
    with torch.no_grad():
        sa.conv.weight.fill_(alpha)
        sa.conv.bias.fill_(beta)
    pooled, weights = sa(FEATS)
    energies = [0.5, 0.5, 4.0, 0.0]                       # mean of squares over the 2 channels
    expected = softmax([alpha * s + beta for s in energies])
    assert weights.flatten().tolist() == pytest.approx(expected, rel=1e-5)
    assert pooled.flatten().tolist() == pytest.approx(weighted_sum(expected), rel=1e-5)
    assert weights.sum().item() == pytest.approx(1.0)


def test_statistic_attention_favours_the_highest_energy_cell():
    sa = StatisticAttention()
    with torch.no_grad():
        sa.conv.weight.fill_(1.0)
        sa.conv.bias.zero_()
    _, weights = sa(FEATS)
    assert weights.flatten().argmax().item() == 2
    assert weights.flatten()[2] > 0.9


def test_learned_attention_by_hand():
    la = LearnedAttention(channels=2, bottleneck=2)
    with torch.no_grad():
        la.linear[0].weight.copy_(torch.eye(2))
        la.linear[0].bias.zero_()
        la.linear[2].weight.copy_(torch.tensor([[1.0, -0.5]]))
        la.linear[2].bias.fill_(0.2)
    pooled, weights = la(FEATS)
    scores = [math.tanh(math.tanh(a) - 0.5 * math.tanh(b) + 0.2) for a, b in POSITIONS]
    expected = softmax(scores)
    assert weights.flatten().tolist() == pytest.approx(expected, rel=1e-5)
    assert pooled.flatten().tolist() == pytest.approx(weighted_sum(expected), rel=1e-5)


@pytest.mark.parametrize("module", [GlobalPooling(), StatisticAttention(), LearnedAttention(16)])
def test_weights_sum_to_one_and_channels_last_agrees(module):
    feats = torch.randn(3, 16, 5, 4)
    pooled, weights = module(feats)
    assert pooled.shape == (3, 16) and weights.shape == (3, 5, 4)
    assert torch.allclose(weights.sum(dim=(1, 2)), torch.ones(3))
    pooled_cl, weights_cl = module(feats.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(pooled, pooled_cl, atol=1e-6) and torch.allclose(weights, weights_cl)


def test_oracle_weights_are_the_box_coverage_by_hand():
    """64 px, 4x4 map (16 px cells): x 16..48 covers columns 1 and 2 fully; y 16..36 covers row 1
    fully and 4/16 of row 2. Coverage 1, 1, 0.25, 0.25 over a total of 2.5."""
    feats = torch.randn(1, 3, 4, 4)
    pooled, weights = OracleAttention()(feats, torch.tensor([[16, 16, 48, 36]]), (64, 64))
    expected = torch.zeros(4, 4)
    expected[1, 1] = expected[1, 2] = 0.4
    expected[2, 1] = expected[2, 2] = 0.1
    torch.testing.assert_close(weights[0], expected)
    assert weights.sum().item() == pytest.approx(1.0)
    torch.testing.assert_close(pooled[0], (feats[0] * expected).sum(dim=(1, 2)))


def test_oracle_coverage_on_a_non_square_input():
    """48 x 96 px (H x W), 2x4 map: cells 24 x 24 px; the box x 12..36, y 0..24 covers half of
    cells (0, 0) and (0, 1)."""
    weights = OracleAttention()(torch.randn(1, 2, 2, 4), torch.tensor([[12, 0, 36, 24]]), (48, 96))[1]
    expected = torch.zeros(2, 4)
    expected[0, 0] = expected[0, 1] = 0.5
    torch.testing.assert_close(weights[0], expected)


@pytest.mark.parametrize("box", [[0, 0, 0, 0], [70, 70, 90, 90], [30, 10, 20, 40]],
                         ids=["empty", "outside", "inverted"])
def test_oracle_box_covering_nothing_gives_uniform(box):
    feats = torch.randn(2, 3, 4, 4)
    boxes = torch.tensor([box, [0, 0, 64, 64]])          # the whole image is uniform too
    pooled, weights = OracleAttention()(feats, boxes, (64, 64))
    torch.testing.assert_close(weights, torch.full((2, 4, 4), 1 / 16))
    torch.testing.assert_close(pooled, feats.mean(dim=(2, 3)))


def test_oracle_needs_one_box_per_frame():
    with pytest.raises(ValueError, match=r"expected boxes \[2, 4\]"):
        OracleAttention()(torch.randn(2, 3, 4, 4), torch.zeros(3, 4), (64, 64))


def test_stream_registry_builds_every_stream_and_names_them_in_errors():
    assert list(STREAMS) == ["gp", "sa", "la", "oracle"]
    kinds = {name: type(build_attention(name, 8)) for name in STREAMS}
    assert kinds == {"gp": GlobalPooling, "sa": StatisticAttention, "la": LearnedAttention, "oracle": OracleAttention}
    with pytest.raises(ValueError, match="unknown stream 'xx': registered are gp, sa, la, oracle"):
        build_attention("xx", 8)
