"""The patch backbone, registered from outside attnet: what one map cell sees, against the tiny backbone."""
import pytest
import torch

from attnet.config import load_config
from attnet.models import build_backbone
from studies.attention_causes import patch  # noqa: F401  registers "patch"


def _cells_changed_by_one_patch(name: str) -> torch.Tensor:
    """[h, w] bool: which map cells change when only the pixels of 16x16 patch (row 2, col 3) change."""
    torch.manual_seed(0)
    net = build_backbone(name).eval()             # eval: BatchNorm uses its running statistics, no batch coupling
    image = torch.randn(1, 3, 112, 112)
    edited = image.clone()
    edited[..., 32:48, 48:64] = torch.randn(3, 16, 16)
    with torch.no_grad():
        before, after = net(image), net(edited)
    assert before.shape == (1, 128, 7, 7)
    return (before - after).abs().amax(dim=1)[0] > 1e-6


def test_a_patch_backbone_cell_sees_only_its_own_patch():
    changed = _cells_changed_by_one_patch("patch")
    expected = torch.zeros(7, 7, dtype=torch.bool)
    expected[2, 3] = True
    assert torch.equal(changed, expected)


def test_a_tiny_backbone_cell_sees_its_neighbours_patches():
    """The control the patch backbone exists for: the tiny net's cells overlap."""
    changed = _cells_changed_by_one_patch("tiny")
    assert changed[2, 3] and changed.sum() > 1


def test_the_patch_backbone_is_a_config_choice_without_imagenet_weights():
    assert load_config("synthetic-smoke", ["model.backbone=patch"]).model.backbone == "patch"
    with pytest.raises(ValueError, match="'patch' backbone has no ImageNet weights"):
        build_backbone("patch", "imagenet")


def test_the_patch_backbone_loads_its_own_state_dict_from_a_file(tmp_path):
    source = build_backbone("patch")
    torch.nn.init.normal_(source[0].weight)
    torch.save(source.state_dict(), tmp_path / "patch.pth")
    loaded = build_backbone("patch", str(tmp_path / "patch.pth"))
    assert torch.equal(loaded[0].weight, source[0].weight)
