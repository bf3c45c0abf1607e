"""The receptive-field control: a backbone whose map cells see disjoint patches.

Registered into attnet's BACKBONES from outside the package; a preset names this module in its
`imports` to use it (`imports: [studies.attention_causes.patch]`, `model.backbone: patch`).
"""
from __future__ import annotations

from torch import nn

from attnet.models import BACKBONES


@BACKBONES.register("patch")
def patch_backbone() -> nn.Sequential:
    """A stride-16 patchify conv, then 1x1 conv-BN-ReLU layers: 7x7 maps of 128 channels at 112 px
    in which each cell sees only its own 16x16 patch (no overlap), unlike the tiny backbone whose
    cells see most of the frame."""
    layers = [nn.Conv2d(3, 64, 16, 16, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)]
    for cin, cout in ((64, 128), (128, 128), (128, 128)):
        layers += [nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    net = nn.Sequential(*layers)
    net.out_channels = 128
    return net
