"""Our SRU against the `sru` 2.6 package, and the other temporal heads."""
import pytest
import torch

from attnet.models.temporal import SRU, TEMPORAL_MODELS, TemporalHead


def reference_pair(sru_package, input_size, hidden, layers=3, dropout=0.5):
    ref = sru_package.SRU(input_size, hidden, num_layers=layers, dropout=dropout, bidirectional=False,
                          layer_norm=False, highway_bias=0, rescale=True)
    ours = SRU(input_size, hidden, num_layers=layers, dropout=dropout)
    state = {k.replace("rnn_lst.", "layers."): v for k, v in ref.state_dict().items()}
    ours.load_state_dict(state)     # strict: the same parameter names and shapes
    return ref, ours


@pytest.mark.parametrize("input_size, hidden", [(24, 24), (16, 24)])
@pytest.mark.parametrize("grad", [False, True], ids=["cpp-kernel", "python-path"])
def test_sru_matches_package_in_eval(sru_package, input_size, hidden, grad):
    ref, ours = reference_pair(sru_package, input_size, hidden)
    ref.eval(), ours.eval()
    x = torch.randn(7, 3, input_size)                            # [T, B, D] for the package
    with torch.set_grad_enabled(grad):
        expected, _ = ref(x)
        got = ours(x.transpose(0, 1)).transpose(0, 1)
    assert got.shape == expected.shape == (7, 3, hidden)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_sru_weight_chunks_follow_input_size():
    ours = SRU(512, 1024, num_layers=3)
    assert [tuple(l.weight.shape) for l in ours.layers] == [(512, 4096), (1024, 3072), (1024, 3072)]
    assert ours.layers[0].scale_x.item() == pytest.approx(3 ** 0.5)   # sqrt(1 + 2 exp(0))


def test_sru_training_mode_matches_package_with_same_dropout_draws(sru_package):
    ref, ours = reference_pair(sru_package, 16, 24, dropout=0.5)
    x = torch.randn(5, 4, 16)
    torch.manual_seed(3)
    expected, _ = ref.train()(x)
    torch.manual_seed(3)
    got = ours.train()(x.transpose(0, 1)).transpose(0, 1)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_sru_gradients_reach_every_parameter():
    sru = SRU(16, 24, num_layers=3)
    sru(torch.randn(2, 5, 16)).pow(2).sum().backward()
    for name, p in sru.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_sru_is_causal():
    sru = SRU(8, 8, num_layers=2).eval()
    x = torch.randn(1, 6, 8)
    y = x.clone()
    y[:, 4:] += 1.0
    torch.testing.assert_close(sru(x)[:, :4], sru(y)[:, :4])
    assert not torch.allclose(sru(x)[:, 4:], sru(y)[:, 4:])


@pytest.mark.parametrize("kind", ["sru", "lstm", "gru", "mean"])
def test_head_is_mean_over_steps_of_per_step_scores(kind):
    head = TemporalHead(kind, 8, num_classes=5, hidden_size=12, num_layers=2).eval()
    x = torch.randn(3, 4, 8)
    states = head.rnn(x)
    per_step = head.fc(states)                                   # [B, T, K], as the authors' loop
    torch.testing.assert_close(head(x), per_step.mean(dim=1))
    assert states.shape == (3, 4, 8 if kind == "mean" else 12)


def test_unknown_temporal_model():
    with pytest.raises(ValueError, match="unknown temporal model 'tcn'"):
        TemporalHead("tcn", 8, 5)


def test_temporal_registry_names_and_output_widths():
    assert list(TEMPORAL_MODELS) == ["sru", "lstm", "gru", "mean"]
    widths = {kind: TemporalHead(kind, 8, 5, hidden_size=12).fc.in_features for kind in TEMPORAL_MODELS}
    assert widths == {"sru": 12, "lstm": 12, "gru": 12, "mean": 8}
    with pytest.raises(ValueError, match="registered are sru, lstm, gru, mean"):
        TemporalHead("tcn", 8, 5)


@pytest.mark.parametrize("kind", ["sru", "lstm", "gru"])
def test_head_runs_in_float32_under_autocast(kind):
    """Under bf16 autocast the head gives the fp32 result bit for bit: autocast is off inside."""
    torch.manual_seed(0)
    head = TemporalHead(kind, 8, num_classes=5, hidden_size=12, num_layers=2).eval()
    x = torch.randn(3, 4, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = head(x.bfloat16())
    assert low.dtype == torch.float32
    assert torch.equal(low, head(x.bfloat16().float()))
