"""The stressed validation sets, built from the carved validation images with the operations of
transforms.py: the stressed set (the training set's acquisition confounds turned against each
label), the frame-stressed set (the frame turned too) and the reframed set (every image
tighter, looser and with a changed border, whatever its class), and the view blocks (a
tighter view into the body's box and a band inside it, on the model's input square, and a
looser view as acquired). Each image's draws depend on the seed and its file name alone."""

from __future__ import annotations

import zlib

import numpy as np
import torch
from torchvision.transforms import v2

from pneumo_utils.data.body import body_box
from pneumo_utils.data.transforms import (
    anisotropic_scale,
    median_grey,
    recompress_jpeg,
    reframe,
    replace_border,
    set_levels,
)
from pneumo_utils.splits import BAND_VAL, LOOSER_VAL, TIGHTER_VAL, VIEW_VAL

# The stressed validation set: NORMAL images are given the look of the training PNEUMONIA
# files (a wider original squashed harder, no pure black) and PNEUMONIA images the look of
# the training NORMAL files (a narrower original, clipped blacks); all re-saved at quality 75.
STRESS_ASPECT = (1.15, 1.4)
STRESS_BLACK_LIFT = (0.03, 0.08)
STRESS_BLACK_CLIP = (0.02, 0.06)
STRESS_JPEG_QUALITY = 75
# The frame-stressed validation set: the stressed images again, with the frame turned against
# the label as well. Training NORMAL files show a smaller body in more black margin; so NORMAL
# images get a tighter field of view (the central 71-87% enlarged) and, one in two, their outer
# band replaced by their median grey; PNEUMONIA images are shrunk into a black margin.
FRAME_STRESS_ZOOM_IN = (1.15, 1.4)
FRAME_STRESS_ZOOM_OUT = (0.72, 0.88)
FRAME_STRESS_BORDER = (0.06, 0.14)
# The reframed validation set (docs/frame.md): every validation image, whatever its class,
# once tighter (the central 1/s of the frame enlarged, off-centre), once looser (shrunk to s of
# the side into a black margin, off-centre) and once with its outer band (b of each side)
# painted a grey between its median and white, as a shutter or a burnt-in border would be; on
# the image as acquired, before the input pipeline. No training lever draws from these: framing
# variety fills between black and the median, after the pipeline.
REFRAME_TIGHTER = (1.12, 1.3)
REFRAME_LOOSER = (0.75, 0.9)
REFRAME_BORDER = (0.04, 0.12)


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


def frame_stress(image: np.ndarray, label: int, rng: np.random.Generator) -> np.ndarray:
    """One (stressed) validation image with the frame turned against its label as well."""
    tensor = torch.from_numpy(np.ascontiguousarray(image))[None]
    shift = (rng.uniform(-1, 1), rng.uniform(-1, 1))
    if label == 0:  # NORMAL: a tighter field of view, and one in two a grey outer band
        tensor = reframe(tensor, rng.uniform(*FRAME_STRESS_ZOOM_IN), shift=shift)
        if rng.uniform() < 0.5:
            tensor = replace_border(tensor, rng.uniform(*FRAME_STRESS_BORDER), median_grey(tensor))
    else:  # PNEUMONIA: a smaller body in a black margin, as training NORMAL files show
        tensor = reframe(tensor, rng.uniform(*FRAME_STRESS_ZOOM_OUT), fill=0, shift=shift)
    return tensor[0].numpy()


def reframe_tighter(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    shift = (rng.uniform(-1, 1), rng.uniform(-1, 1))
    return reframe(image, rng.uniform(*REFRAME_TIGHTER), shift=shift)


def reframe_looser(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    shift = (rng.uniform(-1, 1), rng.uniform(-1, 1))
    return reframe(image, rng.uniform(*REFRAME_LOOSER), fill=0, shift=shift)


def change_border(image: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    fill = rng.uniform(median_grey(image), 255)
    return replace_border(image, rng.uniform(*REFRAME_BORDER), fill)


# The reframed validation set's blocks, in order.
REFRAMINGS = (reframe_tighter, reframe_looser, change_border)


def reframe_variant(grey: np.ndarray, reframing, name: str, seed: int) -> np.ndarray:
    """An acquired grey image reframed one way, its draws from the seed, the file name and the
    reframing alone (not the order, not the machine, not the label)."""
    return _one_way(grey, reframing, name, seed, 10 + REFRAMINGS.index(reframing))


def _one_way(grey: np.ndarray, change, name: str, seed: int, stream: int) -> np.ndarray:
    rng = np.random.default_rng([seed, zlib.crc32(str(name).encode()), stream])
    tensor = torch.from_numpy(np.array(grey))[None]  # a writable copy: decoded files are not
    return change(tensor, rng)[0].numpy()


# The view blocks (docs/frame.md, round 4): stresses as strong as the test set's, acting on the
# anatomy. The reframed set's tighter block (1.12-1.3 of the acquired frame) is undone by the
# crop to the body, and test images' bodies already fill their frame, so the tighter view is
# taken inside the body's box of the model's input square: the central 1/s of the box, s from
# VIEW_ZOOM_IN (mean 1.35, above the robustness suite's middle zoom-in of 1.25), off-centre,
# enlarged to the whole square. The band is painted inside the body's box (b of each side of
# the box), a grey between the box's median and white, as a shutter or a burnt-in border
# would be. The looser view is made as the reframed set's, as acquired, with draws of its own;
# after a crop to the body it comes close to the clean image (the crop takes the margin back),
# which is what it checks: that a wider view stays harmless. A body's box that is not square
# is enlarged to the square, so without the crop the tighter view also squashes the anatomy,
# as the pipeline's own squash does.
VIEW_ZOOM_IN = (1.2, 1.5)
VIEW_BAND = (0.06, 0.14)


def _body_region(square: torch.Tensor) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of the body in a model input square; the whole square when
    no body is found (body.body_box's rule)."""
    box = body_box(square[0].numpy())
    return box if box is not None else (0, square.shape[1], 0, square.shape[2])


def tighter_view(square: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """The central 1/s of the body's box, off-centre, enlarged to the whole square."""
    top, bottom, left, right = _body_region(square)
    shift = (rng.uniform(-1, 1), rng.uniform(-1, 1))
    zoomed = reframe(square[:, top:bottom, left:right], rng.uniform(*VIEW_ZOOM_IN), shift=shift)
    return v2.functional.resize(zoomed, list(square.shape[1:]), antialias=True)


def band_inside_body(square: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """The outer band of the body's box painted a grey between the box's median and white."""
    top, bottom, left, right = _body_region(square)
    box = square[:, top:bottom, left:right]
    fill = rng.uniform(median_grey(box), 255)
    out = square.clone()
    out[:, top:bottom, left:right] = replace_border(box, rng.uniform(*VIEW_BAND), fill)
    return out


# Each view block: its split, the stress, and whether it acts on the image as acquired (then
# the input pipeline follows) or on the model's input square (after the pipeline).
VIEW_STRESSES = {
    TIGHTER_VAL: (tighter_view, "square"),
    BAND_VAL: (band_inside_body, "square"),
    LOOSER_VAL: (reframe_looser, "acquired"),
}


def view_variant(grey: np.ndarray, split: str, name: str, seed: int) -> np.ndarray:
    """An image stressed the way of view block `split`: draws from the seed, the file name and
    the block alone, the same for both classes."""
    return _one_way(grey, VIEW_STRESSES[split][0], name, seed, 20 + VIEW_VAL.index(split))


def _per_file(images, labels, names, seed: int, stream: int, function) -> np.ndarray:
    """`function(image, label, rng)` over a set, each image with a generator drawn from the
    seed, the file name and a stream number, so the result depends on nothing else (not the
    order, not the machine)."""
    out = np.empty_like(images)
    for i, (image, label, name) in enumerate(zip(images, labels, names, strict=True)):
        key = [seed, zlib.crc32(str(name).encode())] + ([stream] if stream else [])
        out[i] = function(image, int(label), np.random.default_rng(key))
    return out


def stressed_copy(images: np.ndarray, labels: np.ndarray, names, seed: int) -> np.ndarray:
    """The stressed validation set: every image through `stress`."""
    return _per_file(images, labels, names, seed, 0, stress)


def frame_stressed_copy(stressed: np.ndarray, labels: np.ndarray, names, seed: int) -> np.ndarray:
    """The frame-stressed validation set: every stressed image through `frame_stress`."""
    return _per_file(stressed, labels, names, seed, 1, frame_stress)
