"""Checkpoints with everything needed to resume bit-exactly on CPU, and transfer initialisation."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from torch import nn

from attnet.convert import convert_state_dict
from attnet.files import load_weights


def load(path: Path, fix: str = "use best.pt, or pass run.overwrite=true to start the run again") -> dict:
    """A checkpoint of a run (files.load_weights: weights only, one-line errors naming the file)."""
    return load_weights(path, fix)


def rng_state() -> dict:
    """Python, NumPy and torch RNG states in weights_only-loadable types."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and len(state["cuda"]) == torch.cuda.device_count():   # not on another GPU count
        torch.cuda.set_rng_state_all(state["cuda"])


def model_state(state: dict, source: str) -> dict:
    """The GLKANet state dict in a loaded file: one of our checkpoints (its "model"), the authors'
    (renamed by convert_state_dict) or a plain state dict."""
    if "model" in state:
        return state["model"]
    if any(k.startswith(("module.spatial.", "spatial.")) for k in state):
        return convert_state_dict(state, source)
    return state


def load_init_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Start from another run's or the authors' weights; heads whose class count differs are
    left freshly initialised (transfer). Returns the names of the parameters not loaded."""
    state = model_state(load(Path(path), fix="check model.init_checkpoint"), str(path))
    own = model.state_dict()
    kept = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    unknown = [k for k in state if k not in own]
    if unknown:
        raise ValueError(f"{path}: {len(unknown)} keys do not belong to this model (e.g. {unknown[0]!r}); "
                         "check model.backbone / streams / hidden_size against the checkpoint")
    model.load_state_dict(kept, strict=False)
    return sorted(set(own) - set(kept))
