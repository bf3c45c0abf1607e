"""The network: backbones, the GP / SA / LA streams, temporal models and GLKANet."""
from .attention import GlobalPooling, LearnedAttention, StatisticAttention
from .backbones import BACKBONES, PretrainedWeightsError, build_backbone
from .glka import STREAMS, GLKANet, GLKAOutput
from .temporal import SRU, TEMPORAL_MODELS, SRULayer, TemporalHead

__all__ = ["BACKBONES", "STREAMS", "GLKANet", "GLKAOutput", "GlobalPooling", "LearnedAttention",
           "PretrainedWeightsError", "SRU", "SRULayer", "StatisticAttention", "TEMPORAL_MODELS", "TemporalHead",
           "build_backbone"]
