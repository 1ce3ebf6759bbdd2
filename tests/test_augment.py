"""The batched augmentation on the training device (data/augment.py) and the splits held there
(data/batches.py): each operation against the per-image definition it replaces, with the same
parameters; the ranges of the draws; reproducibility; evaluation images unchanged."""

from dataclasses import replace

import numpy as np
import pytest
import torch
from torchvision.transforms import v2

from pneumo_utils import TrainConfig
from pneumo_utils.data import augment, transforms
from pneumo_utils.data.augment import Augmentation
from pneumo_utils.data.batches import TrainingBatches, hold, hold_for_evaluation
from pneumo_utils.data.dataset import load_data, split_frame
from pneumo_utils.runtime.distributed import World
from pneumo_utils.splits import EVALUATED_SPLITS, VALIDATION_COPIES

SIZE = 128
# Geometry: the per-image definitions crop and place whole pixels and shrink with antialiasing,
# the batched warp samples continuously. With windows that fall on whole pixels, on a textured
# image, the two differ by at most this much on average (grey levels of 255); elsewhere they
# differ by up to half a pixel more. Everything else agrees to a grey level or two.
GEOMETRY_MEAN_TOLERANCE = 2.5


def _chest(size: int = SIZE, seed: int = 0) -> torch.Tensor:
    """A bright body on a dark background with rib-like texture and noise, (1, S, S) uint8."""
    rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    body = torch.exp(-(((cols - 0.45 * size) / (0.2 * size)) ** 2)
                     - ((rows - 0.5 * size) / (0.3 * size)) ** 2)  # fmt: skip
    noise = torch.rand(size, size, generator=torch.Generator().manual_seed(seed))
    image = 40 + 150 * body + 20 * torch.sin(cols / 3.0) + 20 * noise
    return image.clamp(0, 255).round().to(torch.uint8)[None]


def _batched(op, image: torch.Tensor, *params) -> torch.Tensor:
    """`op` on a batch of one, per-image parameters as 1-element tensors; uint8 (1, S, S)."""
    values = [torch.tensor([float(p)]) for p in params]
    return augment.to_uint8(op(image[None].float(), *values))[0]


def _differences(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    gap = (a.float() - b.float()).abs()
    return gap.mean().item(), gap.max().item()


@pytest.mark.parametrize(
    # windows of 100, 64, 96, 80 and 112 pixels of 128, placed on whole pixels
    "factor, shift, fill", [(1.28, (0.5, -0.5), 0), (2, (-1, 1), 0), (0.75, (0.25, -1), 60),
                            (0.625, (0, -0.5), 0), (0.875, (1, 1), 90)]
)  # fmt: skip
def test_zoom_is_its_definition(factor, shift, fill):
    image = _chest()
    expected = transforms.zoom(image, factor, fill, shift)
    got = _batched(lambda x, f, sx, sy, g: augment.zoom(x, f, None, sx, sy, g),
                   image, factor, *shift, fill)  # fmt: skip
    mean, _ = _differences(expected, got)
    assert mean <= GEOMETRY_MEAN_TOLERANCE
    unchanged = _batched(augment.zoom, image, 1.0)
    assert _differences(transforms.zoom(image, 1.0), unchanged) == (0, 0)


@pytest.mark.parametrize("factor", [1.25, 0.8])  # stretched to 160 px: whole pixels
def test_aspect_is_anisotropic_scale(factor):
    image = _chest()
    expected = transforms.anisotropic_scale(image, factor)
    got = _batched(augment.zoom, image, max(factor, 1), max(1 / factor, 1))
    assert _differences(expected, got)[0] <= GEOMETRY_MEAN_TOLERANCE


@pytest.mark.parametrize(
    "degrees, shift_x, shift_y, scale", [(8, 0.04, -0.03, 1.05), (-9.5, -0.05, 0.02, 0.92)]
)
def test_affine_is_torchvisions_bilinear_affine(degrees, shift_x, shift_y, scale):
    image = _chest()
    expected = v2.functional.affine(
        image, angle=degrees, translate=[shift_x * SIZE, shift_y * SIZE], scale=scale,
        shear=[0.0, 0.0], interpolation=v2.InterpolationMode.BILINEAR,
    )  # fmt: skip
    got = _batched(augment.affine, image, degrees, shift_x, shift_y, scale)
    assert _differences(expected, got)[1] <= 1


def test_levels_band_blur_jpeg_and_exposure_are_their_definitions():
    image = _chest()
    assert _batched(augment.levels, image, -0.05, 1.08, 1.3).equal(
        transforms.levels(image, -0.05, 1.08, 1.3)
    )
    assert _batched(augment.paint_band, image, 0.1, 200).equal(
        transforms.paint_band(image, 0.1, 200)
    )
    assert _batched(augment.paint_band, image, 0.0, 200).equal(image)  # no band at 0
    for sigma in (0.5, 1.2):  # one kernel for the batch: wider than the per-image one
        batch = image[None].float().repeat(2, 1, 1, 1)
        got = augment.to_uint8(augment.blur(batch, torch.tensor([sigma, 2.0]), radius=6))[0]
        assert _differences(transforms.blur(image, sigma), got)[1] <= 1
    got = augment.jpeg(image[None].float(), torch.tensor([40]))[0]
    assert got.equal(transforms.jpeg(image, 40).float())
    exposed = v2.functional.adjust_contrast(v2.functional.adjust_brightness(image, 1.15), 0.85)
    assert _differences(exposed, _batched(augment.exposure, image, 1.15, 0.85))[1] <= 2


def test_noise_has_the_drawn_spread_per_image():
    grey = torch.full((2, 1, 64, 64), 128.0)
    noisy = augment.add_noise(grey, torch.tensor([0.0, 0.04]), torch.Generator().manual_seed(0))
    assert noisy[0].equal(grey[0])
    assert noisy[1].std().item() == pytest.approx(0.04 * 255, rel=0.1)


@pytest.mark.parametrize("mode", ["percentile", "percentile-centre", "equalize", "none"])
def test_a_batch_is_normalised_image_by_image(mode):
    images = torch.stack([_chest(seed=s) // (s + 1) for s in range(3)])
    images[2] = 77  # a flat image is left as it is
    batch = transforms.normalize_intensity(images, mode)
    for image, normalised in zip(images, batch, strict=True):
        assert normalised.equal(transforms.normalize_intensity(image, mode))


def _full_config(**changes) -> TrainConfig:
    """Every training step on: the ranges of every draw are tested at once."""
    settings = dict(counter_framing=0.5, aspect_jitter=0.3, frame_jitter=0.35, view_jitter=0.5,
                    intensity_jitter=0.1, blur_noise=0.5, jpeg_quality_min=50,
                    intensity_norm="percentile", augment=True, thorax_mask=True)  # fmt: skip
    return replace(TrainConfig(image_size=64), **{**settings, **changes})


def test_the_draws_stay_in_their_ranges():
    n = 4000
    images = _chest(64)[None].repeat(n, 1, 1, 1)
    labels = torch.arange(n) % 2
    draws = Augmentation(_full_config()).draw(images, labels, torch.Generator().manual_seed(0))
    counter = draws["counter_zoom"]
    normal, pneumonia = counter[labels == 0], counter[labels == 1]
    assert ((normal == 1) | ((normal >= 1.1) & (normal <= 1.5))).all()  # NORMAL: tighter
    assert ((pneumonia == 1) | ((pneumonia >= 0.65) & (pneumonia <= 0.92))).all()  # looser
    assert (counter == 1).float().mean() == pytest.approx(0.5, abs=0.05)
    assert draws["aspect"].min() >= 1 / 1.3 and draws["aspect"].max() <= 1.3
    assert draws["view_zoom"].min() >= 1 / 1.1 and draws["view_zoom"].max() <= 1.5
    assert draws["view_zoom"].min() < 0.95 and draws["view_zoom"].max() > 1.45
    assert (draws["view_band"] == 0).float().mean() == pytest.approx(0.5, abs=0.05)
    assert draws["view_band"].max() <= transforms.VIEW_JITTER_BAND
    for share in ("view_fill", "view_band_fill", "frame_fill"):  # of the way to the median
        assert draws[share].min() >= 0 and draws[share].max() <= 1
    assert draws["frame_band"].max() <= 0.35 / 2
    assert draws["black"].abs().max() <= 0.1 and (draws["white"] - 1).abs().max() <= 0.1
    assert draws["gamma"].log().abs().max() <= 0.2
    blurred = draws["blur_sigma"][draws["blur_sigma"] > 0]
    assert blurred.min() >= 0.3 * 64 / 128 and blurred.max() <= 1.5 * 64 / 128
    assert draws["noise_sd"].max() <= augment.NOISE_SD
    quality = draws["jpeg_quality"]
    assert quality.min() == 50 and quality.max() == augment.JPEG_QUALITY_MAX
    assert draws["degrees"].abs().max() <= 10 and draws["shift"].abs().max() <= 0.05
    assert draws["scale"].min() >= 0.9 and draws["scale"].max() <= 1.1
    for factor in (draws["brightness"], draws["contrast"]):
        assert factor.min() >= 0.8 and factor.max() <= 1.2


def test_the_view_fills_with_the_median_of_the_image_it_reframes():
    """After counter-framing has shrunk a PNEUMONIA image into black, the view's margin grey is
    drawn below that image's median, not the original's (as RandomView took it)."""
    image = _chest(64)[None]
    augmentation = Augmentation(_full_config(augment=False, thorax_mask=False, blur_noise=0,
                                             jpeg_quality_min=None, intensity_norm="none",
                                             intensity_jitter=0, aspect_jitter=0,
                                             frame_jitter=0))  # fmt: skip
    one = torch.ones(1)
    draws = dict(counter_zoom=0.65 * one, counter_shift=torch.zeros(2, 1), view_zoom=one / 1.1,
                 view_fill=one, view_shift=torch.zeros(2, 1), view_band=0 * one,
                 view_band_fill=one)  # fmt: skip
    out = augmentation.apply(image, draws)[0]
    shrunk = transforms.zoom(image[0], 0.65, 0)
    assert out[0, 0, 0].item() == pytest.approx(transforms.median(shrunk), abs=1)
    assert transforms.median(shrunk) < transforms.median(image[0]) - 10


@pytest.mark.parametrize("factor", [0.65, 0.8])
def test_a_shrunk_picture_is_antialiased_as_by_resizing(factor):
    """Pixel noise shrunk: the batched zoom smooths it about as much as the per-image
    definition's antialiased resize (within 25%; bilinear sampling alone leaves 77% more
    texture at 0.65), so a shrunk image shows no texture the definition would not."""
    noise = torch.randint(0, 256, (1, SIZE, SIZE), generator=torch.Generator().manual_seed(0))
    noise = noise.to(torch.uint8)

    def roughness(image):
        inner = image[0, 30:-30, 30:-30].float()
        return (inner[1:] - inner[:-1]).abs().mean().item()

    expected = roughness(transforms.zoom(noise, factor, 0))
    got = roughness(_batched(augment.zoom, noise, factor))
    assert got == pytest.approx(expected, rel=0.25)


def test_every_image_of_a_batch_gets_its_own_parameters():
    images = _chest(64)[None].repeat(8, 1, 1, 1)
    out = Augmentation(_full_config())(images, torch.zeros(8), torch.Generator().manual_seed(1))
    assert out.shape == images.shape and out.dtype == torch.uint8
    assert len({tuple(o.flatten()[::97].tolist()) for o in out}) == 8
    corners = out[:, 0, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert (corners == 0).all()  # the thorax mask comes last, on every image


def test_nothing_configured_changes_nothing():
    assert not Augmentation(TrainConfig()).enabled
    images = _chest(32)[None]
    assert Augmentation(TrainConfig())(images, torch.zeros(1), torch.Generator()) is images


@pytest.fixture
def tiny_held(tiny_data, cache_dir):
    data = load_data(tiny_data, 32, cache_dir=cache_dir, progress=False)
    return data, hold(data, "train", torch.device("cpu"))


def test_the_same_seed_gives_the_same_batches(tiny_held):
    _, held = tiny_held
    config = _full_config(image_size=32, jpeg_quality_min=None)

    def epoch(seed, rank):
        batches = TrainingBatches(held, 8, Augmentation(config))
        batches.start_epoch(seed, rank)
        return list(batches)

    # The rank draws the augmentation (one process here: the whole epoch either way).
    first, again, other = epoch(1, 2), epoch(1, 2), epoch(1, 3)
    assert len(first) == len(again) == -(-len(held) // 8)
    assert all(a[0].equal(b[0]) and a[1].equal(b[1]) for a, b in zip(first, again, strict=True))
    assert not all(a[0].equal(b[0]) for a, b in zip(first, other, strict=True))
    # The order is the seed's alone.
    assert all(a[1].equal(b[1]) for a, b in zip(first, other, strict=True))
    seen = torch.cat([labels for _, labels in first])
    assert sorted(seen.tolist()) == sorted(held.labels.tolist())  # every image once


def test_the_ranks_split_an_epoch_between_them(tiny_held):
    _, held = tiny_held
    shards = []
    for rank in range(3):
        batches = TrainingBatches(held, 4, Augmentation(TrainConfig()),
                                  world=World(rank=rank, size=3))  # fmt: skip
        batches.start_epoch(5, rank)
        shards.append(batches.order())
    assert len({len(s) for s in shards}) == 1  # padded to equal shards, as DistributedSampler
    covered = torch.cat(shards)
    assert set(covered.tolist()) == set(range(len(held)))


def test_counter_framing_reads_the_folder_not_the_task_label(tiny_held):
    data, _ = tiny_held
    held = hold(data, "train", torch.device("cpu"))
    held = replace(held, labels=1 - held.labels)  # a task whose labels are not the folder's
    seen = []
    batches = TrainingBatches(held, 8, lambda images, folder, g: seen.append(folder) or images)
    batches.start_epoch(0, 0)
    for _, labels in batches:
        assert seen[-1].equal(1 - labels)


def test_weighted_sampling_balances_the_classes(tiny_held):
    _, held = tiny_held
    batches = TrainingBatches(held, 8, Augmentation(TrainConfig()), weighted=True)
    counts = torch.zeros(2)
    for epoch in range(40):
        batches.start_epoch(epoch, epoch)
        counts += torch.bincount(held.labels[batches.order()], minlength=2)
    assert counts[0] / counts.sum() == pytest.approx(0.5, abs=0.06)


@pytest.mark.parametrize(
    "changes", [{}, dict(intensity_norm="percentile-centre", thorax_mask=True)]
)
def test_evaluation_images_are_unchanged_by_the_move(tiny_held, changes):
    data, _ = tiny_held
    config = replace(TrainConfig(image_size=32), **changes)
    held = hold_for_evaluation(config, data, EVALUATED_SPLITS, torch.device("cpu"))
    transform = transforms.evaluation_transform(config)
    for split in EVALUATED_SPLITS:  # each image through the per-image transform, one at a time
        frame = split_frame(data, split)
        pixels = getattr(data, split) if split in VALIDATION_COPIES else data.images[
            frame["cache_row"].to_numpy()]  # fmt: skip
        one_by_one = [torch.from_numpy(np.array(image))[None] for image in pixels]
        images = torch.stack([transform(i) if transform else i for i in one_by_one])
        labels = torch.tensor(frame["label"].to_numpy())
        assert held[split].images.equal(images) and held[split].labels.equal(labels)
        assert np.array_equal(torch.cat([b for _, b in held[split].in_order(5)]), labels)
