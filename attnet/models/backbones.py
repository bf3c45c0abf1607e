"""Frame encoders: torchvision ResNets cut before the average pool, a tiny CPU net and its
patchwise (no-overlap) control.

Every backbone is an nn.Sequential with an `out_channels` attribute. The ResNets keep
torchvision's child order (conv1, bn1, relu, maxpool, layer1..layer4) so that index i
of our Sequential is index i of the authors' `spatial.net`.
"""
from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

RESNETS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}
BACKBONES = (*RESNETS, "tiny", "patch")
RESNET_CHILDREN = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights are neither cached nor reachable."""


def _conv_bn(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def tiny_backbone() -> nn.Sequential:
    """Six conv-BN-ReLU layers, stride 16: 7x7 maps of 128 channels at 112 px.

    Sized for CPU: about 27 M multiply-adds per 112 px frame, ~0.2 M parameters.
    """
    layers = [*_conv_bn(3, 16, 2), *_conv_bn(16, 32, 2), *_conv_bn(32, 64, 2),
              *_conv_bn(64, 64, 1), *_conv_bn(64, 128, 2), *_conv_bn(128, 128, 1)]
    net = nn.Sequential(*layers)
    net.out_channels = 128
    return net


def patch_backbone() -> nn.Sequential:
    """A stride-16 patchify conv, then 1x1 conv-BN-ReLU layers: 7x7 maps of 128 channels at 112 px
    in which each cell sees only its own 16x16 patch (no overlap), unlike the tiny backbone whose
    cells see most of the frame. The receptive-field control of attnet.causes."""
    layers = [nn.Conv2d(3, 64, 16, 16, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True)]
    for cin, cout in ((64, 128), (128, 128), (128, 128)):
        layers += [nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
    net = nn.Sequential(*layers)
    net.out_channels = 128
    return net


def _imagenet_state_dict(name: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights from the hub cache, downloading only when reachable."""
    weights = torchvision.models.get_model_weights(name).IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
    if cached.is_file():
        from attnet.engine.checkpoint import load
        return load(cached, fix=f"delete it and download {weights.url} again")
    host = urlparse(weights.url).hostname
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError as err:
        raise PretrainedWeightsError(
            f"cannot fetch ImageNet weights for {name} ({err}): download {weights.url} "
            f"to {cached}, or pass pretrained='/path/to/{cached.name}'"
        ) from None
    return weights.get_state_dict(progress=True)


def build_backbone(name: str = "resnet34", pretrained: str | None = None) -> nn.Sequential:
    """A backbone by name; `pretrained` is None, "imagenet" or a local state-dict file."""
    if name in ("tiny", "patch"):
        net = tiny_backbone() if name == "tiny" else patch_backbone()
    elif name in RESNETS:
        resnet = getattr(torchvision.models, name)(weights=None)
        if pretrained == "imagenet":
            resnet.load_state_dict(_imagenet_state_dict(name))
        net = nn.Sequential(*list(resnet.children())[:-2])
        net.out_channels = RESNETS[name]
    else:
        raise ValueError(f"unknown backbone {name!r}: choose from {', '.join(BACKBONES)}")
    if pretrained not in (None, "imagenet"):
        _load_local(net, Path(pretrained), name)
    elif pretrained == "imagenet" and name not in RESNETS:
        raise ValueError(f"the {name!r} backbone has no ImageNet weights: use pretrained=None or a local file")
    return net


def _load_local(net: nn.Sequential, path: Path, name: str) -> None:
    """Load a torchvision-layout (conv1.weight, ...) or Sequential-layout (0.weight, ...) state dict."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pretrained weights file not found; pass pretrained=None, "
                                "'imagenet' or the path of a state-dict .pth file")
    from attnet.engine.checkpoint import load
    state = load(path, fix="pass pretrained=None, 'imagenet' or another state-dict .pth file")
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if name in RESNETS and any(k.startswith("conv1.") for k in state):
        index = {n: str(i) for i, n in enumerate(RESNET_CHILDREN)}
        state = {index[k.split(".", 1)[0]] + "." + k.split(".", 1)[1]: v
                 for k, v in state.items() if k.split(".", 1)[0] in index}
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing:
        raise ValueError(f"{path}: not a {name} state dict ({len(missing)} missing keys, "
                         f"e.g. {missing[0]!r}; unexpected: {unexpected[:3]})")
