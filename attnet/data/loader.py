"""The DataLoader factory shared by training, evaluation and the notebooks."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .transforms import collate


class _Uint8(Dataset):
    """A dataset's uint8 items (its `uint8_item`), left for `transforms.to_device` to finish."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset.uint8_item(index)


def build_loader(dataset: Dataset, batch_size: int, train: bool, workers: int = 0, distributed: bool = False,
                 seed: int = 0, drop_last: bool | None = None, pin_memory: bool | None = None,
                 persistent_workers: bool = True, collate_fn=None) -> DataLoader:
    """Shuffled (train) or ordered batches; a DistributedSampler when distributed (the caller
    sets its epoch). A dataset with `uint8_item` (ClipDataset) gives batches of uint8 `Clips`
    (`transforms.collate`): `transforms.to_device` turns them into the model's float input,
    [B, clips, T, 3, H, W] for multi-clip items.

    Workers draw their seeds from the loader's generator when they start; the trainer
    reseeds it every epoch and passes persistent_workers=False so that an epoch's random
    crops do not depend on the epochs before it (exact resume)."""
    sampler = DistributedSampler(dataset, shuffle=train, seed=seed, drop_last=False) if distributed else None
    generator = torch.Generator().manual_seed(seed)
    items = _Uint8(dataset) if hasattr(dataset, "uint8_item") else dataset
    return DataLoader(
        items, batch_size=batch_size, shuffle=train and sampler is None, sampler=sampler,
        num_workers=workers, pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        drop_last=train if drop_last is None else drop_last, persistent_workers=persistent_workers and workers > 0,
        generator=generator, collate_fn=collate_fn or collate,
    )
