"""Figures: attention maps drawn as in the paper, learning curves, stream and ablation charts.

Every function returns its matplotlib Figure and, given `path`, saves it as PNG. Figures are
made without pyplot: nothing stays open behind the caller's back (no figure manager, nothing
to close), and a notebook shows a figure where it asks: as the cell's last expression, or
with display(fig).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torchvision.transforms.functional import gaussian_blur

from attnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD

STREAM_NAMES = {"la": "Learning-based Attention", "sa": "Statistic-based Attention", "gp": "Global Pooling",
                "gradcam": "Grad-CAM"}
MAP_ROWS = ("la", "sa", "gradcam")      # the paper's order (LA first), then the saliency baseline
STREAM_COLOURS = {"fused": "#444444", "gp": "#8c8c8c", "sa": "#1f77b4", "la": "#d62728"}


def save_figure(fig, path) -> Figure:
    """Write `fig` to `path` (when given) and return it, for display in a notebook."""
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110, bbox_inches="tight")
    return fig


def to_images(clip: torch.Tensor, normalized: bool = True) -> np.ndarray:
    """[T, 3, H, W] model input -> uint8 [T, H, W, 3] for display."""
    x = clip.detach().float().cpu()
    if normalized:
        x = x * torch.tensor(IMAGENET_STD).view(3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def smooth_maps(maps: torch.Tensor, size: tuple[int, int], sigma: float = 0.0, blur: bool = True) -> np.ndarray:
    """[T, h, w] attention -> [T, H, W] in [0, 1]: bilinear upsampling, Gaussian smoothing
    (sigma in pixels, default an eighth of the image side), each frame scaled to its max.
    blur=False skips the smoothing, whose cost grows with the image side to the fourth power
    (seconds a frame at 224 px): TensorBoard draws the maps every epoch."""
    up = F.interpolate(maps.detach().float().cpu()[:, None], size=size, mode="bilinear", align_corners=False)
    if blur:
        sigma = sigma or max(size) / 8
        up = gaussian_blur(up, kernel_size=2 * int(3 * sigma) + 1, sigma=sigma)
    up = up[:, 0]
    up = up - up.amin(dim=(1, 2), keepdim=True)
    return (up / up.amax(dim=(1, 2), keepdim=True).clamp(min=1e-12)).numpy()


def darken(images: np.ndarray, weights: np.ndarray, floor: float = 0.15) -> np.ndarray:
    """The paper's rendering: bright where attention is high, dark where it is low."""
    return (images * (floor + (1 - floor) * weights[..., None])).astype(np.uint8)


def attention_figure(images: np.ndarray, maps: dict[str, torch.Tensor], title: str | None = None,
                     boxes: np.ndarray | None = None, path=None) -> Figure:
    """A row of sampled frames, then one row per map of MAP_ROWS in `maps`."""
    order = [s for s in MAP_ROWS if s in maps]
    t, h, w = images.shape[:3]
    fig = Figure(figsize=(1.3 * t, 1.45 * (1 + len(order))))
    axes = fig.subplots(1 + len(order), t, squeeze=False)
    rows = [("Frames", images)] + [(STREAM_NAMES[s], darken(images, smooth_maps(maps[s], (h, w)))) for s in order]
    for r, (name, row) in enumerate(rows):
        for c in range(t):
            ax = axes[r, c]
            ax.imshow(row[c])
            ax.set_xticks([])
            ax.set_yticks([])
            if boxes is not None and r == 0:
                x0, y0, x1, y1 = boxes[c]
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="yellow", lw=1))
        axes[r, 0].set_ylabel(name, fontsize=7, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(wspace=0.03, hspace=0.05)
    return save_figure(fig, path)


def attention_gif(images: np.ndarray, maps: dict[str, torch.Tensor], path, scale: int = 2, ms: int = 250) -> Path:
    """An animated GIF: the frame beside its renderings of MAP_ROWS in `maps`."""
    from PIL import Image
    t, h, w = images.shape[:3]
    panels = [images] + [darken(images, smooth_maps(maps[s], (h, w))) for s in MAP_ROWS if s in maps]
    frames = [Image.fromarray(np.concatenate([p[i] for p in panels], axis=1)).resize(
        (w * len(panels) * scale, h * scale), Image.NEAREST) for i in range(t)]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=ms, loop=0)
    return path


def learning_curves(metrics: pd.DataFrame, title: str = "", path=None) -> Figure:
    """Loss parts and train / validation accuracy per stream over epochs."""
    fig = Figure(figsize=(9, 3.2))
    left, right = fig.subplots(1, 2)
    for col in [c for c in metrics.columns if c.startswith("loss")]:
        left.plot(metrics["epoch"], metrics[col], marker="o", ms=3, label=col.replace("loss_", ""))
    left.set(xlabel="epoch", ylabel="loss", title="training loss")
    left.legend(fontsize=7)
    for stream, colour in STREAM_COLOURS.items():
        key = "" if stream == "fused" else f"_{stream}"
        if f"val{key}_top1" in metrics:
            right.plot(metrics["epoch"], metrics[f"val{key}_top1"], color=colour, marker="o", ms=3, label=f"{stream} val")
        if f"train{key}_top1" in metrics:
            right.plot(metrics["epoch"], metrics[f"train{key}_top1"], color=colour, ls=":", label=f"{stream} train")
    right.set(xlabel="epoch", ylabel="top-1 (%)", title="accuracy", ylim=(0, 100))
    right.legend(fontsize=6, ncol=2)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def stream_accuracy(test: dict, title: str = "", path=None) -> Figure:
    """Test top-1 of the fused scores and of each stream."""
    names = ["fused"] + [s for s in ("gp", "sa", "la") if f"{s}_top1" in test]
    values = [test["top1"]] + [test[f"{s}_top1"] for s in names[1:]]
    fig = Figure(figsize=(4, 3))
    ax = fig.subplots()
    ax.bar(names, values, color=[STREAM_COLOURS[n] for n in names])
    for i, v in enumerate(values):
        ax.text(i, v + 1, f"{v:.1f}", ha="center", fontsize=8)
    ax.set(ylabel="test top-1 (%)", ylim=(0, 105), title=title)
    fig.tight_layout()
    return save_figure(fig, path)


def transfer_curves(curves: dict[str, pd.DataFrame], title: str = "", path=None) -> Figure:
    """Training loss and validation top-1 per epoch of each start (fine-tuned, from scratch) on
    one pair of axes: how many epochs the pre-trained start saves, not only where each ends."""
    fig = Figure(figsize=(8, 3))
    left, right = fig.subplots(1, 2)
    for label, metrics in curves.items():
        left.plot(metrics["epoch"], metrics["loss"], marker="o", ms=3, label=label)
        if "val_top1" in metrics:
            right.plot(metrics["epoch"], metrics["val_top1"], marker="o", ms=3, label=label)
    left.set(xlabel="epoch", ylabel="loss", title="training loss")
    right.set(xlabel="epoch", ylabel="top-1 (%)", title="validation top-1", ylim=(0, 100))
    for ax in (left, right):
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def paper_vs_reproduced_chart(comparison: pd.DataFrame, path=None) -> Figure:
    """05's table as points: each quoted or reproduced top-1 (with its interval, "m [low, high]")
    on one axis, rows grouped by dataset, since numbers compare only within one; rows without a
    number yet (the paper's own, to fill in) are counted in the title."""
    parts = comparison["top-1"].astype(str).str.extract(r"^\s*([-\d.]+)(?: \[([-\d.]+), ([-\d.]+)\])?")
    rows = comparison.assign(top1=pd.to_numeric(parts[0]), low=pd.to_numeric(parts[1]), high=pd.to_numeric(parts[2]))
    shown = rows.dropna(subset=["top1"])
    shown = shown.iloc[np.argsort(pd.Categorical(shown["dataset"], list(dict.fromkeys(shown["dataset"]))).codes,
                                  kind="stable")]
    fig = Figure(figsize=(7, 0.3 * len(shown) + 1.3))
    ax = fig.subplots()
    y = np.arange(len(shown))[::-1]
    for status, colour in (("quoted", "#8c8c8c"), ("reproduced here", "#1f77b4")):
        mine = (shown["status"] == status).to_numpy()
        spread = np.nan_to_num([shown["top1"] - shown["low"], shown["high"] - shown["top1"]])[:, mine]
        ax.errorbar(shown["top1"][mine], y[mine], xerr=spread, fmt="o", color=colour, ms=4, capsize=2, label=status)
    ax.set_yticks(y, [" · ".join(filter(None, [m, d, p and f"pre-trained on {p}"]))
                      for m, d, p in zip(shown["method"], shown["dataset"], shown["pretraining"])], fontsize=7)
    to_fill = len(rows) - len(shown)
    ax.set(xlabel="top-1 (%); compare within a dataset only", xlim=(0, 100),
           title=f"quoted and reproduced top-1{f' (rows still to fill from the paper: {to_fill})' if to_fill else ''}")
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return save_figure(fig, path)


def ablation_chart(runs: pd.DataFrame, value: str = "test.top1", path=None) -> Figure:
    """Mean and 95 % t-interval over seeds of each configuration, as the ablation table (rows: one run each)."""
    from attnet.stats import t_interval
    done = runs[runs["status"] == "done"]
    fig = Figure(figsize=(7, 0.45 * done["config"].nunique() + 1.2))
    ax = fig.subplots()
    sns.barplot(data=done, y="config", x=value, errorbar=lambda v: (t_interval(v).low, t_interval(v).high),
                color="#1f77b4", ax=ax, order=list(dict.fromkeys(done["config"])))
    sns.stripplot(data=done, y="config", x=value, color="black", size=3, ax=ax, jitter=False,   # the same PNG each run
                  order=list(dict.fromkeys(done["config"])))
    ax.set(xlabel="test top-1 (%), mean and 95 % t-interval over seeds", ylabel="", xlim=(0, 100))
    fig.tight_layout()
    return save_figure(fig, path)


def tsn_timeline(num_frames: int, segments: int, train_draws: list[list[int]], test_clips: list[list[int]],
                 path=None) -> Figure:
    """The T equal segments of a video, random training draws and the fixed test offsets."""
    fig = Figure(figsize=(8, 1.2 + 0.25 * (len(train_draws) + len(test_clips))))
    ax = fig.subplots()
    for i in range(segments + 1):
        ax.axvline(i * num_frames / segments, color="#bbbbbb", lw=0.8)
    for row, draw in enumerate(train_draws):
        ax.scatter(draw, [row] * len(draw), color="#d62728", s=14, label="train draws" if row == 0 else None)
    base = len(train_draws)
    for j, clip in enumerate(test_clips):
        ax.scatter(clip, [base + j] * len(clip), color="#1f77b4", marker="s", s=14,
                   label="test clips" if j == 0 else None)
    ax.set(xlim=(-0.5, num_frames - 0.5), xlabel="frame index", yticks=[],
           title=f"TSN sampling: {num_frames} frames, {segments} segments")
    ax.legend(fontsize=7, loc="upper right", bbox_to_anchor=(1, 1.35), ncol=2)
    fig.tight_layout()
    return save_figure(fig, path)


def class_samples(dataset, boxes_of=None, frames: int = 4, title: str = "", path=None) -> Figure:
    """The first video of each class, `frames` of its sampled frames evenly spread, the actor
    box drawn where `boxes_of(record) -> [F, 4]` gives one. The dataset must not normalize."""
    first = {}
    for i, record in enumerate(dataset.records):
        first.setdefault(record.label, i)
    fig = Figure(figsize=(1.5 * frames, 1.6 * len(first)))
    axes = fig.subplots(len(first), frames, squeeze=False)
    for row, (label, i) in enumerate(sorted(first.items())):
        clip, _ = dataset[i]
        clip = clip if clip.dim() == 4 else clip[0]
        indices = dataset.frame_indices(i)[0]
        boxes = boxes_of(dataset.records[i]) if boxes_of else None
        for col, t in enumerate(np.linspace(0, len(indices) - 1, frames).round().astype(int)):
            ax = axes[row, col]
            ax.imshow(clip[t].permute(1, 2, 0).clamp(0, 1).numpy())
            if boxes is not None:
                x0, y0, x1, y1 = boxes[indices[t]]
                ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec="yellow", lw=1))
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 0].set_ylabel(dataset.classes[label], rotation=0, ha="right", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)
