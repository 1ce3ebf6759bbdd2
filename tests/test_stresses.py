"""The stressed validation copies (data/stresses.py), built from the training augmentation's
batched operations: each stress against its per-image definition (data/transforms.py) with the
same drawn parameters, and a batch against the same images one at a time."""

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from pneumo_utils.data import stresses, transforms
from pneumo_utils.data.stresses import FRAME_STRESS, REFRAMINGS, STRESS, VIEW_STRESSES, stressed
from pneumo_utils.splits import BAND_VAL, FAR_TIGHTER_VAL, LOOSER_VAL, TIGHTER_VAL

from .test_augment import GEOMETRY_MEAN_TOLERANCE, _chest

# JPEG re-encodes the small differences of the geometry (test_augment.py) into its blocks.
JPEG_MEAN_TOLERANCE = 3.5
NAMES = [f"NORMAL/f{i}.jpeg" for i in range(6)]


def _draws(stress, images, labels, seed=0):
    return [stress.draw(stresses._rng(seed, name, stress.stream), label, image)
            for image, label, name in zip(images, labels, NAMES, strict=False)]  # fmt: skip


def _smooth_chest(size=96, seed=0) -> np.ndarray:
    """A chest without pixel noise: the per-image definitions place windows on whole pixels and
    the warp does not, so drawn windows fall up to half a pixel apart, which pixel noise would
    turn into a large difference that says nothing about the operation."""
    return transforms.blur(_chest(size, seed), 1.0)[0].numpy()


def _mean_gap(a, b) -> float:
    return float(np.abs(np.asarray(a, float) - np.asarray(b, float)).mean())


def _tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(image))[None]


def _body_in_margin(size=96, seed=0) -> np.ndarray:
    square = np.zeros((size, size), np.uint8)
    square[14:86, 20:78] = _chest(size, seed)[0, 14:86, 20:78].clamp(min=40).numpy()
    return square


@pytest.mark.parametrize("label", [0, 1])
def test_the_stress_is_its_definition(label):
    image = _chest(96)[0].numpy()
    (draw,) = _draws(STRESS, [image], [label])
    got = next(stressed(STRESS, [image], NAMES[:1], 0, [label]))
    # anisotropic_scale(f) makes the anatomy f times wider; a factor below 1, taller.
    aspect = draw["zoom_x"] if label else 1 / draw["zoom_y"]
    expected = transforms.anisotropic_scale(_tensor(image), aspect)
    expected = transforms.levels(expected, black=draw["black"], white=1.0)
    expected = transforms.jpeg(expected, stresses.STRESS_JPEG_QUALITY)[0]
    assert _mean_gap(got, expected) <= JPEG_MEAN_TOLERANCE


@pytest.mark.parametrize("label", [0, 1])
def test_the_frame_stress_is_its_definition(label):
    images = [_smooth_chest(96, seed) for seed in range(6)]
    for image, draw, got in zip(images, _draws(FRAME_STRESS, images, [label] * 6),
                                stressed(FRAME_STRESS, images, NAMES, 0, [label] * 6),
                                strict=True):  # fmt: skip
        shift = (draw["shift_x"], draw["shift_y"])
        expected = transforms.zoom(_tensor(image), draw["zoom"], 0, shift)
        if draw["band"]:
            expected = transforms.paint_band(expected, draw["band"], transforms.median(expected))
        assert _mean_gap(got, expected[0]) <= GEOMETRY_MEAN_TOLERANCE


@pytest.mark.parametrize("reframing", REFRAMINGS, ids=lambda stress: stress.name)
def test_each_reframing_is_its_definition(reframing):
    image = _smooth_chest(96)[:, 8:88]  # as acquired: not square
    (draw,) = _draws(reframing, [image], [0])
    got = next(stressed(reframing, [image], NAMES[:1], 0))
    if reframing.name == "change_border":
        median = transforms.median(_tensor(image))
        fill = median + draw["fill"] * (255 - median)
        expected = transforms.paint_band(_tensor(image), draw["band"], fill)
        np.testing.assert_array_equal(got, expected[0])
    else:
        shift = (draw["shift_x"], draw["shift_y"])
        expected = transforms.zoom(_tensor(image), draw["zoom"], 0, shift)
        assert _mean_gap(got, expected[0]) <= GEOMETRY_MEAN_TOLERANCE


def test_the_tighter_view_is_the_central_window_of_the_body_box_enlarged():
    square = _body_in_margin()
    stress = VIEW_STRESSES[TIGHTER_VAL][0]
    (draw,) = _draws(stress, [square], [0])
    assert (draw["top"], draw["bottom"], draw["left"], draw["right"]) == (14, 86, 20, 78)
    box = _tensor(square)[:, 14:86, 20:78]
    window = transforms.zoom(box, draw["zoom"], 0, (draw["shift_x"], draw["shift_y"]))
    expected = v2.functional.resize(window, [96, 96], antialias=True)[0]
    got = next(stressed(stress, [square], NAMES[:1], 0))
    assert _mean_gap(got, expected) <= GEOMETRY_MEAN_TOLERANCE


def test_the_band_inside_the_body_is_its_definition():
    square = _body_in_margin()
    stress = VIEW_STRESSES[BAND_VAL][0]
    (draw,) = _draws(stress, [square], [0])
    box = _tensor(square)[:, 14:86, 20:78]
    median = transforms.median(box)
    expected = square.copy()
    expected[14:86, 20:78] = transforms.paint_band(
        box, draw["band"], median + draw["fill"] * (255 - median)
    )[0].numpy()
    np.testing.assert_array_equal(next(stressed(stress, [square], NAMES[:1], 0)), expected)


@pytest.mark.parametrize("split", [TIGHTER_VAL, BAND_VAL, LOOSER_VAL, FAR_TIGHTER_VAL])
def test_a_batch_is_its_images_one_at_a_time(split):
    """Each image's parameters are its own: batched, and one by one, the same pixels."""
    stress = VIEW_STRESSES[split][0]
    squares = np.stack([_body_in_margin(seed=seed) for seed in range(6)])
    together = np.stack(list(stressed(stress, squares, NAMES, 0)))
    alone = np.stack([next(stressed(stress, [square], [name], 0))
                      for square, name in zip(squares, NAMES, strict=True)])  # fmt: skip
    np.testing.assert_array_equal(together, alone)
    assert len({image.tobytes() for image in together}) == len(NAMES)


def test_each_stress_draws_from_a_stream_of_its_own():
    every = [STRESS, FRAME_STRESS, *REFRAMINGS, *(stress for stress, _ in VIEW_STRESSES.values())]
    assert len({stress.stream for stress in every}) == len(every)
    assert len({stress.name for stress in every}) == len(every)
