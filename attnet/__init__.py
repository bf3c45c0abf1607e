"""attnet: the Global and Local Knowledge-Aware Attention Network (Zheng et al., IEEE TNNLS 2021),
its training engine and the paper's experiments.

    from attnet import GLKANet, GLKALoss, load_config, build_dataset, fit, evaluate
"""
__version__ = "0.1.0"

from attnet.config import load_config
from attnet.data import build_dataset
from attnet.engine import evaluate, fit
from attnet.losses import GLKALoss
from attnet.models import GLKANet

__all__ = ["GLKALoss", "GLKANet", "__version__", "build_dataset", "evaluate", "fit", "load_config"]
