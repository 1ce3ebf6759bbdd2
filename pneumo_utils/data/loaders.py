"""Loaders: a split (or a stressed copy of validation) as batches of uint8 images, and the
batch as the normalised 3-channel float tensor both models expect, on the training device."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, WeightedRandomSampler
from torchvision.transforms import v2

from pneumo_utils.config import TrainConfig
from pneumo_utils.data.dataset import XrayData, split_frame
from pneumo_utils.data.transforms import evaluation_transform, training_transform
from pneumo_utils.resnet import IMAGENET_MEAN, IMAGENET_STD
from pneumo_utils.runtime.device import default_workers
from pneumo_utils.runtime.distributed import SINGLE, World
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.splits import EVALUATED_SPLITS, VALIDATION_COPIES


class XrayDataset(Dataset):
    """Images (rows of `images`) as (uint8 tensor 1xSxS, label) pairs. A transform that
    counter-frames reads `folder_labels` (NORMAL 0 / PNEUMONIA 1, the folder the framing cue
    follows), which is `labels` for the pneumonia task."""

    def __init__(
        self,
        images: np.ndarray,
        rows: np.ndarray,
        labels: np.ndarray,
        transform=None,
        folder_labels: np.ndarray | None = None,
    ):
        self.images = images
        self.rows = rows
        self.labels = labels
        self.folder_labels = labels if folder_labels is None else folder_labels
        self.transform = transform

    def __getstate__(self) -> dict:
        # A loader worker started by "spawn" (macOS, Windows) gets a pickled dataset: send the
        # cache file's name, not a copy of the whole cache.
        state = dict(self.__dict__)
        if isinstance(self.images, np.memmap):
            state["images"] = Path(self.images.filename)
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["images"], Path):
            state["images"] = np.load(state["images"], mmap_mode="r")
        self.__dict__.update(state)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        image = torch.from_numpy(np.array(self.images[self.rows[i]]))[None]
        label = int(self.labels[i])
        if getattr(self.transform, "takes_label", False):  # counter-framing reads the folder
            image = self.transform(image, int(self.folder_labels[i]))
        elif self.transform is not None:
            image = self.transform(image)
        return image, label


def make_loader(
    data: XrayData,
    split: str,
    batch_size: int,
    *,
    transform=None,
    shuffle: bool = False,
    weighted_sampling: bool = False,
    workers: int = 0,
    generator: torch.Generator | None = None,
    pin_memory: bool = False,
    world: World = SINGLE,
    seed: int = 0,
) -> DataLoader:
    """A loader over one split (or a stressed copy of val), each image through `transform`:
    shuffled (or class-balanced with `weighted_sampling`) for training, in file order otherwise.

    Shuffling, sampling and worker seeds all come from `generator`, so reseeding it at the
    start of an epoch makes that epoch reproducible. Under torchrun (`world`), a shuffled
    loader is this rank's DistributedSampler shard (its order from `seed` and set_epoch), and
    an ordered one this rank's unpadded share (images rank, rank + size, ...): every image is
    scored once over the ranks.
    """
    frame = split_frame(data, split)
    if split in VALIDATION_COPIES:
        images, rows = getattr(data, split), np.arange(len(frame))
    else:
        images, rows = data.images, frame["cache_row"].to_numpy()
    dataset = XrayDataset(
        images, rows, frame["label"].to_numpy(), transform, frame["folder_label"].to_numpy()
    )
    sampler = None
    if world.distributed and weighted_sampling:
        raise UserError(
            "--weighted-sampling is not available under torchrun: use --class-weighting, "
            "or train in one process"
        )
    if world.distributed and shuffle:
        sampler = DistributedSampler(dataset, world.size, world.rank, shuffle=True, seed=seed)
    elif world.distributed:
        dataset = Subset(dataset, range(world.rank, len(dataset), world.size))
    if weighted_sampling:
        class_counts = np.bincount(dataset.labels, minlength=len(data.class_names))
        weights = torch.as_tensor(1.0 / class_counts[dataset.labels], dtype=torch.double)
        sampler = WeightedRandomSampler(weights, len(dataset), generator=generator)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        generator=generator,
        pin_memory=pin_memory,
        drop_last=False,
    )


def to_model_input(
    batch: torch.Tensor, device: torch.device, channels_last: bool = True
) -> torch.Tensor:
    """uint8 (B,1,S,S) -> normalized float (B,3,S,S) on `device`, ImageNet statistics."""
    batch = batch.to(device, non_blocking=True).float().div_(255)
    batch = v2.functional.normalize(batch.expand(-1, 3, -1, -1), IMAGENET_MEAN, IMAGENET_STD)
    if channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


def class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, scaled so that they average to 1 over the samples."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = len(labels) / (n_classes * counts)
    return torch.as_tensor(weights, dtype=torch.float32)


def training_loaders(
    cfg: TrainConfig,
    data: XrayData,
    device: torch.device,
    generator: torch.Generator,
    world: World = SINGLE,
) -> dict:
    """Train (shuffled by `generator`, transformed as configured) and the evaluated splits
    (in order, 2x batch, normalised only); under torchrun, this rank's share of each, the
    global batch split evenly over the ranks."""
    workers = cfg.workers if cfg.workers is not None else default_workers(device)
    pin_memory = cfg.pin_memory and device.type == "cuda"
    batch_size = world.batch_per_process(cfg.batch_size)
    loaders = dict(
        train=make_loader(
            data,
            "train",
            batch_size,
            transform=training_transform(cfg),
            shuffle=True,
            weighted_sampling=cfg.weighted_sampling,
            workers=workers,
            generator=generator,
            pin_memory=pin_memory,
            world=world,
            seed=cfg.seed,
        )
    )
    for split in EVALUATED_SPLITS:
        loaders[split] = make_loader(
            data,
            split,
            2 * batch_size,
            transform=evaluation_transform(cfg),
            workers=workers,
            generator=generator,
            pin_memory=pin_memory,
            world=world,
        )
    return loaders
