"""Loaders for the work after training (scoring, robustness, bench): a split (or a stressed copy
of validation) as batches of uint8 images, in file order. Training reads batches.py."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from pneumo_utils.data.dataset import XrayData, split_frame
from pneumo_utils.splits import VALIDATION_COPIES


class XrayDataset(Dataset):
    """Images (rows of `images`) as (uint8 tensor 1xSxS, label) pairs, each through
    `transform`."""

    def __init__(self, images: np.ndarray, rows: np.ndarray, labels: np.ndarray, transform=None):
        self.images, self.rows, self.labels, self.transform = images, rows, labels, transform

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        image = torch.from_numpy(np.array(self.images[self.rows[i]]))[None]
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[i])


def make_loader(data: XrayData, split: str, batch_size: int, *, transform=None) -> DataLoader:
    """A loader over one split (or a stressed copy of val) in file order, each image through
    `transform`."""
    frame = split_frame(data, split)
    if split in VALIDATION_COPIES:
        images, rows = getattr(data, split), np.arange(len(frame))
    else:
        images, rows = data.images, frame["cache_row"].to_numpy()
    dataset = XrayDataset(images, rows, frame["label"].to_numpy(), transform)
    return DataLoader(dataset, batch_size=batch_size)


def class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, scaled so that they average to 1 over the samples."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = len(labels) / (n_classes * counts)
    return torch.as_tensor(weights, dtype=torch.float32)
