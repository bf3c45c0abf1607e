"""Registries: one list of names that the config, the CLI help and the builders all read."""
import pytest
import torch
from torch import nn

from attnet.config import describe, load_config
from attnet.data import DATASETS, build_dataset
from attnet.models import BACKBONES, GLKANet, build_backbone
from attnet.registry import Registry


def test_an_unknown_name_is_one_line_listing_the_registered_ones():
    registry = Registry("widget")
    registry.register("a", 1)
    registry.register("b")(2)
    assert registry.get("b") == 2 and registry.names() == ["a", "b"]
    with pytest.raises(ValueError, match=r"^unknown widget 'c': registered are a, b$"):
        registry.get("c")
    with pytest.raises(ValueError, match="widget 'a' is registered already"):
        registry.register("a", 3)


@pytest.fixture
def outside_backbone():
    """A backbone registered from outside the package, as a study does; removed afterwards."""
    @BACKBONES.register("outside")
    def outside() -> nn.Sequential:
        net = nn.Sequential(nn.Conv2d(3, 8, 16, 16))
        net.out_channels = 8
        return net
    yield "outside"
    del BACKBONES["outside"]


def test_a_backbone_registered_outside_is_accepted_by_config_builder_and_help(outside_backbone):
    assert load_config("synthetic-smoke", ["model.backbone=outside"]).model.backbone == "outside"
    assert "outside" in describe().split("model.backbone=")[1].splitlines()[0]
    model = GLKANet(3, backbone="outside", hidden_size=8, num_layers=1)
    assert model(torch.rand(2, 2, 3, 32, 32)).logits.shape == (2, 3)
    assert build_backbone("outside")[0].kernel_size == (16, 16)


def test_a_dataset_registered_outside_is_read_by_build_dataset(tmp_path):
    from attnet.data.lists import VideoRecord
    (tmp_path / "clip").mkdir()

    def reader(root, subset, **_):
        return [VideoRecord(root / "clip", 1, 8)], ["x", "y"], []
    DATASETS.register("outside", reader)
    try:
        assert load_config("synthetic-smoke", ["data.name=outside"]).data.name == "outside"
        dataset = build_dataset("outside", tmp_path, subset="test", segments=2)
        assert dataset.classes == ["x", "y"] and dataset.records[0].label == 1
    finally:
        del DATASETS["outside"]
    with pytest.raises(ValueError, match="unknown dataset 'outside': registered are ucf101, hmdb51"):
        build_dataset("outside", tmp_path)
