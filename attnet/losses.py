"""The GLKA objective: cross-entropy on the fused scores plus GA regularization.

GA regularization asks each attention stream S to be more confident in the true class y
than the global-pooling stream, by a margin m (0.1 in the authors' release):

    L_GA(S) = mean_batch max(0, p_GP[y] - p_S[y] + m),   p = softmax(stream logits)

Gradients flow into both streams, as in the authors' code.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .models.glka import GLKAOutput


def ga_regularization(gp_logits: Tensor, att_logits: Tensor, target: Tensor, margin: float = 0.1) -> Tensor:
    """Hinge on the true-class probabilities of the GP and an attention stream."""
    index = target.view(-1, 1)
    p_gp = torch.softmax(gp_logits, dim=1).gather(1, index).squeeze(1)
    p_att = torch.softmax(att_logits, dim=1).gather(1, index).squeeze(1)
    return torch.clamp(p_gp - p_att + margin, min=0).mean()


class GLKALoss(nn.Module):
    """Total = CE(fused, y) + L_GA(SA) + L_GA(LA); terms drop when their streams are off."""

    def __init__(self, ga_reg: bool = True, margin: float = 0.1) -> None:
        super().__init__()
        self.ga_reg = ga_reg
        self.margin = margin

    def forward(self, out: GLKAOutput, target: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        parts = {"ce": F.cross_entropy(out.logits, target)}
        gp = out.stream_logits.get("gp")
        if self.ga_reg and gp is not None:
            for s in ("sa", "la"):
                if s in out.stream_logits:
                    parts[f"ga_{s}"] = ga_regularization(gp, out.stream_logits[s], target, self.margin)
        return sum(parts.values()), parts
