"""Frame encoders: torchvision ResNets cut before the average pool and a tiny CPU net,
registered in BACKBONES (name -> builder() -> nn.Sequential).

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

from attnet.files import load_weights
from attnet.registry import Registry

RESNETS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048}
BACKBONES = Registry("backbone")
RESNET_CHILDREN = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights are neither cached nor reachable."""


def _conv_bn(cin: int, cout: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


@BACKBONES.register("tiny")
def tiny_backbone() -> nn.Sequential:
    """Six conv-BN-ReLU layers, stride 16: 7x7 maps of 128 channels at 112 px.

    Sized for CPU: about 27 M multiply-adds per 112 px frame, ~0.2 M parameters.
    """
    layers = [*_conv_bn(3, 16, 2), *_conv_bn(16, 32, 2), *_conv_bn(32, 64, 2),
              *_conv_bn(64, 64, 1), *_conv_bn(64, 128, 2), *_conv_bn(128, 128, 1)]
    net = nn.Sequential(*layers)
    net.out_channels = 128
    return net


def _imagenet_state_dict(name: str) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet weights from the hub cache, downloading only when reachable."""
    weights = torchvision.models.get_model_weights(name).IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name
    if cached.is_file():
        return load_weights(cached, fix=f"delete it and download {weights.url} again")
    host = urlparse(weights.url).hostname
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError as err:
        raise PretrainedWeightsError(
            f"cannot fetch ImageNet weights for {name} ({err}): download {weights.url} "
            f"to {cached}, or pass pretrained='/path/to/{cached.name}'"
        ) from None
    return weights.get_state_dict(progress=True)


def _resnet(name: str):
    """torchvision's `name` without its pooling and classifier (child i = the authors' spatial.net.i)."""
    def build() -> nn.Sequential:
        net = nn.Sequential(*list(getattr(torchvision.models, name)(weights=None).children())[:-2])
        net.out_channels = RESNETS[name]
        return net
    return build


for _name in RESNETS:
    BACKBONES.register(_name, _resnet(_name))


def build_backbone(name: str = "resnet34", pretrained: str | None = None) -> nn.Sequential:
    """A backbone by name (BACKBONES); `pretrained` is None, "imagenet" (the ResNets) or a local state-dict file."""
    net = BACKBONES.get(name)()
    if pretrained == "imagenet":
        if name not in RESNETS:
            raise ValueError(f"the {name!r} backbone has no ImageNet weights: use pretrained=None or a local file")
        net.load_state_dict(_sequential_keys(_imagenet_state_dict(name)))
    elif pretrained is not None:
        _load_local(net, Path(pretrained), name)
    return net


def _sequential_keys(state: dict) -> dict:
    """A torchvision ResNet's keys (conv1.weight, layer1.0...) as the cut Sequential's (0.weight, 4.0...)."""
    index = {n: str(i) for i, n in enumerate(RESNET_CHILDREN)}
    return {index[k.split(".", 1)[0]] + "." + k.split(".", 1)[1]: v
            for k, v in state.items() if k.split(".", 1)[0] in index}


def _load_local(net: nn.Sequential, path: Path, name: str) -> None:
    """Load a torchvision-layout (conv1.weight, ...) or Sequential-layout (0.weight, ...) state dict."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: pretrained weights file not found; pass pretrained=None, "
                                "'imagenet' or the path of a state-dict .pth file")
    state = load_weights(path, fix="pass pretrained=None, 'imagenet' or another state-dict .pth file")
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if name in RESNETS and any(k.startswith("conv1.") for k in state):
        state = _sequential_keys(state)
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing:
        raise ValueError(f"{path}: not a {name} state dict ({len(missing)} missing keys, "
                         f"e.g. {missing[0]!r}; unexpected: {unexpected[:3]})")
