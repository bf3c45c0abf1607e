"""GLKANet through the Hugging Face mixin (save_pretrained / from_pretrained) and torch.hub (hubconf.py),
offline: the same logits back, config.json without a backbone download, one-line errors."""
import importlib.util
import json
from pathlib import Path

import huggingface_hub
import pytest
import torch

from attnet import GLKANet, load_config
from attnet.files import CheckpointError
from attnet.models import build_backbone

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(num_classes=5, backbone="tiny", hidden_size=16, num_layers=1, streams=("gp", "sa", "la"))


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No network: the Hub client in offline mode, torch.hub's cache in the test's folder."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))


def clip():
    return torch.randn(2, 2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def logits(model):
    with torch.no_grad():
        return model.eval()(clip()).logits


def hub_load(entry, **kwargs):
    return torch.hub.load(str(ROOT), entry, source="local", verbose=False, **kwargs)


def test_save_pretrained_then_from_pretrained_gives_the_same_logits(tmp_path):
    backbone = tmp_path / "tiny.pth"
    torch.save(build_backbone("tiny").state_dict(), backbone)
    model = GLKANet(**SMALL | {"pretrained": str(backbone), "streams": ("sa", "gp"), "dropout": 0.1})
    model.save_pretrained(tmp_path / "saved")
    assert sorted(p.name for p in (tmp_path / "saved").iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config == {"num_classes": 5, "backbone": "tiny", "pretrained": None, "streams": ["sa", "gp"],
                      "fusion_layer": True, "temporal": "sru", "hidden_size": 16, "num_layers": 1, "dropout": 0.1,
                      "score_fusion": "logits"}
    loaded = GLKANet.from_pretrained(tmp_path / "saved")
    assert loaded.streams == ("gp", "sa") and not loaded.training
    assert torch.equal(logits(loaded), logits(model))
    assert "library_name: attnet" in (tmp_path / "saved" / "README.md").read_text()


def test_config_json_follows_replaced_heads(tmp_path):
    model = GLKANet(**SMALL)
    model.replace_heads(7)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["num_classes"] == 7
    assert torch.equal(logits(GLKANet.from_pretrained(tmp_path)), logits(model))


@pytest.mark.parametrize("form", ["folder", "safetensors", "state dict", "run checkpoint", "url"])
def test_torch_hub_loads_every_weights_form(tmp_path, form):
    model = GLKANet(**SMALL)
    model.save_pretrained(tmp_path / "saved")
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    torch.save({"model": model.state_dict(), "epoch": 0}, tmp_path / "best.pt")
    weights = {"folder": tmp_path / "saved", "safetensors": tmp_path / "saved" / "model.safetensors",
               "state dict": tmp_path / "plain.pt", "run checkpoint": tmp_path / "best.pt",
               "url": (tmp_path / "plain.pt").as_uri()}[form]
    # a folder brings its config.json: the arguments need not be given
    kwargs = {} if form == "folder" else SMALL
    loaded = hub_load("glkanet", weights=str(weights), **kwargs)
    assert isinstance(loaded, GLKANet) and not loaded.training
    assert torch.equal(logits(loaded), logits(model))
    if form == "url":
        assert (tmp_path / "torch-home" / "hub" / "checkpoints" / "plain.pt").is_file()


def test_weights_of_another_architecture_are_one_line_naming_the_file(tmp_path):
    torch.save(GLKANet(**SMALL).state_dict(), tmp_path / "five.pt")
    with pytest.raises(CheckpointError, match=r"five\.pt: the weights do not fit this model \(0 missing, 0 unexpected, "
                                              r"6 of another shape, e.g. .temporal.gp.fc.weight.\)") as err:
        hub_load("glkanet", weights=str(tmp_path / "five.pt"), **SMALL | {"num_classes": 6})
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match=r"absent\.safetensors: weights file not found"):
        hub_load("glkanet", weights=str(tmp_path / "absent.safetensors"), **SMALL)


@pytest.mark.parametrize("preset, classes", [("hmdb51", 51), ("ucf101", 101), ("kinetics600", 600)])
def test_preset_entries_build_the_presets_architecture(preset, classes):
    m = load_config(preset).model
    model = hub_load(preset)
    assert model.num_classes == classes and model.streams == tuple(m.streams) == ("gp", "sa", "la")
    assert model._hub_mixin_config["backbone"] == m.backbone == "resnet34"
    assert model._hub_mixin_config["pretrained"] is None            # nothing downloaded
    assert model.backbone.out_channels == 512
    for head in model.temporal.values():
        assert head.fc.out_features == classes and head.fc.in_features == m.hidden_size == 1024
        assert len(head.rnn.layers) == m.num_layers == 3


def test_preset_entry_takes_weights_and_overrides(tmp_path):
    model = GLKANet(**SMALL | {"num_classes": 51})
    torch.save(model.state_dict(), tmp_path / "small.pt")
    loaded = hub_load("hmdb51", weights=str(tmp_path / "small.pt"), backbone="tiny", hidden_size=16, num_layers=1)
    assert torch.equal(logits(loaded), logits(model))


def test_hubconf_offers_four_documented_entries():
    """What torch.hub.list / help show of a GitHub copy: the public callables and their docstrings."""
    spec = importlib.util.spec_from_file_location("hubconf", ROOT / "hubconf.py")
    hubconf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hubconf)
    entries = sorted(name for name in dir(hubconf) if callable(getattr(hubconf, name)) and not name.startswith("_"))
    assert entries == ["glkanet", "hmdb51", "kinetics600", "ucf101"]
    assert "51 classes" in hubconf.hmdb51.__doc__ and "config.json" in hubconf.glkanet.__doc__
