"""GA regularization and the total GLKA loss on hand-made logits."""
import math

import pytest
import torch
import torch.nn.functional as F

from attnet.losses import GLKALoss, ga_regularization
from attnet.models import GLKAOutput


def p_true(logits, y):
    exps = [math.exp(v) for v in logits]
    return exps[y] / sum(exps)


def test_exact_hinge_value():
    gp = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    att = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    y = torch.tensor([0, 1])
    per_sample = [max(0.0, p_true(gp[i].tolist(), y[i]) - p_true(att[i].tolist(), y[i]) + 0.1) for i in range(2)]
    assert ga_regularization(gp, att, y).item() == pytest.approx(sum(per_sample) / 2, rel=1e-6)
    assert per_sample[0] > 0 and per_sample[1] > 0.1


def test_zero_when_attention_more_confident_by_more_than_the_margin():
    gp = torch.tensor([[0.0, 0.0]])                      # p_gp[y] = 0.5
    att = torch.tensor([[math.log(0.65 / 0.35), 0.0]])   # p_att[y] = 0.65 > 0.5 + 0.1
    assert ga_regularization(gp, att, torch.tensor([0])).item() == 0.0
    att_close = torch.tensor([[math.log(0.55 / 0.45), 0.0]])   # inside the margin: 0.5 - 0.55 + 0.1
    assert ga_regularization(gp, att_close, torch.tensor([0])).item() == pytest.approx(0.05, abs=1e-6)


def test_gradients_reach_both_streams_in_opposite_directions():
    gp = torch.tensor([[1.0, 0.0]], requires_grad=True)
    att = torch.tensor([[1.0, 0.0]], requires_grad=True)
    ga_regularization(gp, att, torch.tensor([0])).backward()
    assert gp.grad[0, 0] > 0 and att.grad[0, 0] < 0      # push GP's true class down, attention's up


def test_total_loss_parts_and_dropped_terms():
    y = torch.tensor([1])
    z = {s: torch.randn(1, 4) for s in ("gp", "sa", "la")}
    fused = torch.stack(list(z.values())).mean(0)
    total, parts = GLKALoss()(GLKAOutput(fused, z), y)
    assert set(parts) == {"ce", "ga_sa", "ga_la"}
    expected = F.cross_entropy(fused, y) + ga_regularization(z["gp"], z["sa"], y) + ga_regularization(z["gp"], z["la"], y)
    torch.testing.assert_close(total, expected)

    _, parts = GLKALoss(ga_reg=False)(GLKAOutput(fused, z), y)
    assert set(parts) == {"ce"}
    no_gp = {s: z[s] for s in ("sa", "la")}
    _, parts = GLKALoss()(GLKAOutput(fused, no_gp), y)
    assert set(parts) == {"ce"}
    _, parts = GLKALoss()(GLKAOutput(fused, {"gp": z["gp"], "la": z["la"]}), y)
    assert set(parts) == {"ce", "ga_la"}
