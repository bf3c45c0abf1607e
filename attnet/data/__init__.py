"""Video data: official dataset layouts, TSN sampling, decoding, transforms, synthetic data."""
from .datasets import DATASETS, ClipDataset, build_dataset
from .lists import DataError, VideoRecord
from .loader import build_loader

__all__ = ["DATASETS", "ClipDataset", "DataError", "VideoRecord", "build_dataset", "build_loader"]
