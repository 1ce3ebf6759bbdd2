"""Training-time augmentation as batched operations on the training device.

Every image of a batch gets its own random parameters, drawn from one generator on that device
(torchvision.transforms.v2 would draw one set for the whole batch). The same code runs on the
CPU and on a GPU. Images are float grey levels 0-255, shape (B, 1, S, S), between the steps:

- geometry (field of view, aspect, the classic affine) is one `affine_grid`/`grid_sample` each;
- levels, gamma, brightness, contrast, bands, noise and the thorax mask are tensor arithmetic;
- blur is a separable convolution with one kernel per image;
- JPEG is torchvision's codec, the images grouped by quality.

transforms.py keeps the per-image definitions these reproduce (the robustness suite measures
with them); tests/test_augment.py gives each operation and its definition the same parameters.
The stressed validation copies (stresses.py) are made with these operations too, each file
with parameters of its own; `box` confines a zoom, a band or a median to a region per image.

Training images pass these steps, in this order (`Augmentation.draw` documents each draw):

1. counter-framing (the only step that reads the label): NORMAL images framed tighter,
   PNEUMONIA images given a black margin, so the frame stops telling the class;
2. acquisition jitter: aspect, field of view, levels and gamma, blur and noise, JPEG;
3. intensity normalisation, the same for every split (transforms.normalize_intensity);
4. the classic augmentation: small rotations, shifts, zoom and exposure changes;
5. the thorax mask, the same for every split.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torchvision.io import decode_jpeg, encode_jpeg

from pneumo_utils.data.transforms import (
    COUNTER_ZOOM_IN,
    COUNTER_ZOOM_OUT,
    VIEW_JITTER_BAND,
    VIEW_WIDER,
    normalize_intensity,
    thorax_ellipse,
)

# The classic augmentation: rotation (degrees), shift (share of the side), zoom, and brightness
# and contrast factors. No flips (the heart is on the left, and markers would read mirrored)
# and no large crops (the lung fields must stay in view).
CLASSIC_DEGREES = 10.0
CLASSIC_SHIFT = 0.05
CLASSIC_ZOOM = (0.9, 1.1)
CLASSIC_EXPOSURE = (0.8, 1.2)
# Blur's sigma at 128 px (scaled with the image), and the noise's largest sd (share of 255).
BLUR_SIGMA = (0.3, 1.5)
NOISE_SD = 0.04
JPEG_QUALITY_MAX = 95
# Antialiasing before a shrink: the smallest factor any step draws (counter-framing's 0.65), and
# a kernel radius wide enough for its sigma (0.58 px).
SMALLEST_FACTOR = 0.65
ANTIALIAS_RADIUS = 2


# ----------------------------------------------------------------------------- operations


def _column(values: torch.Tensor) -> torch.Tensor:
    """Per-image values (B,) as (B, 1, 1, 1), to broadcast over images."""
    return values.view(-1, 1, 1, 1)


def _per_image(value, images: torch.Tensor) -> torch.Tensor:
    """A per-image parameter (B,) from a tensor or a Python number, on the images' device (a
    number is filled there: copying it from the host would make the host wait)."""
    if isinstance(value, torch.Tensor):
        return value.to(images.dtype).expand(len(images))
    return torch.full((len(images),), float(value), dtype=images.dtype, device=images.device)


def warp(images: torch.Tensor, theta: torch.Tensor, fill=0.0):
    """Each image resampled through its affine map `theta` (B, 2, 3), from the output's
    normalised coordinates to the input's; what falls outside the input is grey `fill`."""
    fill = _column(_per_image(fill, images))
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    shifted = images - fill  # zeros padding of (image - fill) is padding with fill
    return F.grid_sample(shifted, grid, "bilinear", "zeros", align_corners=False) + fill


def zoom(images, factor_x, factor_y=None, shift_x=0.0, shift_y=0.0, fill=0.0, box=None):
    """The field of view changed per image (transforms.zoom, anisotropic_scale): a factor
    above 1 enlarges the central 1/factor to the full frame, below 1 shrinks the picture into a
    margin of grey `fill`; a shift in [-1, 1] moves the window or the picture across the room
    it has (both ends of the room at +-1). With `box` (B, 4: top, bottom, left, right in
    pixels), the view is taken inside each image's box instead of its whole frame, and
    enlarged to the whole frame."""
    factor_y = factor_x if factor_y is None else factor_y
    fx, fy, sx, sy = (_per_image(v, images) for v in (factor_x, factor_y, shift_x, shift_y))
    if box is None:  # a box's view is enlarged, never shrunk
        images = _antialias(images, torch.minimum(fx, fy))
    centre_x, half_x, centre_y, half_y = _normalised(box, images)
    theta = torch.zeros(len(images), 2, 3, dtype=images.dtype, device=images.device)
    theta[:, 0, 0], theta[:, 1, 1] = half_x / fx, half_y / fy
    # The window's (or the picture's) centre sits at shift * (1 - factor) in the output.
    theta[:, 0, 2] = centre_x - half_x * sx * (1 - fx) / fx
    theta[:, 1, 2] = centre_y - half_y * sy * (1 - fy) / fy
    return warp(images, theta, fill)


def _normalised(box, images):
    """(centre x, half width, centre y, half height) of each image's box in grid_sample's
    normalised coordinates; the whole frame is (0, 1, 0, 1)."""
    if box is None:
        return 0.0, 1.0, 0.0, 1.0
    height, width = images.shape[-2:]
    top, bottom, left, right = box.to(images.dtype).T
    return ((left + right) / width - 1, (right - left) / width,
            (top + bottom) / height - 1, (bottom - top) / height)  # fmt: skip


def _antialias(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Before shrinking by `factor` < 1: a Gaussian blur of variance (1/factor^2 - 1) / 4 px^2,
    so that a shrunk picture keeps about as little fine texture as the per-image definition's
    antialiased resize (transforms.zoom) leaves (tests/test_augment.py measures it on pixel
    noise). Images not shrunk are left as they are."""
    shrunk = factor < 1
    sigma = torch.sqrt(((1 / factor.clamp(min=SMALLEST_FACTOR)) ** 2 - 1).clamp(min=0) / 4)
    blurred = blur(images, sigma.clamp(min=0.1), ANTIALIAS_RADIUS)
    return torch.where(_column(shrunk), blurred, images)


def affine(images, degrees, shift_x, shift_y, scale, fill=0.0):
    """Rotation by `degrees` (clockwise, as torchvision's affine), then a shift (a share of the
    side) and a zoom by `scale`, about the centre, per image."""
    angle = torch.deg2rad(degrees)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    tx, ty = 2 * shift_x, 2 * shift_y  # normalised coordinates span 2
    theta = torch.stack(
        [
            torch.stack([cos, sin, -(cos * tx + sin * ty)], dim=1),
            torch.stack([-sin, cos, -(-sin * tx + cos * ty)], dim=1),
        ],
        dim=1,
    )
    return warp(images, theta, fill)


def levels(images, black, white, gamma):
    """Grey levels [black, white] (shares of 255) mapped to [0, 255], clipped, then gamma
    (transforms.levels)."""
    black, white, gamma = _column(black), _column(white), _column(gamma)
    return ((images / 255 - black) / (white - black)).clamp(0, 1).pow(gamma) * 255


def exposure(images, brightness, contrast):
    """Brightness, then contrast about each image's mean, clipped (torchvision's ColorJitter
    with a fixed order)."""
    images = (images * _column(brightness)).clamp(0, 255)
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return ((images - mean) * _column(contrast) + mean).clamp(0, 255)


def paint_band(images, band, fill, box=None):
    """The outer `band` of each side (a share, at least one pixel) painted grey `fill`, per
    image (transforms.paint_band); a band of 0 paints nothing. With `box` (B, 4: top,
    bottom, left, right in pixels), the band of each image's box, the rest left as it is."""
    inside, core = _box_masks(images, box, band)
    return torch.where((inside & ~core)[:, None], _column(fill), images)


def _box_masks(images, box, band=None):
    """Per image (B, H, W): inside its box (the whole frame without one), and inside the box
    less its outer `band` of each side (at least one pixel; a band of 0 leaves the box)."""
    height, width = images.shape[-2:]
    if box is None:  # numbers, not a tensor: a copy from the host would make the host wait
        top, bottom, left, right = 0, height, 0, width
    else:
        top, bottom, left, right = (side.view(-1, 1, 1) for side in box.T)
    rows = torch.arange(height, device=images.device).view(1, -1, 1)
    cols = torch.arange(width, device=images.device).view(1, 1, -1)
    inside = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
    if band is None:
        return inside, inside
    share = band.view(-1, 1, 1)

    def pixels(side):
        return torch.where(share > 0, torch.round(share * side).clamp(min=1), 0)

    rows_in, cols_in = pixels(bottom - top), pixels(right - left)
    core = ((rows >= top + rows_in) & (rows < bottom - rows_in)
            & (cols >= left + cols_in) & (cols < right - cols_in))  # fmt: skip
    return inside, core


def blur(images, sigma, radius: int):
    """Gaussian blur, `sigma` in pixels per image (transforms.blur), borders reflected; one
    kernel size for the batch, `radius` at least 3 times the largest sigma (given, not read
    from `sigma`: that would make the host wait for the device)."""
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (offsets / sigma.view(-1, 1)) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)  # (B, 2r+1)
    n, _, height, width = images.shape
    planes = F.pad(images.view(1, n, height, width), [radius] * 4, mode="reflect")
    planes = F.conv2d(planes, kernel.view(n, 1, 1, -1), groups=n)
    planes = F.conv2d(planes, kernel.view(n, 1, -1, 1), groups=n)
    return planes.view(n, 1, height, width)


def add_noise(images, sd, generator):
    """Gaussian noise, `sd` per image as a share of 255, clipped (transforms.add_noise)."""
    noise = torch.randn(images.shape, generator=generator, device=images.device)
    return (images + noise * _column(sd) * 255).clamp(0, 255)


def jpeg(images, quality):
    """Each image encoded as JPEG at its quality and decoded (transforms.jpeg), on
    the CPU whatever the device: torchvision's GPU encoder takes colour images only. The one
    step that copies a batch to the host and back, once a batch, in recipes with
    --jpeg-quality-min (the shortcut levers, so the headline too)."""
    grey, quality = to_uint8(images).cpu(), quality.cpu()
    out = torch.empty_like(grey)
    for q in quality.unique().tolist():  # the codec takes one quality per call
        chosen = (quality == q).nonzero().flatten()
        out[chosen] = torch.stack(decode_jpeg(encode_jpeg(list(grey[chosen]), quality=int(q))))
    return out.to(images.device).float()


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    return images.round().clamp(0, 255).to(torch.uint8)


def medians(images: torch.Tensor, box=None) -> torch.Tensor:
    """Each image's median grey level (the lower middle value, as torch.median), with `box`
    (B, 4: top, bottom, left, right in pixels) that of its box."""
    if box is None:
        return images.flatten(1).median(dim=1).values
    inside, _ = _box_masks(images, box)
    return torch.where(inside[:, None], images, torch.nan).flatten(1).nanmedian(dim=1).values


# ----------------------------------------------------------------------------- the draws


class Augmentation:
    """The training-time steps of a TrainConfig as one call on a batch of uint8 images:
    `draw` the per-image parameters, `apply` them. `enabled` is False when nothing changes."""

    def __init__(self, cfg):
        self.cfg = cfg
        self.enabled = cfg.random_views or cfg.intensity_norm != "none" or cfg.thorax_mask

    def __call__(self, images, folder_labels, generator):
        if not self.enabled:
            return images
        return self.apply(images, self.draw(images, folder_labels, generator), generator)

    def draw(self, images, folder_labels, generator) -> dict[str, torch.Tensor]:
        """Every random parameter of this batch, one value per image; the ranges are the
        configuration's (TrainConfig's help gives each option's meaning)."""
        cfg, n = self.cfg, len(images)

        def uniform(low: float, high: float) -> torch.Tensor:
            return low + (high - low) * torch.rand(n, generator=generator, device=images.device)

        def happens(p):
            return torch.rand(n, generator=generator, device=images.device) < p

        draws: dict[str, torch.Tensor] = {}
        if cfg.counter_framing:  # NORMAL tighter, PNEUMONIA into a black margin
            tighter, looser = uniform(*COUNTER_ZOOM_IN), uniform(*COUNTER_ZOOM_OUT)
            factor = torch.where(folder_labels.to(images.device) == 0, tighter, looser)
            draws["counter_zoom"] = torch.where(happens(cfg.counter_framing), factor, 1.0)
            draws["counter_shift"] = torch.stack([uniform(-1, 1), uniform(-1, 1)])
        if cfg.aspect_jitter:  # log-uniform in [1/(1+j), 1+j]
            log_range = math.log1p(cfg.aspect_jitter)
            draws["aspect"] = torch.exp(uniform(-log_range, log_range))
        # Fills are drawn as shares of the way from black to the image's median (or from the
        # median to white), the median taken by `apply` just before the step, as the per-image
        # definitions took it.
        if cfg.frame_jitter:  # up to (1+j) tighter or wider; a band of up to j/2 one time in two
            log_range = math.log1p(cfg.frame_jitter)
            draws["frame_fill"] = uniform(0, 1)
            draws["frame_zoom"] = torch.exp(uniform(-log_range, log_range))
            draws["frame_shift"] = torch.stack([uniform(-1, 1), uniform(-1, 1)])
            draws["frame_band"] = torch.where(happens(0.5), uniform(0, cfg.frame_jitter / 2), 0)
        if cfg.view_jitter:  # VIEW_WIDER wider to (1+j) tighter; a grey-to-white band
            log_range = (-math.log(VIEW_WIDER), math.log1p(cfg.view_jitter))
            draws["view_zoom"] = torch.exp(uniform(*log_range))
            draws["view_fill"] = uniform(0, 1)
            draws["view_shift"] = torch.stack([uniform(-1, 1), uniform(-1, 1)])
            draws["view_band"] = torch.where(happens(0.5), uniform(0, VIEW_JITTER_BAND), 0)
            draws["view_band_fill"] = uniform(0, 1)
        if cfg.intensity_jitter:  # black and white points +-j, gamma in [e^-2j, e^2j]
            j = cfg.intensity_jitter
            draws["black"], draws["white"] = uniform(-j, j), 1 + uniform(-j, j)
            draws["gamma"] = torch.exp(uniform(-2 * j, 2 * j))
        if cfg.blur_noise:  # each with probability p
            sigma = uniform(*BLUR_SIGMA) * images.shape[-1] / 128
            draws["blur_sigma"] = torch.where(happens(cfg.blur_noise), sigma, 0)
            draws["noise_sd"] = torch.where(happens(cfg.blur_noise), uniform(0, NOISE_SD), 0)
        if cfg.jpeg_quality_min is not None:  # a whole quality in [min, 95]
            span = JPEG_QUALITY_MAX - cfg.jpeg_quality_min + 1
            draws["jpeg_quality"] = cfg.jpeg_quality_min + (uniform(0, 1) * span).long().clamp(
                max=span - 1
            )
        if cfg.augment:
            draws["degrees"] = uniform(-CLASSIC_DEGREES, CLASSIC_DEGREES)
            draws["shift"] = torch.stack([uniform(-CLASSIC_SHIFT, CLASSIC_SHIFT)
                                          for _ in range(2)])  # fmt: skip
            draws["scale"] = uniform(*CLASSIC_ZOOM)
            draws["brightness"], draws["contrast"] = (uniform(*CLASSIC_EXPOSURE)
                                                      for _ in range(2))  # fmt: skip
        return draws

    def apply(self, images, draws, generator=None):
        """The steps, in the module's order, with the drawn parameters: uint8 in, uint8 out."""
        cfg, x = self.cfg, images.float()
        if "counter_zoom" in draws:
            x = zoom(x, draws["counter_zoom"], None, *draws["counter_shift"], fill=0.0)
        if "aspect" in draws:
            aspect = draws["aspect"]
            x = zoom(x, aspect.clamp(min=1), (1 / aspect).clamp(min=1))
        if "frame_zoom" in draws:
            fill = draws["frame_fill"] * medians(x)
            x = zoom(x, draws["frame_zoom"], None, *draws["frame_shift"], fill=fill)
            x = paint_band(x, draws["frame_band"], fill)
        if "view_zoom" in draws:
            median = medians(x)
            fill = draws["view_fill"] * median
            x = zoom(x, draws["view_zoom"], None, *draws["view_shift"], fill=fill)
            x = paint_band(x, draws["view_band"], median + draws["view_band_fill"] * (255 - median))
        if "gamma" in draws:
            x = levels(x, draws["black"], draws["white"], draws["gamma"])
        if "blur_sigma" in draws:
            sigma = draws["blur_sigma"]
            radius = math.ceil(3 * BLUR_SIGMA[1] * x.shape[-1] / 128)
            x = torch.where(_column(sigma > 0), blur(x, sigma.clamp(min=0.1), radius), x)
            x = add_noise(x, draws["noise_sd"], generator)
        if "jpeg_quality" in draws:
            x = jpeg(x, draws["jpeg_quality"])
        x = normalize_intensity(to_uint8(x), cfg.intensity_norm).float()
        if "degrees" in draws:
            x = affine(x, draws["degrees"], *draws["shift"], draws["scale"])
            x = exposure(x, draws["brightness"], draws["contrast"])
        if cfg.thorax_mask:
            x = x * thorax_ellipse(x.shape[-1], x.device)
        return to_uint8(x)
