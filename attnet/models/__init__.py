"""The network: backbones, the pooling streams, temporal models and GLKANet.

The three registries (BACKBONES, STREAMS, TEMPORAL_MODELS) iterate over the valid names.
"""
from .attention import STREAMS, GlobalPooling, LearnedAttention, OracleAttention, StatisticAttention
from .backbones import BACKBONES, PretrainedWeightsError, build_backbone
from .glka import GLKANet, GLKAOutput
from .temporal import SRU, TEMPORAL_MODELS, SRULayer, TemporalHead

__all__ = ["BACKBONES", "STREAMS", "TEMPORAL_MODELS", "GLKANet", "GLKAOutput", "GlobalPooling",
           "LearnedAttention", "OracleAttention", "PretrainedWeightsError", "SRU", "SRULayer",
           "StatisticAttention", "TemporalHead", "build_backbone"]
