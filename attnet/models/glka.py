"""GLKANet: the Global and Local Knowledge-Aware Attention Network.

Data flows one way:

    video [B, T, 3, H, W] -> backbone (once per frame) -> F [B*T, C, h, w]
      GP: g = mean_i f_i                                   -> TemporalHead_gp([g])        -> z_gp
      SA: v_sa = sum_i softmax(alpha*s_i + beta) f_i        -> TemporalHead_sa([g ; v_sa]) -> z_sa
      LA: v_la = sum_i softmax(e_i) f_i                     -> TemporalHead_la([g ; v_la]) -> z_la
      oracle: v = sum_i coverage_i(actor box) f_i           -> TemporalHead_oracle([g ; v]) -> z_oracle
    fused z = mean_S z_S   (or log mean_S softmax(z_S) with score_fusion="probs")

[g ; v] is the fusion layer (global + local knowledge); without it an attention stream
feeds v alone. Each stream has its own temporal model and classifier.

Under autocast the backbone and the pooling run in the autocast dtype and the temporal
heads in float32, so the logits are float32.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import Tensor, nn

from .attention import STREAMS, build_attention
from .backbones import build_backbone
from .temporal import TemporalHead


@dataclass
class GLKAOutput:
    """Fused logits [B, K], each stream's logits, and the attention maps [B, T, h, w]."""

    logits: Tensor
    stream_logits: dict[str, Tensor] = field(default_factory=dict)
    attention: dict[str, Tensor] = field(default_factory=dict)


class GLKANet(nn.Module, PyTorchModelHubMixin, library_name="attnet", pipeline_tag="video-classification",
              tags=["video-classification", "action-recognition", "glka"],
              paper_url="https://doi.org/10.1109/TNNLS.2020.2978613"):
    """save_pretrained / from_pretrained / push_to_hub (huggingface_hub): model.safetensors, and the
    constructor's arguments in config.json."""

    def __init__(self, num_classes: int, backbone: str = "resnet34", pretrained: str | None = None,
                 streams: Sequence[str] = ("gp", "sa", "la"), fusion_layer: bool = True, temporal: str = "sru",
                 hidden_size: int = 1024, num_layers: int = 3, dropout: float = 0.5,
                 score_fusion: str = "logits") -> None:
        super().__init__()
        streams = tuple(streams)
        unknown = [s for s in streams if s not in STREAMS]
        if not streams or unknown or len(set(streams)) != len(streams):
            raise ValueError(f"streams must be a non-empty subset of ({', '.join(STREAMS)}) without repeats, "
                             f"got {streams}")
        if score_fusion not in ("logits", "probs"):
            raise ValueError(f"score_fusion must be 'logits' or 'probs', got {score_fusion!r}")
        self.streams = tuple(s for s in STREAMS if s in streams)   # canonical order
        self.fusion_layer = fusion_layer
        self.score_fusion = score_fusion
        self.num_classes = num_classes
        self.backbone = build_backbone(backbone, pretrained)
        channels = self.backbone.out_channels
        self.pool = nn.ModuleDict({s: build_attention(s, channels) for s in self.streams})
        self.temporal = nn.ModuleDict({
            s: TemporalHead(temporal, channels * (2 if s != "gp" and fusion_layer else 1), num_classes,
                            hidden_size, num_layers, dropout)
            for s in self.streams
        })

    def save_pretrained(self, save_directory, *, config: dict | None = None, **kwargs):
        """config.json says pretrained null, as the saved weights hold the backbone (loading downloads
        nothing), and the class count of the present heads (replace_heads); `config` adds keys."""
        config = {**self._hub_mixin_config, **(config or {}), "pretrained": None, "num_classes": self.num_classes}
        return super().save_pretrained(save_directory, config=config, **kwargs)

    def replace_heads(self, num_classes: int) -> None:
        """New classifiers for another class count (transfer), on the old heads' device and dtype."""
        for head in self.temporal.values():
            old = head.fc
            head.fc = nn.Linear(old.in_features, num_classes).to(old.weight.device, old.weight.dtype)
        self.num_classes = num_classes

    def forward(self, x: Tensor, boxes: Tensor | None = None) -> GLKAOutput:
        """x [B, T, 3, H, W]; boxes [B, T, 4] (x0, y0, x1, y1 in x's pixels), needed by the oracle only."""
        if x.dim() != 5 or x.shape[2] != 3:
            raise ValueError(f"expected a clip batch [B, T, 3, H, W], got shape {tuple(x.shape)}")
        batch, steps = x.shape[:2]
        if "oracle" in self.streams and (boxes is None or boxes.shape != (batch, steps, 4)):
            got = "none" if boxes is None else f"shape {tuple(boxes.shape)}"
            raise ValueError(f"the oracle stream needs the actor boxes [B, T, 4] = [{batch}, {steps}, 4], got {got}: "
                             "build the dataset with boxes=True (data with ground-truth boxes, e.g. synthetic)")
        feats = self.backbone(x.flatten(0, 1))

        needs_global = "gp" in self.streams or self.fusion_layer
        g = feats.mean(dim=(2, 3)) if needs_global else None
        out = GLKAOutput(logits=x.new_empty(0))
        for s in self.streams:
            if s == "gp":
                v = g
            else:
                pooled, weights = self.pool[s](feats, boxes.flatten(0, 1), x.shape[-2:]) if s == "oracle" \
                    else self.pool[s](feats)
                out.attention[s] = weights.view(batch, steps, *weights.shape[1:])
                v = torch.cat([g, pooled], dim=1) if self.fusion_layer else pooled
            out.stream_logits[s] = self.temporal[s](v.view(batch, steps, -1))

        scores = torch.stack(list(out.stream_logits.values()))
        if self.score_fusion == "logits":
            out.logits = scores.mean(dim=0)
        else:   # log of the mean softmax probability, so cross-entropy on it is the NLL of the average
            out.logits = torch.logsumexp(torch.log_softmax(scores, dim=-1), dim=0) - math.log(len(scores))
        return out
