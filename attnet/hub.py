"""GLKANet weights in and out of the kit: any weights file, folder or URL into a model (the torch.hub
entry points of hubconf.py), and a finished run as a save_pretrained folder with its model card
(`attnet export`). Pushing a folder to the Hugging Face Hub is left to the user (model.push_to_hub)."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import torch
from huggingface_hub import ModelCardData, constants
from safetensors.torch import load_file

from attnet.config import Config
from attnet.engine import checkpoint
from attnet.engine.build import model_args
from attnet.files import CheckpointError, load_weights, write_text
from attnet.models import GLKANet
from attnet.results import run_config, run_final

WEIGHTS_FIX = "pass a state-dict .pt / .pth, a run checkpoint, a .safetensors file or a save_pretrained folder"
SCHEMES = ("http", "https", "file")


def is_url(source: str | Path) -> bool:
    return urlparse(str(source)).scheme in SCHEMES


def download(url: str) -> Path:
    """The URL's file in torch.hub's checkpoint cache (where load_state_dict_from_url keeps it),
    fetched on first use."""
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(cached))
    return cached


def read_state(source: str | Path) -> dict:
    """The GLKANet state dict in a file, a save_pretrained folder or at a URL; loaded without
    unpickling code (weights_only or safetensors)."""
    path = download(str(source)) if is_url(source) else Path(source)
    if path.is_dir():
        path = path / constants.SAFETENSORS_SINGLE_FILE
    if path.suffix != ".safetensors":
        return checkpoint.model_state(load_weights(path, WEIGHTS_FIX), str(path))
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found; {WEIGHTS_FIX}")
    try:
        return load_file(path)
    except Exception as err:   # safetensors' header errors, without the file name
        raise CheckpointError(f"{path}: unreadable safetensors file ({str(err).strip()[:120]}); {WEIGHTS_FIX}") \
            from None


def load_state(model: GLKANet, state: dict, source: str | Path) -> GLKANet:
    """`state` into `model`, every tensor and nothing else, in eval mode (as from_pretrained)."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    reshaped = [k for k in own if k in state and own[k].shape != state[k].shape]
    if missing or unexpected or reshaped:
        example = (missing or unexpected or reshaped)[0]
        raise CheckpointError(f"{source}: the weights do not fit this model ({len(missing)} missing, {len(unexpected)} "
                              f"unexpected, {len(reshaped)} of another shape, e.g. {example!r}); build it with the "
                              "settings they were trained with (num_classes, backbone, streams, hidden_size, ...)")
    model.load_state_dict(state)
    return model.eval()


def load_into(model: GLKANet, source: str | Path) -> GLKANet:
    return load_state(model, read_state(source), source)


def run_checkpoint(run: Path) -> Path:
    """best.pt, else last.pt, of a finished run; the one-line error says what is missing."""
    if not (run / "config.yaml").is_file():
        raise FileNotFoundError(f"{run}: not a run folder (no config.yaml); give the folder `attnet train` wrote, "
                                "results/runs/<name>")
    if not (run / "final.json").is_file():
        raise FileNotFoundError(f"{run / 'final.json'}: not found, the run did not finish; finish it with "
                                "`attnet train --resume` (its preset and overrides), then export")
    for name in ("best.pt", "last.pt"):
        if (run / "checkpoints" / name).is_file():
            return run / "checkpoints" / name
    raise FileNotFoundError(f"{run / 'checkpoints' / 'best.pt'}: not found (nor last.pt); train the run again "
                            "with run.overwrite=true")


def export(run: str | Path, to: str | Path) -> Path:
    """A finished run's tested weights as a save_pretrained folder (model.safetensors, config.json
    with the class names) and a README.md model card of its config and test metrics."""
    run, to = Path(run), Path(to)
    ckpt = run_checkpoint(run)
    cfg = run_config(run)
    final = run_final(run)
    state = checkpoint.load(ckpt, fix="train the run again with run.overwrite=true")
    model = GLKANet(len(state["classes"]), **model_args(cfg) | {"pretrained": None})
    load_state(model, state["model"], ckpt)
    model.save_pretrained(to, config={"classes": state["classes"]})
    write_text(to / "README.md", model_card(cfg, final, ckpt, state["epoch"] + 1, model))
    return to


def model_card(cfg: Config, final: dict, ckpt: Path, epoch: int, model: GLKANet) -> str:
    """README.md: what the model is, what its metrics measure, and where they come from."""
    m, d, test = cfg.model, cfg.data, final["test"]
    dataset = d.name + (f" split {d.split}" if d.name in ("ucf101", "hmdb51") else "")
    if m.init_checkpoint:
        init = f"{Path(m.init_checkpoint).name} (transfer)"
    else:
        init = {"imagenet": "ImageNet weights", None: "random weights"}.get(m.pretrained) or Path(m.pretrained).name
    selection = {"val": "the epoch of best top-1 on the validation set (not the test set)",
                 "test": "the epoch of best top-1 on this test set (the authors' protocol on UCF101 / HMDB51), "
                         "so the numbers are optimistic",
                 "last epoch": "the last epoch (no validation set)"}.get(final["config"].get("selection"),
                                                                        "not recorded by this run")
    if ckpt.name == "best.pt":
        weights = f"checkpoints/best.pt, epoch {epoch} of {final['epochs']}: the weights the test metrics measure"
    else:
        weights = (f"checkpoints/last.pt, epoch {epoch} of {final['epochs']}: best.pt is absent, so these may not be "
                   "the weights the test metrics measure")
    skipped = f", {test['skipped_videos']} unreadable ones left out" if test["skipped_videos"] else ""
    crops = ", three crops" if d.three_crop else ""
    resize = d.resize or round(d.size * 256 / 224)      # the datasets' default
    rows = [("fused", test["top1"], test["top5"])] + [(s, test[f"{s}_top1"], test[f"{s}_top5"]) for s in model.streams]
    header = ModelCardData(**GLKANet._hub_mixin_info.model_card_data.to_dict()).to_yaml()
    return f"""---
{header}
---

# GLKANet: {final['run']}

GLKANet, the Global and Local Knowledge-Aware Attention Network (Zheng et al., IEEE TNNLS 2021,
[doi:10.1109/TNNLS.2020.2978613](https://doi.org/10.1109/TNNLS.2020.2978613)), trained with attnet
(preset `{final['preset']}`) on {dataset}.

## Test metrics

Video-level accuracy (%) on the **test set of {dataset}**: {test['num_videos']} videos{skipped};
{d.num_clips} clip(s) of {d.segments} frames per video{crops}, scores averaged. From the run's final.json.

| scores | top-1 | top-5 |
|---|---|---|
""" + "".join(f"| {name} | {top1:.2f} | {top5:.2f} |\n" for name, top1, top5 in rows) + f"""
Mean class accuracy (fused): {test['mean_class_acc']:.2f}. Checkpoint selection: {selection}.

## Model

| | |
|---|---|
| backbone | {m.backbone}, initialised from {init} |
| streams | {'+'.join(model.streams)}; fusion layer {'on' if m.fusion_layer else 'off'}; score fusion on {m.score_fusion} |
| temporal model | {m.temporal}; hidden size {m.hidden_size}; layers {m.num_layers} |
| input | {d.segments} segments; {d.size} px crops of frames resized to {resize} px (shorter side); ImageNet mean / std |
| classes | {model.num_classes}, named in config.json "classes" |
| parameters | {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M |
| weights | {weights} |

## Training

| | |
|---|---|
| commit | {final['git_commit'] or 'not recorded'} |
| precision | {final['precision']} |
| device | {final['device']} |
| epochs | {final['epochs']} |
| software | {', '.join(f"{k} {v}" for k, v in final['versions'].items())} |

## Use

```python
import torch
from attnet import GLKANet

model = GLKANet.from_pretrained("path/or/hub-id")                   # eval mode; downloads no backbone
out = model(torch.randn(1, {d.segments}, 3, {d.size}, {d.size}))   # [B, T, 3, H, W], normalised as above
out.logits, out.stream_logits, out.attention
```
"""
