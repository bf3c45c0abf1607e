"""GLKANet under CPU autocast (bf16, fp16), channels_last and GradScaler: the mechanisms the GPU
runs use, exercised on CPU."""
import pytest
import torch

from attnet.losses import GLKALoss
from attnet.models import GLKANet

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# Largest |fused logit - fp32 fused logit| allowed, relative to the largest |fp32 logit|: a few
# units of the format's rounding (bf16 2^-8, fp16 2^-11) accumulated through ResNet-18 (the tiny
# backbone, with fewer layers, stays within it too).
REL_TOL = {"bf16": 0.03, "fp16": 0.005}
STREAMS = ("gp", "sa", "la", "oracle")


def model_and_batch(temporal: str, seed: int = 0, backbone: str = "resnet18"):
    torch.manual_seed(seed)
    model = GLKANet(5, backbone=backbone, pretrained=None, streams=STREAMS, temporal=temporal,
                    hidden_size=16, num_layers=2)
    x = torch.randn(2, 3, 3, 64, 64)
    boxes = torch.tensor([[8, 8, 40, 40], [16, 0, 64, 30], [0, 0, 0, 0]]).expand(2, 3, 4)
    return model, x, boxes, torch.tensor([1, 4])


def assert_close_relative(actual, reference, rel):
    err = (actual.float() - reference).abs().max().item()
    assert err <= rel * reference.abs().max().item(), f"max error {err} vs scale {reference.abs().max().item()}"


@pytest.mark.parametrize("amp", DTYPES)
@pytest.mark.parametrize("temporal", ["sru", "lstm", "gru", "mean"])
def test_autocast_forward_backward(temporal, amp):
    """Every temporal model on the tiny backbone (a CPU without bfloat16 / fp16 units emulates
    them: ResNet-18 here would take seconds per case); ResNet-18 is autocast below."""
    model, x, boxes, y = model_and_batch(temporal, backbone="tiny")
    dtype = DTYPES[amp]
    features = {}
    model.backbone.register_forward_hook(lambda mod, inp, out: features.update(backbone=out))
    for head in model.temporal.values():
        head.rnn.register_forward_hook(lambda mod, inp, out: features.setdefault("temporal", []).append(
            out[0] if isinstance(out, tuple) else out))

    with torch.autocast("cpu", dtype=dtype):
        out = model(x, boxes)
        loss, parts = GLKALoss()(out, y)
    assert features["backbone"].dtype == dtype
    assert all(h.dtype == torch.float32 for h in features["temporal"])
    assert out.logits.dtype == torch.float32 and loss.dtype == torch.float32
    assert all(p.dtype == torch.float32 for p in parts.values())
    assert set(parts) == {"ce", "ga_sa", "ga_la", "ga_oracle"}
    assert torch.isfinite(loss)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name

    model.eval()
    with torch.no_grad():
        reference = model(x, boxes).logits
        with torch.autocast("cpu", dtype=dtype):
            low = model(x, boxes).logits
    assert_close_relative(low, reference, REL_TOL[amp])


@pytest.mark.parametrize("amp", ["off", "bf16"])
def test_channels_last_gives_the_same_logits(amp):
    model, x, boxes, _ = model_and_batch("sru")
    model.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
        contiguous = model(x, boxes).logits
        model.to(memory_format=torch.channels_last)
        assert model.backbone[0].weight.is_contiguous(memory_format=torch.channels_last)
        last = model(x.contiguous(), boxes).logits
    assert_close_relative(last, contiguous.float(), 1e-5 if amp == "off" else REL_TOL["bf16"])


@pytest.mark.slow
def test_grad_scaler_step_on_cpu_fp16():
    """Steps that overflow fp16 are skipped with the weights untouched (here conv1's gradient, ~2,
    overflows at the default scale 2^16); the first finite step updates every weight by
    lr * the unscaled gradient."""
    model, x, boxes, y = model_and_batch("sru", seed=1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu")
    for _ in range(4):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        optimizer.zero_grad()
        with torch.autocast("cpu", dtype=torch.float16):
            loss, _ = GLKALoss()(model(x, boxes), y)
        scaler.scale(loss).backward()
        scale = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        if scaler.get_scale() == scale:          # no inf/NaN found: the step was taken
            break
        assert scaler.get_scale() == scale / 2
        assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    else:
        pytest.fail("every step overflowed")
    still = [n for n, p in model.named_parameters() if torch.equal(p, before[n])]
    assert still == ["pool.sa.conv.bias"]        # beta: softmax is shift-invariant, its gradient is 0
    for name, p in model.named_parameters():
        assert torch.isfinite(p).all(), name
    fc = model.temporal["gp"].fc.weight
    torch.testing.assert_close(before["temporal.gp.fc.weight"] - fc.detach(), 0.1 * fc.grad)
