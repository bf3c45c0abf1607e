"""The authors' checkpoint layout loads into GLKANet and gives their logits.

The oracle below re-implements the forward of the authors' release (their key names, the
`sru` package for the recurrence, their reshapes) independently of attnet.models.
"""
import pytest
import torch
import torch.nn.functional as F
import torchvision

from attnet.convert import CheckpointError, convert_state_dict, load_authors_checkpoint
from attnet.models import GLKANet


def authors_layout_state(sru_package, num_classes=600, hidden=1024):
    """Random weights in the exact key layout of tests/fixtures/authors_checkpoint_keys.txt."""
    state = {}
    net = torch.nn.Sequential(*list(torchvision.models.resnet34(weights=None).children())[:-2])
    for k, v in net.state_dict().items():
        state[f"module.spatial.net.{k}"] = v
    sa = torch.nn.Conv2d(1, 1, 1)
    state["module.temporal.attention_auto.conv.weight"] = sa.weight.data
    state["module.temporal.attention_auto.conv.bias"] = sa.bias.data
    mlp = torch.nn.Sequential(torch.nn.Linear(512, 128), torch.nn.Tanh(), torch.nn.Linear(128, 1))
    for k, v in mlp.state_dict().items():
        state[f"module.temporal.attention_learned.linear.{k}"] = v
    state["module.temporal.attention_learned.conv.0.weight"] = torch.randn(49, 49, 1)
    state["module.temporal.attention_learned.conv.0.bias"] = torch.randn(49)
    rnns = {}
    for name, width in (("average", 512), ("auto", 1024), ("learned", 1024)):
        rnn = sru_package.SRU(width, hidden, num_layers=3, dropout=0.5, bidirectional=False,
                              layer_norm=False, highway_bias=0, rescale=True)
        with torch.no_grad():
            for layer in rnn.rnn_lst:      # non-trivial biases so every parameter matters
                layer.bias.uniform_(-0.5, 0.5)
        fc = torch.nn.Linear(hidden, num_classes)
        for k, v in rnn.state_dict().items():
            state[f"module.temporal.reason_{name}.rnn.{k}"] = v
        for k, v in fc.state_dict().items():
            state[f"module.temporal.reason_{name}.fc.{k}"] = v
        rnns[name] = rnn.eval()
    return state, rnns


def authors_forward(state, rnns, x):
    """Their Spatial_TemporalNet forward, written from their math with their key names."""
    b, t = x.shape[:2]
    net = torch.nn.Sequential(*list(torchvision.models.resnet34(weights=None).children())[:-2]).eval()
    net.load_state_dict({k[len("module.spatial.net."):]: v for k, v in state.items() if ".spatial." in k})
    feats = net(x.reshape(b * t, *x.shape[2:]))                       # [b*t, 512, k, k]
    flat = feats.flatten(2)                                            # [b*t, 512, k*k]
    average = flat.mean(2)
    energy = flat.pow(2).mean(1)
    weight = state["module.temporal.attention_auto.conv.weight"].item()
    bias = state["module.temporal.attention_auto.conv.bias"].item()
    auto = (flat * torch.softmax(energy * weight + bias, -1).unsqueeze(1)).sum(2)
    p = "module.temporal.attention_learned.linear."
    hidden = torch.tanh(F.linear(flat.transpose(1, 2), state[p + "0.weight"], state[p + "0.bias"]))
    score = torch.tanh(F.linear(hidden, state[p + "2.weight"], state[p + "2.bias"])).squeeze(-1)
    learned = (flat * torch.softmax(score, -1).unsqueeze(1)).sum(2)
    inputs = {"average": average, "auto": torch.cat([average, auto], 1), "learned": torch.cat([average, learned], 1)}
    logits = {}
    for name, v in inputs.items():
        steps, _ = rnns[name](v.view(b, t, -1).transpose(0, 1))
        fc = f"module.temporal.reason_{name}.fc."
        logits[name] = F.linear(steps, state[fc + "weight"], state[fc + "bias"]).mean(0)
    return logits


def test_converted_checkpoint_reproduces_the_authors_logits(sru_package, tmp_path):
    torch.manual_seed(1)
    state, rnns = authors_layout_state(sru_package)
    path = tmp_path / "2019-03-04 23:12:5914.pkl"
    torch.save(state, path)
    model = load_authors_checkpoint(path).eval()
    assert model.num_classes == 600 and model.streams == ("gp", "sa", "la")
    x = torch.randn(2, 3, 3, 112, 112)
    with torch.no_grad():
        ours = model(x)
        theirs = authors_forward(state, rnns, x)
    for name, stream in (("average", "gp"), ("auto", "sa"), ("learned", "la")):
        torch.testing.assert_close(ours.stream_logits[stream], theirs[name], atol=2e-4, rtol=1e-4)
    torch.testing.assert_close(ours.logits, sum(theirs.values()) / 3, atol=2e-4, rtol=1e-4)


def test_key_list_of_the_release_loads_and_heads_are_replaced(authors_keys):
    state = {key: torch.zeros(shape, dtype=getattr(torch, dtype)) for key, shape, dtype in authors_keys}
    assert len(state) == 216 + 2 + 4 + 2 + 3 * (3 * 4 + 2)   # resnet34, SA, LA, unused conv, 3 x (SRU + fc)
    model = load_authors_checkpoint(state, num_classes=51)
    assert model.num_classes == 51
    assert [model.temporal[s].fc.out_features for s in model.streams] == [51, 51, 51]
    assert model.temporal["gp"].rnn.layers[0].weight.shape == (512, 4096)
    assert isinstance(model, GLKANet)


def test_foreign_keys_are_named():
    with pytest.raises(CheckpointError, match="unexpected key 'module.fc.weight'"):
        convert_state_dict({"module.fc.weight": torch.zeros(1)}, "x.pkl")
