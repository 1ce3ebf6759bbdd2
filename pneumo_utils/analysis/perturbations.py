"""The robustness suite's perturbations: each family of changes other hospitals' radiographs
show (framing, exposure, sharpness, noise, compression, rotation), the anatomy check and the
occlusion pair, at strengths fixed before any result was read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms import v2

from pneumo_utils.data.transforms import (
    add_noise,
    band_mask,
    blur,
    jpeg,
    levels,
    median,
    paint_band,
    zoom,
)

# How much of each side the occlusion pair and the border family treat as "the frame".
FRAME_BAND = 0.15


@dataclass(frozen=True)
class Perturbation:
    """A family of changes at increasing strengths; `apply(image, strength, generator)`."""

    family: str
    kind: str  # natural (an acquisition change), anatomy (changes the anatomy), occlusion
    what: str
    unit: str  # the strength's axis label, with its unit
    strengths: tuple[float, ...]
    apply: Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]

    @property
    def middle(self) -> float:
        return self.strengths[len(self.strengths) // 2]


def _translate(image: torch.Tensor, fraction: float) -> torch.Tensor:
    shift = round(fraction * image.shape[-1])
    return v2.functional.affine(image, angle=0.0, translate=[shift, shift], scale=1.0,
                                shear=[0.0, 0.0], fill=0)  # fmt: skip


def _cover_lungs(image: torch.Tensor, band: float) -> torch.Tensor:
    """Everything but the outer `band` of the frame painted the image's median grey."""
    out = image.clone()
    out[:, ~band_mask(image.shape[1], image.shape[2], band)] = round(median(image))
    return out


def _blur(image, sigma, _):
    return blur(image, sigma * image.shape[-1] / 128)


SUITE: tuple[Perturbation, ...] = (
    Perturbation("zoom in", "natural", "field of view tighter: the central 1/s enlarged",
                 "enlargement (×)", (1.1, 1.25, 1.4), lambda x, s, _: zoom(x, s)),
    Perturbation("zoom out", "natural", "field of view wider: shrunk to s of the side, black "
                 "margin", "size (share of side)", (0.9, 0.8, 0.7),
                 lambda x, s, _: zoom(x, s, fill=0)),
    Perturbation("translation", "natural", "shifted right and down by s of the side, black "
                 "fill", "shift (share of side)", (0.04, 0.08, 0.12),
                 lambda x, s, _: _translate(x, s)),
    Perturbation("border", "natural", "outer band of s of each side replaced by the median "
                 "grey", "band (share of side)", (0.05, 0.1, 0.15),
                 lambda x, s, _: paint_band(x, s, median(x))),
    Perturbation("gamma", "natural", "gamma s (darker mid-tones)", "gamma", (1.25, 1.5, 2.0),
                 lambda x, s, _: v2.functional.adjust_gamma(x, s)),
    Perturbation("contrast", "natural", "contrast scaled by s around the mean", "contrast (×)",
                 (0.8, 0.6, 0.4), lambda x, s, _: v2.functional.adjust_contrast(x, s)),
    Perturbation("black/white points", "natural", "black lifted and white lowered by s of the "
                 "range (a washed-out window)", "levels moved (share of range)", (0.05, 0.1, 0.2),
                 lambda x, s, _: levels(x, -s, 1 + s)),
    Perturbation("blur", "natural", "Gaussian blur, sigma s px at 128 px", "sigma (px at 128 px)",
                 (0.5, 1.0, 2.0), _blur),
    Perturbation("noise", "natural", "Gaussian noise, sd s of the grey range",
                 "sd (share of grey range)", (0.02, 0.04, 0.08),
                 lambda x, s, g: add_noise(x, s, g)),
    Perturbation("jpeg", "natural", "re-encoded as JPEG at quality s", "JPEG quality (1 to 100)",
                 (50, 30, 15), lambda x, s, _: jpeg(x, int(s))),
    Perturbation("rotation", "natural", "rotated by s degrees, black fill", "angle (degrees)",
                 (5, 10, 15), lambda x, s, _: v2.functional.rotate(x, s, fill=0)),
    Perturbation("horizontal flip", "anatomy", "mirrored left to right (the heart on the "
                 "right)", "", (1,), lambda x, s, _: v2.functional.horizontal_flip(x)),
    Perturbation("lungs covered", "occlusion", "only the outer band of s of each side kept, "
                 "the rest median grey", "band (share of side)", (FRAME_BAND,),
                 lambda x, s, _: _cover_lungs(x, s)),
    Perturbation("frame covered", "occlusion", "the outer band of s of each side median grey, "
                 "the lungs kept", "band (share of side)", (FRAME_BAND,),
                 lambda x, s, _: paint_band(x, s, median(x))),
)  # fmt: skip
# What each family's strength measures: the robustness figure's axis labels and tables' units.
STRENGTH_UNITS = {perturbation.family: perturbation.unit for perturbation in SUITE}


def perturbed_copy(
    images, perturbation: Perturbation, strength: float, pipeline=None
) -> np.ndarray:
    """Every image changed by one family at one strength, then, with `pipeline`
    (XrayData.input_pipeline), made the model's input square; noise drawn per image index, so
    the copy depends on nothing but the images."""
    changed = []
    for i, image in enumerate(images):
        generator = torch.Generator().manual_seed(i)
        tensor = torch.from_numpy(np.array(image))[None]  # a copy: decoded files are read-only
        pixels = perturbation.apply(tensor, strength, generator)[0].numpy()
        changed.append(pipeline(pixels)[0] if pipeline is not None else pixels)
    return np.stack(changed)
