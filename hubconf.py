"""torch.hub entry points: GLKANet by its arguments, and the architectures of the paper's presets.

    model = torch.hub.load("<this repository>", "glkanet", num_classes=51, backbone="resnet34", weights=...)
    model = torch.hub.load("<this repository>", "hmdb51", weights="path/or/url")

`weights`: a state-dict .pt / .pth, a checkpoint of an attnet run, the authors' .pkl, a .safetensors
file, a save_pretrained folder (`attnet export`), or the URL of a file; read without unpickling code.
"""
dependencies = ["torch", "torchvision", "huggingface_hub", "safetensors"]

from pathlib import Path as _Path

from attnet import GLKANet as _GLKANet
from attnet import load_config as _load_config
from attnet.engine.build import model_args as _model_args
from attnet.hub import load_into as _load_into


def glkanet(weights=None, **kwargs):
    """GLKANet(**kwargs) (num_classes, backbone, pretrained, streams, temporal, hidden_size, ...),
    holding `weights` when given (then in eval mode). A save_pretrained folder's config.json supplies
    the arguments not given."""
    if weights is not None and _Path(weights).is_dir():
        return _GLKANet.from_pretrained(weights, strict=True, **kwargs)
    model = _GLKANet(**kwargs)
    return model if weights is None else _load_into(model, weights)


def _preset(name, num_classes, weights, pretrained, kwargs):
    """The preset's model settings and class count, `pretrained` instead of its ImageNet download."""
    model = _GLKANet(**{"num_classes": num_classes, **_model_args(_load_config(name)), "pretrained": pretrained,
                        **kwargs})
    return model if weights is None else _load_into(model, weights)


def hmdb51(weights=None, pretrained=None, **kwargs):
    """GLKANet as the hmdb51 preset builds it (attnet/presets/hmdb51.yaml), 51 classes; `weights` as for
    glkanet; pretrained="imagenet" for the ImageNet backbone; kwargs override the preset."""
    return _preset("hmdb51", 51, weights, pretrained, kwargs)


def ucf101(weights=None, pretrained=None, **kwargs):
    """GLKANet as the ucf101 preset builds it (attnet/presets/ucf101.yaml), 101 classes; `weights` as for
    glkanet; pretrained="imagenet" for the ImageNet backbone; kwargs override the preset."""
    return _preset("ucf101", 101, weights, pretrained, kwargs)


def kinetics600(weights=None, pretrained=None, **kwargs):
    """GLKANet as the kinetics600 preset builds it (attnet/presets/kinetics600.yaml), 600 classes;
    `weights` as for glkanet; pretrained="imagenet" for the ImageNet backbone; kwargs override the preset."""
    return _preset("kinetics600", 600, weights, pretrained, kwargs)
