"""A split held on the training device as one uint8 tensor, and training's batches drawn from it.

The decoded images (the cache) of each split are copied once to the training device: GPU memory
on CUDA (the 5,856 images at 224 px are about 300 MB), memory on the CPU. Training indexes its
batches from that tensor by a seeded permutation and augments each batch there (augment.py), so
no loader process decodes, augments or copies an image during training. Evaluation sets are
held already normalised (transforms.EvaluationTransform), since they never change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from pneumo_utils.data.augment import Augmentation
from pneumo_utils.data.dataset import XrayData, split_frame
from pneumo_utils.data.transforms import evaluation_transform
from pneumo_utils.runtime.distributed import SINGLE, World
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.splits import VALIDATION_COPIES

# Seed offsets that keep the order's and the augmentation's random streams apart from each other
# and from the global generator's (the epoch's seed), and each rank's apart from the others'.
ORDER_STREAM, AUGMENT_STREAM, RANK_STREAM = 300_007, 500_009, 1_000_003


@dataclass(frozen=True)
class HeldSplit:
    """One split's images (N, 1, S, S) uint8, labels and folder labels (NORMAL 0, PNEUMONIA 1:
    what counter-framing reads), all on one device."""

    images: torch.Tensor
    labels: torch.Tensor
    folder_labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def in_order(self, batch_size: int, world: World = SINGLE):
        """(images, labels) batches in split order; under torchrun, this rank's unpadded share
        (images rank, rank + size, ...), so every image is scored once over the ranks."""
        rows = torch.arange(world.rank, len(self), world.size, device=self.labels.device)
        for chunk in rows.split(batch_size):
            yield self.images[chunk], self.labels[chunk]


def hold(data: XrayData, split: str, device: torch.device, transform=None) -> HeldSplit:
    """A split (or a validation copy) on `device`, each image through `transform` once."""
    frame = split_frame(data, split)
    if split in VALIDATION_COPIES:
        pixels = np.asarray(getattr(data, split))
    else:
        pixels = data.images[frame["cache_row"].to_numpy()]
    return hold_images(pixels, frame["label"].to_numpy(), device, transform,
                       frame["folder_label"].to_numpy())  # fmt: skip


def hold_images(
    pixels: np.ndarray, labels: np.ndarray, device: torch.device, transform=None,
    folder_labels: np.ndarray | None = None,
) -> HeldSplit:  # fmt: skip
    """Images (N, S, S) uint8 and their labels on `device`, each image through `transform`
    once (on the CPU, as every image was transformed before the move)."""
    images = torch.from_numpy(np.ascontiguousarray(pixels))[:, None]
    if transform is not None:
        images = transform(images)
    labels = torch.tensor(labels, dtype=torch.long, device=device)
    folder = labels if folder_labels is None else torch.tensor(folder_labels, device=device)
    return HeldSplit(images.to(device), labels, folder.long())


def hold_for_evaluation(cfg, data: XrayData, splits, device) -> dict[str, HeldSplit]:
    """The evaluated splits on `device`, normalised as the run's model takes them."""
    return {split: hold(data, split, device, evaluation_transform(cfg)) for split in splits}


class TrainingBatches:
    """One epoch of training batches from a HeldSplit: (augmented uint8 images, labels) on its
    device. The order is a permutation (or, with `weighted`, a class-balanced draw with
    replacement), the same on every rank; each rank takes its shard, and the augmentation draws
    come from `generator`, on the device, seeded per rank. `start_epoch` seeds both. With
    `views` 2 each batch holds its images twice, the second half a second draw of the first
    (TrainConfig.consistency)."""

    def __init__(
        self,
        held: HeldSplit,
        batch_size: int,
        augmentation: Augmentation,
        *,
        weighted: bool = False,
        views: int = 1,
        world: World = SINGLE,
    ):
        if world.distributed and weighted:
            raise UserError(
                "--weighted-sampling is not available under torchrun: use --class-weighting, "
                "or train in one process"
            )
        self.held, self.batch_size, self.augmentation = held, batch_size, augmentation
        self.weighted, self.views, self.world = weighted, views, world
        self.generator = torch.Generator(held.images.device)
        self.order_generator = torch.Generator()
        self.shard = math.ceil(len(held) / world.size)

    def start_epoch(self, seed: int, rank: int = 0) -> None:
        """The epoch's order from `seed` (the same on every rank), and its augmentation draws
        from (seed, rank) in a stream of their own: neither repeats the other, nor the global
        generator that dropout draws from."""
        self.order_generator.manual_seed(ORDER_STREAM + seed)
        self.generator.manual_seed(AUGMENT_STREAM + seed + RANK_STREAM * rank)

    def __len__(self) -> int:
        return math.ceil(self.shard / self.batch_size)

    def order(self) -> torch.Tensor:
        """This rank's rows of the epoch, in the order they are trained on."""
        n = len(self.held)
        if self.weighted:
            labels = self.held.labels.cpu()
            weights = 1.0 / torch.bincount(labels).double()[labels]
            rows = torch.multinomial(weights, n, replacement=True, generator=self.order_generator)
        else:
            rows = torch.randperm(n, generator=self.order_generator)
        # Padded to a whole shard per rank with the first rows, as DistributedSampler does.
        padded = torch.cat([rows, rows[: self.shard * self.world.size - n]])
        return padded[self.world.rank :: self.world.size].to(self.held.labels.device)

    def __iter__(self):
        for chunk in self.order().split(self.batch_size):
            rows = chunk.repeat(self.views)  # each copy of an image gets draws of its own
            images = self.augmentation(
                self.held.images[rows], self.held.folder_labels[rows], self.generator
            )
            yield images, self.held.labels[rows]
