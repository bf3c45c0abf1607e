"""The GLKA objective: cross-entropy on the fused scores plus GA regularization.

GA regularization asks each attention stream S to be more confident in the true class y
than the global-pooling stream, by a margin m (0.1 in the authors' release):

    L_GA(S) = mean_batch max(0, p_GP[y] - p_S[y] + m),   p = softmax(stream logits)

Gradients flow into both streams, as in the authors' code. With detach_gp=True p_GP is a fixed
reference (no gradient reaches the GP stream through the hinge), as the paper's words "with the
reference to the global information" suggest. Every attention stream (SA, LA, the oracle) gets
its own term. The loss is computed in float32 whatever dtype the logits come in (autocast).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .models.glka import GLKAOutput


def ga_regularization(gp_logits: Tensor, att_logits: Tensor, target: Tensor, margin: float = 0.1,
                      detach_gp: bool = False) -> Tensor:
    """Hinge on the true-class probabilities of the GP and an attention stream."""
    if detach_gp:
        gp_logits = gp_logits.detach()
    index = target.view(-1, 1)
    p_gp = torch.softmax(gp_logits, dim=1).gather(1, index).squeeze(1)
    p_att = torch.softmax(att_logits, dim=1).gather(1, index).squeeze(1)
    return torch.clamp(p_gp - p_att + margin, min=0).mean()


class GLKALoss(nn.Module):
    """Total = CE(fused, y) + sum over attention streams S of L_GA(S); terms drop when their
    streams are off. Logits are upcast to float32 here, so callers may pass autocast output."""

    def __init__(self, ga_reg: bool = True, margin: float = 0.1, detach_gp: bool = False) -> None:
        super().__init__()
        self.ga_reg = ga_reg
        self.margin = margin
        self.detach_gp = detach_gp

    def forward(self, out: GLKAOutput, target: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        with torch.autocast(target.device.type, enabled=False):
            parts = {"ce": F.cross_entropy(out.logits.float(), target)}
            gp = out.stream_logits.get("gp")
            if self.ga_reg and gp is not None:
                for s, logits in out.stream_logits.items():
                    if s != "gp":
                        parts[f"ga_{s}"] = ga_regularization(gp.float(), logits.float(), target, self.margin,
                                                             self.detach_gp)
            return sum(parts.values()), parts
