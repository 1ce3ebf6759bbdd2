"""Per-image transforms on uint8 tensors (1, S, S): augmentation, the options that take the
acquisition shortcuts away, and per-image intensity normalisation (stresses.py: the stressed
validation sets, built from the same operations).

Training images pass these stages, in this order:

1. counter-framing (the only stage that reads the label): NORMAL images framed tighter,
   PNEUMONIA images given a black margin, so the frame stops telling the class;
2. acquisition jitter: how the image might have been taken and saved (aspect ratio of the
   original, field of view, black and white points, gamma, blur and noise, JPEG quality). The
   stressed validation sets are built from the same operations, aimed against the training
   set's confounds;
3. intensity normalisation, the same for every split (training, validation, test, predict);
4. the classic augmentation: small rotations, shifts, zoom and exposure changes;
5. the thorax mask, the same for every split.
"""

from __future__ import annotations

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
# Framing variety after the pipeline (RandomView): the widest view, and the widest band.
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


def set_levels(image: torch.Tensor, black: float, white: float, gamma: float = 1.0) -> torch.Tensor:
    """Map the grey levels [black, white] (fractions of 255) to [0, 255], clipping outside, then
    apply `gamma`. A negative `black` lifts the floor: no pixel stays pure black."""
    x = image.float().div(255)
    x = ((x - black) / (white - black)).clamp_(0, 1).pow_(gamma)
    return x.mul_(255).round_().to(torch.uint8)


def recompress_jpeg(image: torch.Tensor, quality: int) -> torch.Tensor:
    """Encode as JPEG at `quality` and decode again: the same shape, other bytes."""
    return v2.functional.jpeg(image, quality)


def reframe(
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


def replace_border(image: torch.Tensor, band: float, fill: float) -> torch.Tensor:
    """The outer `band` of the frame (a fraction of each side) painted grey level `fill`."""
    out = image.clone()
    out[:, band_mask(image.shape[1], image.shape[2], band)] = round(fill)
    return out


def median_grey(image: torch.Tensor) -> float:
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
    """The central `share` of each side of the frame."""
    _, height, width = image.shape
    rows, cols = max(1, round(height * share)), max(1, round(width * share))
    top, left = (height - rows) // 2, (width - cols) // 2
    return image[:, top : top + rows, left : left + cols]


def normalize_intensity(image: torch.Tensor, mode: str) -> torch.Tensor:
    """Per-image grey-level normalisation: `percentile` stretches the 0.5th-99.5th percentiles
    to black and white, `percentile-centre` the same percentiles of the central region;
    `equalize` flattens the histogram; `none` leaves the image as it is."""
    if mode == "equalize":
        return v2.functional.equalize(image)
    if mode in ("percentile", "percentile-centre"):
        measured = central_region(image) if mode == "percentile-centre" else image
        low, high = torch.quantile(measured.float().flatten(), torch.tensor(PERCENTILES)) / 255
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


class CounterFraming:
    """With probability `p`: a NORMAL image framed tighter, a PNEUMONIA image shrunk into a
    black margin, each by a random amount and off-centre. Training NORMAL files show more black
    margin around a smaller body; these draws turn that cue against the label in part of every
    epoch, so the frame stops telling the class. The only transform that reads the label."""

    def __init__(self, p: float):
        self.p = p

    def __call__(self, image: torch.Tensor, label: int) -> torch.Tensor:
        if torch.rand(()).item() >= self.p:
            return image
        shift = (_uniform(-1, 1), _uniform(-1, 1))
        if label == 0:
            return reframe(image, _uniform(*COUNTER_ZOOM_IN), shift=shift)
        return reframe(image, _uniform(*COUNTER_ZOOM_OUT), fill=0, shift=shift)


class RandomFraming:
    """The same for every class: a field of view up to (1 + j) times tighter or wider (log-
    uniform), the margin filled with a random grey between black and the image's median, and,
    one time in two, an outer band of up to j/2 of each side erased with such a grey."""

    def __init__(self, jitter: float):
        self.jitter = jitter
        self.log_range = math.log1p(jitter)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        fill = _uniform(0, median_grey(image))
        factor = math.exp(_uniform(-self.log_range, self.log_range))
        image = reframe(image, factor, fill, shift=(_uniform(-1, 1), _uniform(-1, 1)))
        if torch.rand(()).item() < 0.5:
            image = replace_border(image, _uniform(0, self.jitter / 2), fill)
        return image


class RandomView:
    """Framing variety after the input pipeline, the same for every class (docs/frame.md, round
    4): a field of view from VIEW_WIDER times wider to (1 + j) times tighter (log-uniform),
    off-centre by up to the room the zoom leaves, a wider view's margin a random grey between
    black and the image's median; and, one time in two, an outer band of up to
    VIEW_JITTER_BAND of each side painted a random grey between the median and white, as a
    shutter or a burnt-in border would be. After the crop to the body the frame is the body's
    box, so the view changes relative to the body."""

    def __init__(self, jitter: float):
        self.log_range = (-math.log(VIEW_WIDER), math.log1p(jitter))

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        median = median_grey(image)
        factor = math.exp(_uniform(*self.log_range))
        shift = (_uniform(-1, 1), _uniform(-1, 1))
        image = reframe(image, factor, _uniform(0, median), shift=shift)
        if torch.rand(()).item() < 0.5:
            image = replace_border(image, _uniform(0, VIEW_JITTER_BAND), _uniform(median, 255))
        return image


class ThoraxMask:
    """Everything outside the ellipse inscribed in the square painted black: a fixed mask over
    the corners of the frame, where the body's outline (shoulders, flanks) shows after the crop
    to the body. The same mask for every image, so the mask itself tells nothing."""

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        _, height, width = image.shape
        rows = (torch.arange(height) + 0.5) / height - 0.5
        cols = (torch.arange(width) + 0.5) / width - 0.5
        inside = (rows[:, None] ** 2 + cols[None, :] ** 2) <= 0.25
        return image * inside


class RandomBlurNoise:
    """With probability `p` each: Gaussian blur (sigma 0.3-1.5 px at 128 px, scaled with the
    image) and Gaussian noise (sd up to 4% of the grey range): sharper and softer detectors."""

    def __init__(self, p: float):
        self.p = p

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if torch.rand(()).item() < self.p:
            image = blur(image, _uniform(0.3, 1.5) * image.shape[-1] / 128)
        if torch.rand(()).item() < self.p:
            image = add_noise(image, _uniform(0, 0.04))
        return image


class TrainingTransform:
    """Counter-framing (which reads the label), then the image-only steps."""

    takes_label = True

    def __init__(self, counter_framing: CounterFraming, steps: v2.Compose | None):
        self.counter_framing, self.steps = counter_framing, steps

    def __call__(self, image: torch.Tensor, label: int) -> torch.Tensor:
        image = self.counter_framing(image, label)
        return self.steps(image) if self.steps is not None else image


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


def training_transform(cfg) -> v2.Compose | TrainingTransform | None:
    """The transform of training images for a TrainConfig; None when it does nothing. With
    counter-framing it is a TrainingTransform, called with the image and its label."""
    steps = []
    if cfg.aspect_jitter:
        steps.append(RandomAspect(cfg.aspect_jitter))
    if cfg.frame_jitter:
        steps.append(RandomFraming(cfg.frame_jitter))
    if cfg.view_jitter:
        steps.append(RandomView(cfg.view_jitter))
    if cfg.intensity_jitter:
        steps.append(RandomLevels(cfg.intensity_jitter))
    if cfg.blur_noise:
        steps.append(RandomBlurNoise(cfg.blur_noise))
    if cfg.jpeg_quality_min is not None:
        steps.append(v2.JPEG(quality=(cfg.jpeg_quality_min, 95)))
    if cfg.intensity_norm != "none":
        steps.append(NormalizeIntensity(cfg.intensity_norm))
    if cfg.augment:
        steps.append(classic_augmentation())
    if cfg.thorax_mask:  # last, so that every image shows exactly the same mask
        steps.append(ThoraxMask())
    image_steps = v2.Compose(steps) if steps else None
    if cfg.counter_framing:
        return TrainingTransform(CounterFraming(cfg.counter_framing), image_steps)
    return image_steps


def evaluation_transform(cfg) -> v2.Compose | None:
    """The transform of every image the model judges outside training: normalisation, and the
    thorax mask if the run has one; None when it does nothing."""
    steps = [NormalizeIntensity(cfg.intensity_norm)] if cfg.intensity_norm != "none" else []
    if cfg.thorax_mask:
        steps.append(ThoraxMask())
    return v2.Compose(steps) if steps else None
