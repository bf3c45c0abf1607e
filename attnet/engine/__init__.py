"""Training and evaluation: fit(cfg) -> run directory, evaluate(cfg, checkpoint) -> metrics."""
from .evaluate import evaluate, predict
from .train import RunExists, TrainingDiverged, fit

__all__ = ["RunExists", "TrainingDiverged", "evaluate", "fit", "predict"]
