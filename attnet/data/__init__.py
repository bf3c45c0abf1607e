"""Video data: official dataset layouts, TSN sampling, decoding, transforms, synthetic data."""
from .datasets import DATASETS, ClipDataset, build_dataset
from .lists import DataError, VideoRecord
from .loader import build_loader
from .transforms import Clips, to_device

__all__ = ["DATASETS", "ClipDataset", "Clips", "DataError", "VideoRecord", "build_dataset", "build_loader", "to_device"]
