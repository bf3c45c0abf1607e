"""Video-level metrics from per-video scores."""
from __future__ import annotations

import torch


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    k = min(k, scores.shape[1])
    hits = scores.topk(k, dim=1).indices.eq(labels[:, None]).any(dim=1)
    return 100.0 * hits.float().mean().item()


def confusion_matrix(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[true, predicted] counts."""
    return torch.bincount(labels * num_classes + pred, minlength=num_classes ** 2).view(num_classes, num_classes)


def summarize(scores: dict[str, torch.Tensor], labels: torch.Tensor, num_classes: int, skipped: int = 0) -> dict:
    """top1 / top5 / mean class accuracy / confusion of the fused scores, top1 / top5 per stream,
    over the videos read; `skipped` counts the unreadable ones left out (data.on_bad_video=skip)."""
    fused = scores["fused"]
    confusion = confusion_matrix(fused.argmax(1), labels, num_classes)
    per_class = confusion.diag().float() / confusion.sum(1).clamp(min=1).float()
    present = confusion.sum(1) > 0
    out = {"top1": topk_accuracy(fused, labels, 1), "top5": topk_accuracy(fused, labels, 5),
           "mean_class_acc": 100.0 * per_class[present].mean().item(), "num_videos": len(labels), "skipped_videos": skipped}
    for stream, s in scores.items():
        if stream != "fused":
            out[f"{stream}_top1"] = topk_accuracy(s, labels, 1)
            out[f"{stream}_top5"] = topk_accuracy(s, labels, 5)
    out["confusion"] = confusion.tolist()
    return out
