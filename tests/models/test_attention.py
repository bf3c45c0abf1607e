"""Each pooling stream on a hand-computed 2-channel, 2x2 example."""
import math

import pytest
import torch

from attnet.models.attention import GlobalPooling, LearnedAttention, StatisticAttention

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
