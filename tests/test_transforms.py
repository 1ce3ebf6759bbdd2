"""The options that take the acquisition shortcuts away, each checked on a tiny image."""

import io
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

from pneumo_utils import TrainConfig
from pneumo_utils.data.augment import Augmentation
from pneumo_utils.data.batches import hold
from pneumo_utils.data.cache import decode_xray
from pneumo_utils.data.dataset import load_data
from pneumo_utils.data.stresses import FRAME_STRESS, STRESS, stressed, stressed_copy
from pneumo_utils.data.transforms import (
    add_noise,
    anisotropic_scale,
    band_mask,
    blur,
    evaluation_transform,
    jpeg,
    normalize_intensity,
    paint_band,
    zoom,
)
from pneumo_utils.splits import FRAME_VAL, STRESSED_VAL


def _box(size: int = 64, width: int = 20, height: int = 20) -> torch.Tensor:
    """A bright rectangle on a dark background, centred, as a (1, S, S) uint8 tensor."""
    image = torch.full((1, size, size), 40, dtype=torch.uint8)
    top, left = (size - height) // 2, (size - width) // 2
    image[0, top : top + height, left : left + width] = 220
    return image


def _box_aspect(image: torch.Tensor) -> float:
    bright = image[0] > 128
    rows, cols = bright.any(dim=1).sum().item(), bright.any(dim=0).sum().item()
    return cols / rows


def _augmented(image: torch.Tensor, n: int = 40, label: int = 0, seed: int = 0, **settings):
    """`n` training draws of `image` (1, S, S) under the TrainConfig `settings`, as (1, S, S)
    images."""
    augmentation = Augmentation(replace(TrainConfig(), **settings))
    batch = image[None].repeat(n, 1, 1, 1)
    labels = torch.full((n,), label)
    return list(augmentation(batch, labels, torch.Generator().manual_seed(seed)))


def _noisy(size: int = 64, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.normal(120, 40, (size, size)), 0, 255).astype(np.uint8)
    return torch.from_numpy(pixels)[None]


def test_anisotropic_scale_changes_the_aspect_and_keeps_the_shape():
    image = _box()
    wider, taller = anisotropic_scale(image, 1.5), anisotropic_scale(image, 1 / 1.5)
    assert wider.shape == taller.shape == image.shape
    assert _box_aspect(image) == pytest.approx(1.0)
    assert _box_aspect(wider) == pytest.approx(1.5, abs=0.1)
    assert _box_aspect(taller) == pytest.approx(1 / 1.5, abs=0.1)
    assert anisotropic_scale(image, 1.0).equal(image)


def test_aspect_jitter_draws_both_directions_within_its_range():
    aspects = [_box_aspect(image) for image in _augmented(_box(), aspect_jitter=0.4)]
    assert min(aspects) < 0.9 and max(aspects) > 1.1
    assert min(aspects) >= 1 / 1.4 - 0.1 and max(aspects) <= 1.4 + 0.1


def test_jpeg_recompression_changes_the_bytes_not_the_shape():
    image = _noisy()
    recompressed = jpeg(image, 30)
    assert recompressed.shape == image.shape and recompressed.dtype == torch.uint8
    assert not recompressed.equal(image)
    assert (recompressed.float() - image.float()).abs().mean() < 40  # still the same picture
    encoded = [io.BytesIO() for _ in range(2)]
    Image.fromarray(image[0].numpy()).save(encoded[0], "PNG")
    Image.fromarray(recompressed[0].numpy()).save(encoded[1], "PNG")
    assert encoded[0].getvalue() != encoded[1].getvalue()


def test_intensity_jitter_moves_black_and_white_points():
    image = torch.arange(256, dtype=torch.uint8).reshape(1, 16, 16)
    jittered = _augmented(image, 20, intensity_jitter=0.1)
    lowest = [j.min().item() for j in jittered]
    assert min(lowest) == 0 and max(lowest) > 0  # sometimes the floor is lifted, sometimes clipped
    assert len({j.float().mean().item() for j in jittered}) > 10


@pytest.mark.parametrize("mode", ["percentile", "equalize"])
def test_intensity_normalisation_removes_exposure_differences(mode):
    image = _noisy()
    dim = (image.float() * 0.5 + 20).to(torch.uint8)  # a darker, flatter exposure of the same view
    a, b = normalize_intensity(image, mode), normalize_intensity(dim, mode)
    assert (image.float() - dim.float()).abs().mean() > 30
    assert (a.float() - b.float()).abs().mean() < 6
    assert a.min() <= 2 and a.max() >= 253


def test_normalisation_leaves_a_flat_image_alone():
    flat = torch.full((1, 8, 8), 77, dtype=torch.uint8)
    assert normalize_intensity(flat, "percentile").equal(flat)
    assert normalize_intensity(flat, "none").equal(flat)


def test_resize_pad_and_crop_keep_the_aspect_of_an_original(tmp_path):
    wide = np.full((40, 80), 200, dtype=np.uint8)  # 2:1, all bright
    Image.fromarray(wide).save(tmp_path / "wide.png")
    squashed = decode_xray(tmp_path / "wide.png", 32, "squash")
    padded = decode_xray(tmp_path / "wide.png", 32, "pad")
    cropped = decode_xray(tmp_path / "wide.png", 32, "crop")
    assert squashed.shape == padded.shape == cropped.shape == (32, 32)
    assert (squashed > 100).all() and (cropped > 100).all()
    bright_rows = (padded > 100).any(axis=1).sum()
    assert bright_rows == 16  # the 2:1 picture fills half the height; black bars above and below


def _each_label(stress, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`image` stressed as a NORMAL and as a PNEUMONIA file."""
    normal, pneumonia = stressed(stress, [image, image], ["a.jpeg", "b.jpeg"], 0, [0, 1])
    return normal, pneumonia


def test_stress_turns_the_confounds_against_the_label():
    image = _box()[0].numpy()
    image[0, 0] = 0  # one pure-black pixel
    normal, pneumonia = _each_label(STRESS, image)
    box = _box()
    assert _box_aspect(torch.from_numpy(normal)[None]) < 0.9 * _box_aspect(box)
    assert _box_aspect(torch.from_numpy(pneumonia)[None]) > 1.1 * _box_aspect(box)
    assert normal.min() > 3  # NORMAL loses its pure black


def test_stressed_copy_is_deterministic_per_seed_and_name():
    images = np.stack([_noisy(seed=i)[0].numpy() for i in range(4)])
    labels, names = np.array([0, 1, 0, 1]), [f"f{i}.jpeg" for i in range(4)]
    first = stressed_copy(images, labels, names, seed=0)
    assert np.array_equal(first, stressed_copy(images, labels, names, seed=0))
    assert not np.array_equal(first, stressed_copy(images, labels, names, seed=1))
    order = [2, 0, 3, 1]
    reordered = stressed_copy(images[order], labels[order], [names[i] for i in order], seed=0)
    assert np.array_equal(reordered, first[order])


def test_the_held_stressed_validation_set_is_the_validation_images(tiny_data, cache_dir):
    data = load_data(tiny_data, 32, cache_dir=cache_dir, progress=False)
    cpu = torch.device("cpu")
    val, stressed = hold(data, "val", cpu), hold(data, STRESSED_VAL, cpu)
    (clean_images, clean_labels), (stressed_images, stressed_labels) = (
        (val.images, val.labels),
        (stressed.images, stressed.labels),
    )
    assert clean_labels.equal(stressed_labels)
    assert clean_images.shape == stressed_images.shape
    assert not clean_images.equal(stressed_images)


def test_the_training_steps_keep_the_shape_and_evaluation_only_normalises():
    assert not Augmentation(TrainConfig()).enabled
    assert evaluation_transform(TrainConfig()) is None
    config = dict(aspect_jitter=0.3, intensity_jitter=0.1, jpeg_quality_min=50,
                  intensity_norm="percentile", augment=True)  # fmt: skip
    out = _augmented(_noisy(), 4, **config)
    assert all(o.shape == (1, 64, 64) and o.dtype == torch.uint8 for o in out)
    normalise = evaluation_transform(replace(TrainConfig(), **config))
    assert normalise(_noisy()).equal(normalize_intensity(_noisy(), "percentile"))


# ----------------------------------------------------------------------------- the frame


def _box_width(image: torch.Tensor) -> int:
    return int((image[0] > 128).any(dim=0).sum())


def test_reframe_tightens_or_widens_the_field_of_view():
    image = _box(64, 20, 20)
    tighter, wider = zoom(image, 1.25), zoom(image, 0.75, fill=0)
    assert tighter.shape == wider.shape == image.shape
    assert _box_width(tighter) == pytest.approx(25, abs=1)
    assert _box_width(wider) == pytest.approx(15, abs=1)
    assert wider[0, :8].max() == 0 and wider[0, -8:].max() == 0  # a black margin
    assert zoom(image, 1.0).equal(image)
    moved = zoom(image, 0.75, fill=0, shift=(1, 0))
    assert moved[0, :, -1].max() > 0 and moved[0, :, 0].max() == 0  # pushed to the right edge


def test_paint_band_paints_the_outer_band_only():
    image = _noisy()
    out = paint_band(image, 0.1, 99)
    band = band_mask(64, 64, 0.1)
    assert (out[0][band] == 99).all()
    assert out[0][~band].equal(image[0][~band])


def test_counter_framing_turns_the_frame_against_the_label():
    box = _box(64, 30, 30)
    normal = _augmented(box, 10, label=0, counter_framing=1.0)
    pneumonia = _augmented(box, 10, label=1, counter_framing=1.0)
    assert all(_box_width(image) > 30 for image in normal)  # NORMAL framed tighter
    assert all(_box_width(image) < 30 for image in pneumonia)  # PNEUMONIA shrunk ...
    assert all((image[0][band_mask(64, 64, 0.02)] == 0).any() for image in pneumonia)  # black


def test_random_framing_goes_both_ways_for_every_class():
    widths = [_box_width(image) for image in _augmented(_box(64, 30, 30), frame_jitter=0.35)]
    assert min(widths) < 28 and max(widths) > 32
    assert min(widths) >= 30 / 1.35 - 2 and max(widths) <= 30 * 1.35 + 2


def test_blur_softens_and_noise_roughens():
    image = _box(64, 30, 30)
    edges = lambda x: (x[0, :, 1:].float() - x[0, :, :-1].float()).abs().max()  # noqa: E731
    assert edges(blur(image, 1.5)) < 0.6 * edges(image)
    noisy = add_noise(torch.full((1, 64, 64), 128, dtype=torch.uint8), 0.04)
    assert 5 < noisy.float().std() < 15
    changed = [not out.equal(image) for out in _augmented(image, 40, blur_noise=0.5)]
    assert 20 < sum(changed) < 40  # each with probability 0.5: a change 3 times in 4


def test_frame_stress_frames_normal_tight_and_pneumonia_loose():
    image = _box(64, 30, 30)[0].numpy()
    normal, pneumonia = _each_label(FRAME_STRESS, image)
    assert _box_width(torch.from_numpy(normal)[None]) > 30 * 1.1
    loose = torch.from_numpy(pneumonia)[None]
    assert _box_width(loose) < 30 * 0.9 and (pneumonia == 0).mean() > (image == 0).mean()


def test_the_held_frame_stressed_set_has_the_validation_labels(tiny_data, cache_dir):
    data = load_data(tiny_data, 32, cache_dir=cache_dir, progress=False)
    cpu = torch.device("cpu")
    stressed, framed = hold(data, STRESSED_VAL, cpu), hold(data, FRAME_VAL, cpu)
    (stressed_images, stressed_labels), (framed_images, framed_labels) = (
        (stressed.images, stressed.labels),
        (framed.images, framed.labels),
    )
    assert stressed_labels.equal(framed_labels)
    assert not stressed_images.equal(framed_images)
    again = load_data(tiny_data, 32, cache_dir=cache_dir, progress=False)
    assert np.array_equal(data.frame_val, again.frame_val)  # deterministic
