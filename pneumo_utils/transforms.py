"""Per-image transforms on uint8 tensors (1, S, S): augmentation, the options that take the
acquisition shortcuts away, per-image intensity normalisation, and the stressed validation set.

Training images pass three stages, in this order:

1. acquisition jitter: how the image might have been saved (aspect ratio of the original,
   black and white points, gamma, JPEG quality). The stressed validation set is built from
   the same operations, aimed against the training set's confounds;
2. intensity normalisation, the same for every split (training, validation, test, predict);
3. the classic augmentation: small rotations, shifts, zoom and exposure changes.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import torch
from torchvision.transforms import v2

INTENSITY_NORMS = ("none", "percentile", "equalize")
# Percentiles that `percentile` normalisation maps to black and white.
PERCENTILES = (0.005, 0.995)
# The stressed validation set: NORMAL images are given the look of the training PNEUMONIA
# files (a wider original squashed harder, no pure black) and PNEUMONIA images the look of
# the training NORMAL files (a narrower original, clipped blacks); all re-saved at quality 75.
STRESS_ASPECT = (1.15, 1.4)
STRESS_BLACK_LIFT = (0.03, 0.08)
STRESS_BLACK_CLIP = (0.02, 0.06)
STRESS_JPEG_QUALITY = 75


def anisotropic_scale(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Make the anatomy `factor` times wider (factor > 1) or taller (factor < 1), then crop back
    to the original size: what a narrower or wider original looks like once squashed to a
    square. Cropping, not padding, so that no border appears."""
    _, height, width = image.shape
    size = [height, round(width * factor)] if factor >= 1 else [round(height / factor), width]
    stretched = v2.functional.resize(image, size, antialias=True)
    return v2.functional.center_crop(stretched, [height, width])


def set_levels(image: torch.Tensor, black: float, white: float, gamma: float = 1.0) -> torch.Tensor:
    """Map the grey levels [black, white] (fractions of 255) to [0, 255], clipping outside, then
    apply `gamma`. A negative `black` lifts the floor: no pixel stays pure black."""
    x = image.float().div(255)
    x = ((x - black) / (white - black)).clamp_(0, 1).pow_(gamma)
    return x.mul_(255).round_().to(torch.uint8)


def recompress_jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode as JPEG at `quality` and decode again: the same shape, other bytes."""
    return v2.functional.jpeg(image, quality)


def normalize_intensity(image: torch.Tensor, mode: str) -> torch.Tensor:
    """Per-image grey-level normalisation: `percentile` stretches the 0.5th-99.5th percentiles
    to black and white; `equalize` flattens the histogram; `none` leaves the image as it is."""
    if mode == "equalize":
        return v2.functional.equalize(image)
    if mode == "percentile":
        low, high = torch.quantile(image.float().flatten(), torch.tensor(PERCENTILES)) / 255
        if high - low < 1 / 255:  # a flat image has no range to stretch
            return image
        return set_levels(image, low.item(), high.item())
    return image


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * torch.rand(()).item()


class RandomAspect:
    """Anisotropic scaling by a factor between 1/(1+jitter) and 1+jitter (log-uniform)."""

    def __init__(self, jitter: float):
        self.log_range = math.log1p(jitter)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return anisotropic_scale(image, math.exp(_uniform(-self.log_range, self.log_range)))


class RandomLevels:
    """Black point and white point each moved by up to `jitter` of the range, gamma in
    [exp(-2 jitter), exp(2 jitter)]: exposure and windowing as different scanners save them."""

    def __init__(self, jitter: float):
        self.jitter = jitter

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        j = self.jitter
        return set_levels(
            image,
            black=_uniform(-j, j),
            white=1 + _uniform(-j, j),
            gamma=math.exp(_uniform(-2 * j, 2 * j)),
        )


class NormalizeIntensity:
    def __init__(self, mode: str):
        self.mode = mode

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return normalize_intensity(image, self.mode)


def classic_augmentation() -> v2.Transform:
    """Small geometric and exposure changes that a real chest radiograph could show.

    No flips (the heart is on the left, and markers would read mirrored) and no large
    crops (the lung fields must stay in view).
    """
    return v2.Compose(
        [
            v2.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.9, 1.1)),
            v2.ColorJitter(brightness=0.2, contrast=0.2),
        ]
    )


def training_transform(cfg) -> v2.Compose | None:
    """The transform of training images for a TrainConfig; None when it does nothing."""
    steps = []
    if cfg.aspect_jitter:
        steps.append(RandomAspect(cfg.aspect_jitter))
    if cfg.intensity_jitter:
        steps.append(RandomLevels(cfg.intensity_jitter))
    if cfg.jpeg_quality_min is not None:
        steps.append(v2.JPEG(quality=(cfg.jpeg_quality_min, 95)))
    if cfg.intensity_norm != "none":
        steps.append(NormalizeIntensity(cfg.intensity_norm))
    if cfg.augment:
        steps.append(classic_augmentation())
    return v2.Compose(steps) if steps else None


def evaluation_transform(cfg) -> NormalizeIntensity | None:
    """The transform of every image the model judges outside training: normalisation only."""
    return NormalizeIntensity(cfg.intensity_norm) if cfg.intensity_norm != "none" else None


def stress(image: np.ndarray, label: int, rng: np.random.Generator) -> np.ndarray:
    """One validation image with the training set's confounds turned against its label."""
    tensor = torch.from_numpy(np.ascontiguousarray(image))[None]
    factor = rng.uniform(*STRESS_ASPECT)
    if label == 0:  # NORMAL: as if from a wide original, without the pure black of NORMAL files
        tensor = anisotropic_scale(tensor, 1 / factor)
        tensor = set_levels(tensor, black=-rng.uniform(*STRESS_BLACK_LIFT), white=1.0)
    else:  # PNEUMONIA: as if from a narrower original, with clipped blacks
        tensor = anisotropic_scale(tensor, factor)
        tensor = set_levels(tensor, black=rng.uniform(*STRESS_BLACK_CLIP), white=1.0)
    return recompress_jpeg(tensor, STRESS_JPEG_QUALITY)[0].numpy()


def stressed_copy(images: np.ndarray, labels: np.ndarray, names, seed: int) -> np.ndarray:
    """The stressed validation set: each image stressed with a generator drawn from the seed
    and its file name, so the set depends on nothing else (not the order, not the machine)."""
    out = np.empty_like(images)
    for i, (image, label, name) in enumerate(zip(images, labels, names, strict=True)):
        rng = np.random.default_rng([seed, zlib.crc32(str(name).encode())])
        out[i] = stress(image, int(label), rng)
    return out
