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


def test_detach_gp_keeps_the_hinge_value_and_stops_its_gradient_at_gp():
    gp = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    att = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 3.0]])
    y = torch.tensor([0, 1])
    expected = sum(p_true(gp[i].tolist(), y[i]) - p_true(att[i].tolist(), y[i]) + 0.1 for i in range(2)) / 2
    for detach in (False, True):
        g, a = gp.clone().requires_grad_(), att.clone().requires_grad_()
        value = ga_regularization(g, a, y, detach_gp=detach)
        assert value.item() == pytest.approx(expected, rel=1e-6)
        value.backward()
        assert a.grad is not None and a.grad.abs().sum() > 0
        assert (g.grad is None) == detach


def test_detach_gp_in_the_model_no_ga_gradient_reaches_the_gp_stream():
    """Loss = the GA parts only: with detach_gp the GP head gets no gradient; without, it does."""
    from attnet.models import GLKANet
    torch.manual_seed(0)
    model = GLKANet(4, backbone="tiny", streams=("gp", "sa", "la"), hidden_size=8, num_layers=1, dropout=0.0)
    x, y = torch.randn(2, 2, 3, 32, 32), torch.tensor([0, 3])
    for detach in (True, False):
        model.zero_grad(set_to_none=True)
        _, parts = GLKALoss(detach_gp=detach, margin=1.0)(model(x), y)    # margin 1: the hinge is active
        (parts["ga_sa"] + parts["ga_la"]).backward()
        gp_grads = [p.grad for p in model.temporal["gp"].parameters()]
        if detach:
            assert all(g is None for g in gp_grads)
        else:
            assert all(g is not None and g.abs().sum() > 0 for g in gp_grads)
        assert model.temporal["sa"].fc.weight.grad.abs().sum() > 0


def test_loss_is_float32_for_low_precision_logits():
    y = torch.tensor([1, 0])
    z = {s: torch.randn(2, 3) for s in ("gp", "sa")}
    low = GLKAOutput(z["gp"].bfloat16(), {s: v.bfloat16() for s, v in z.items()})
    total, parts = GLKALoss()(low, y)
    assert total.dtype == torch.float32 and all(p.dtype == torch.float32 for p in parts.values())
    exact = GLKALoss()(GLKAOutput(z["gp"].bfloat16().float(), {s: v.bfloat16().float() for s, v in z.items()}), y)[0]
    assert torch.equal(total, exact)
