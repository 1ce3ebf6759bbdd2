"""The image alterations, one image (1, S, S) uint8 at a time, and the normalisation every split
shares. These are the definitions: the robustness suite applies them per file, and training and
the stressed validation copies (stresses.py) apply the same operations in batches (augment.py,
which lists the training steps in order and is tested against these). One vocabulary: each
definition has the name of its batched form (zoom, paint_band, levels, jpeg, blur, add_noise,
median), whichever set of images it changes."""

from __future__ import annotations

import functools
import math

import torch
from torchvision.transforms import v2

# Percentiles that `percentile` normalisation maps to black and white; `percentile-centre` takes
# them in the central region only (CENTRE of each side, centred), which a band or a margin at
# the edges of the frame does not reach, so the frame does not move the normalised pixels.
PERCENTILES = (0.005, 0.995)
CENTRE = 0.5
# Counter-framing in training: the same directions, wider ranges.
COUNTER_ZOOM_IN = (1.1, 1.5)
COUNTER_ZOOM_OUT = (0.65, 0.92)
# Framing variety after the input pipeline (augment.py, --view-jitter): the widest view, and
# the widest band.
VIEW_WIDER = 1.1
VIEW_JITTER_BAND = 0.14


def anisotropic_scale(image: torch.Tensor, factor: float) -> torch.Tensor:
    """Make the anatomy `factor` times wider (factor > 1) or taller (factor < 1), then crop back
    to the original size: what a narrower or wider original looks like once squashed to a
    square. Cropping, not padding, so that no border appears."""
    _, height, width = image.shape
    size = [height, round(width * factor)] if factor >= 1 else [round(height / factor), width]
    stretched = v2.functional.resize(image, size, antialias=True)
    return v2.functional.center_crop(stretched, [height, width])


def levels(image: torch.Tensor, black: float, white: float, gamma: float = 1.0) -> torch.Tensor:
    """Map the grey levels [black, white] (fractions of 255) to [0, 255], clipping outside, then
    apply `gamma`. A negative `black` lifts the floor: no pixel stays pure black."""
    x = image.float().div(255)
    x = ((x - black) / (white - black)).clamp_(0, 1).pow_(gamma)
    return x.mul_(255).round_().to(torch.uint8)


def jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode as JPEG at `quality` and decode again: the same shape, other bytes."""
    return v2.functional.jpeg(image, quality)


def zoom(
    image: torch.Tensor, factor: float, fill: float = 0, shift: tuple[float, float] = (0, 0)
) -> torch.Tensor:
    """Change the field of view, keeping the shape. `factor` > 1 enlarges the central 1/factor of
    the frame to the full frame (a tighter field of view); `factor` < 1 shrinks the picture into
    a margin of grey level `fill` (a wider one). `shift` (x, y), each in [-1, 1], moves the crop
    window or the shrunk picture across the room it has."""
    _, height, width = image.shape
    if factor == 1:
        return image
    if factor > 1:
        crop_h, crop_w = max(1, round(height / factor)), max(1, round(width / factor))
        top = round((height - crop_h) / 2 * (1 + shift[1]))
        left = round((width - crop_w) / 2 * (1 + shift[0]))
        window = image[:, top : top + crop_h, left : left + crop_w]
        return v2.functional.resize(window, [height, width], antialias=True)
    inner_h, inner_w = max(1, round(height * factor)), max(1, round(width * factor))
    small = v2.functional.resize(image, [inner_h, inner_w], antialias=True)
    out = torch.full_like(image, round(fill))
    top = round((height - inner_h) / 2 * (1 + shift[1]))
    left = round((width - inner_w) / 2 * (1 + shift[0]))
    out[:, top : top + inner_h, left : left + inner_w] = small
    return out


def band_mask(height: int, width: int, band: float) -> torch.Tensor:
    """True on the outer band of the frame whose width is `band` of each side."""
    rows, cols = max(1, round(height * band)), max(1, round(width * band))
    mask = torch.ones(height, width, dtype=torch.bool)
    mask[rows : height - rows, cols : width - cols] = False
    return mask


def paint_band(image: torch.Tensor, band: float, fill: float) -> torch.Tensor:
    """The outer `band` of the frame (a fraction of each side) painted grey level `fill`."""
    out = image.clone()
    out[:, band_mask(image.shape[1], image.shape[2], band)] = round(fill)
    return out


def median(image: torch.Tensor) -> float:
    return image.float().median().item()


def blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur, `sigma` in pixels of this image."""
    kernel = 2 * math.ceil(3 * sigma) + 1
    return v2.functional.gaussian_blur(image, [kernel, kernel], [sigma, sigma])


def add_noise(image: torch.Tensor, std: float, generator: torch.Generator | None = None):
    """Gaussian noise of `std` (a fraction of the grey range), clipped to [0, 255]."""
    noise = torch.randn(image.shape, generator=generator) * std * 255
    return (image.float() + noise).round_().clamp_(0, 255).to(torch.uint8)


def central_region(image: torch.Tensor, share: float = CENTRE) -> torch.Tensor:
    """The central `share` of each side of the frame (of every image of a batch)."""
    height, width = image.shape[-2:]
    rows, cols = max(1, round(height * share)), max(1, round(width * share))
    top, left = (height - rows) // 2, (width - cols) // 2
    return image[..., top : top + rows, left : left + cols]


def normalize_intensity(images: torch.Tensor, mode: str) -> torch.Tensor:
    """Per-image grey-level normalisation of a uint8 image (1, S, S) or batch (B, 1, S, S):
    `percentile` stretches the 0.5th-99.5th percentiles to black and white, `percentile-centre`
    the same percentiles of the central region; `equalize` flattens the histogram; `none`
    leaves the image as it is. A batch goes in chunks of at most 16M pixels, the most that
    torch.quantile has taken at once in some versions."""
    if mode == "equalize":
        return v2.functional.equalize(images)
    if mode not in ("percentile", "percentile-centre"):
        return images
    batch = images.reshape(-1, *images.shape[-3:])
    chunk = max(1, 2**24 // batch[0].numel())
    stretched = torch.cat([_stretch(part, mode) for part in batch.split(chunk)])
    return stretched.reshape(images.shape)


@functools.cache
def _percentiles(device: torch.device) -> torch.Tensor:
    """PERCENTILES as a tensor on `device`, made once: a copy from the host at every batch would
    make the host wait for the device."""
    return torch.tensor(PERCENTILES, device=device)


def _stretch(batch: torch.Tensor, mode: str) -> torch.Tensor:
    measured = central_region(batch) if mode == "percentile-centre" else batch
    quantiles = _percentiles(batch.device)
    low, high = torch.quantile(measured.flatten(1).float(), quantiles, dim=1) / 255
    flat = high - low < 1 / 255  # a flat image has no range to stretch
    x = batch.float().div(255)
    x = ((x - low.view(-1, 1, 1, 1)) / (high - low).view(-1, 1, 1, 1)).clamp_(0, 1)
    stretched = x.mul_(255).round_().to(torch.uint8)
    return torch.where(flat.view(-1, 1, 1, 1), batch, stretched)


def thorax_ellipse(size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """True inside the ellipse inscribed in the square (S, S): the thorax mask keeps it and
    paints the corners, where the body's outline (shoulders, flanks) shows after the crop to
    the body, black. The same mask for every image, so the mask itself tells nothing."""
    centres = (torch.arange(size, device=device) + 0.5) / size - 0.5
    return (centres[:, None] ** 2 + centres[None, :] ** 2) <= 0.25


class EvaluationTransform:
    """The transform of every image the model judges outside training: the run's intensity
    normalisation, then its thorax mask."""

    def __init__(self, intensity_norm: str, thorax_mask: bool):
        self.intensity_norm, self.thorax_mask = intensity_norm, thorax_mask

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        image = normalize_intensity(image, self.intensity_norm)
        return image * thorax_ellipse(image.shape[-1], image.device) if self.thorax_mask else image


def evaluation_transform(cfg) -> EvaluationTransform | None:
    """The EvaluationTransform of a TrainConfig; None when it does nothing."""
    if cfg.intensity_norm == "none" and not cfg.thorax_mask:
        return None
    return EvaluationTransform(cfg.intensity_norm, cfg.thorax_mask)
