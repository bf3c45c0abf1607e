"""Load the authors' released checkpoints (PyTorch 0.4, DataParallel) into GLKANet.

Their layout (the key list in tests/fixtures/authors_checkpoint_keys.txt; docs/METHOD.md) maps onto ours by name:

    module.spatial.net.<i>.*                      -> backbone.<i>.*
    module.temporal.attention_auto.conv.*         -> pool.sa.conv.*          (SA: alpha, beta)
    module.temporal.attention_learned.linear.*    -> pool.la.linear.*        (LA: W1, b1, w2, b2)
    module.temporal.attention_learned.conv.*      -> dropped (never used in their forward)
    module.temporal.reason_{average,auto,learned}.rnn.rnn_lst.<l>.*  -> temporal.{gp,sa,la}.rnn.layers.<l>.*
    module.temporal.reason_{average,auto,learned}.fc.*               -> temporal.{gp,sa,la}.fc.*
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import torch

from attnet.files import CheckpointError, load_weights
from attnet.models import GLKANet

_STREAM = {"average": "gp", "auto": "sa", "learned": "la"}
_RULES = [
    (re.compile(r"^spatial\.net\.(.*)$"), r"backbone.\1"),
    (re.compile(r"^temporal\.attention_auto\.(conv\..*)$"), r"pool.sa.\1"),
    (re.compile(r"^temporal\.attention_learned\.(linear\..*)$"), r"pool.la.\1"),
    (re.compile(r"^temporal\.attention_learned\.conv\..*$"), None),
    (re.compile(r"^temporal\.reason_(average|auto|learned)\.rnn\.rnn_lst\.(.*)$"),
     lambda m: f"temporal.{_STREAM[m[1]]}.rnn.layers.{m[2]}"),
    (re.compile(r"^temporal\.reason_(average|auto|learned)\.(fc\..*)$"),
     lambda m: f"temporal.{_STREAM[m[1]]}.{m[2]}"),
]
# torchvision ResNets by the number of blocks in layer3 (spatial.net.6) and block type
_RESNET_BY_DEPTH = {(2, False): "resnet18", (6, False): "resnet34", (6, True): "resnet50"}


def convert_state_dict(state: Mapping[str, torch.Tensor], source: str = "state dict") -> dict[str, torch.Tensor]:
    """Rename the authors' keys to GLKANet keys; unknown keys are an error naming them."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = key[len("module."):] if key.startswith("module.") else key
        for pattern, target in _RULES:
            match = pattern.match(name)
            if match:
                if target is not None:
                    out[match.expand(target) if isinstance(target, str) else target(match)] = value
                break
        else:
            raise CheckpointError(f"{source}: unexpected key {key!r}; is this a checkpoint of the authors' "
                                  "attention-network release (Spatial_TemporalNet)?")
    return out


def _architecture(state: Mapping[str, torch.Tensor], source: str) -> dict:
    """Backbone, hidden size, depth and class count read off the tensors' shapes."""
    try:
        fc = state["temporal.gp.fc.weight"]
    except KeyError:
        raise CheckpointError(f"{source}: no GP head (reason_average.fc); only the authors' three-stream "
                              "'all' attention model is supported") from None
    blocks = {k.split(".")[2] for k in state if k.startswith("backbone.6.")}
    bottleneck = "backbone.4.0.conv3.weight" in state
    backbone = _RESNET_BY_DEPTH.get((len(blocks), bottleneck))
    if backbone is None:
        raise CheckpointError(f"{source}: backbone with {len(blocks)} blocks in layer3 is not resnet18/34/50")
    layers = {k.split(".")[4] for k in state if k.startswith("temporal.gp.rnn.layers.")}
    return dict(backbone=backbone, num_classes=fc.shape[0], hidden_size=fc.shape[1], num_layers=len(layers))


def load_authors_checkpoint(path_or_state_dict: str | Path | Mapping[str, torch.Tensor],
                            num_classes: int | None = None) -> GLKANet:
    """A GLKANet holding the weights of an authors' checkpoint (e.g. their Kinetics-600 model).

    With `num_classes` different from the checkpoint's, the three heads are replaced (fresh
    initialisation), as the authors do when fine-tuning on HMDB51 / UCF101.
    """
    if isinstance(path_or_state_dict, (str, Path)):
        source = str(path_or_state_dict)
        if not Path(source).is_file():
            raise FileNotFoundError(f"{source}: checkpoint not found")
        state = load_weights(Path(source), fix="download the authors' checkpoint again")
    else:
        source, state = "state dict", path_or_state_dict
    state = convert_state_dict(state, source)
    arch = _architecture(state, source)
    model = GLKANet(arch["num_classes"], backbone=arch["backbone"], hidden_size=arch["hidden_size"],
                    num_layers=arch["num_layers"], streams=("gp", "sa", "la"), fusion_layer=True, temporal="sru")
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise CheckpointError(f"{source}: does not match the authors' layout (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")
    if num_classes is not None and num_classes != arch["num_classes"]:
        model.replace_heads(num_classes)
    return model
