"""The view round's rule (docs/frame.md, round 4): the view blocks of validation, which act on
the anatomy where the input pipeline cannot undo them, and the worst-block selection rule;
all on tiny generated images and predictions."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from pneumo_utils import TrainConfig
from pneumo_utils.data import body
from pneumo_utils.data.dataset import load_data, split_frame
from pneumo_utils.data.stresses import VIEW_BAND, VIEW_FAR_ZOOM_IN, VIEW_ZOOM_IN, view_variant
from pneumo_utils.runtime.fileio import atomic_write_csv
from pneumo_utils.splits import (
    BAND_VAL,
    EVALUATED_SPLITS,
    FAR_TIGHTER_VAL,
    LOOSER_VAL,
    TIGHTER_VAL,
    VIEW_VAL,
    WORST_BLOCKS,
)
from pneumo_utils.training import runs
from pneumo_utils.training.epoch_log import HISTORY
from pneumo_utils.training.metrics import worst_block_scores, worst_block_threshold

ROBUSTNESS_MIDDLE_ZOOM_IN = 1.25  # the robustness suite's middle zoom-in (docs/frame.md)


def _body_in_margin(size: int = 96, box=(18, 84, 24, 76), seed: int = 0) -> np.ndarray:
    """A square with a textured body in a black margin, the body's box `box`."""
    rng = np.random.default_rng(seed)
    square = np.zeros((size, size), np.uint8)
    top, bottom, left, right = box
    body_pixels = rng.normal(150, 30, (bottom - top, right - left))
    square[top:bottom, left:right] = np.clip(body_pixels, 40, 255).astype(np.uint8)
    return square


def test_the_tighter_view_is_stronger_than_the_suites_middle_zoom_in():
    assert sum(VIEW_ZOOM_IN) / 2 >= ROBUSTNESS_MIDDLE_ZOOM_IN
    assert VIEW_ZOOM_IN[0] > 1


def test_the_tighter_view_zooms_into_the_body_not_the_frame():
    """The margin is gone and the body fills the square: the view is tighter relative to the
    body, which a crop to the body cannot take back (it finds the whole square)."""
    square = _body_in_margin()
    tighter = view_variant(square, TIGHTER_VAL, "a.jpeg", 0)
    assert tighter.shape == square.shape
    assert (tighter == 0).mean() < 0.01  # no black margin left
    assert body.body_box(tighter) == (0, 96, 0, 96)
    # Each side of the body's box shows at most 1/1.2 of the body: the texture is enlarged.
    assert tighter.std() > 0 and not np.array_equal(tighter, square)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize(
    "split, factors", [(TIGHTER_VAL, VIEW_ZOOM_IN), (FAR_TIGHTER_VAL, VIEW_FAR_ZOOM_IN)]
)
def test_the_tighter_view_keeps_the_centre_of_a_filled_square(seed, split, factors):
    """On a square the body fills (as after the crop), the view is its central 1/s enlarged:
    the centre pixel's neighbourhood stays in view, the corners do not."""
    size = 64
    ramp = np.add.outer(np.arange(size), np.arange(size)).astype(np.float32)
    square = (60 + ramp).astype(np.uint8)
    tighter = view_variant(square, split, "a.jpeg", seed).astype(float)
    # A linear ramp enlarged by s has a gradient 1/s as steep: between 1/s_max and 1/s_min.
    gradient = (tighter[32, 40] - tighter[32, 24]) / 16
    assert 1 / factors[1] - 0.05 <= gradient <= 1 / factors[0] + 0.05


def test_the_far_view_begins_where_the_control_arms_framing_variety_ends():
    """Round 8 (docs/frame.md): the far block asks the control arm to extrapolate past the
    framing variety it was trained on (up to 1 + view_jitter times tighter); the wide arm's
    variety covers the block."""
    from pneumo_utils.recipes import recipe_config

    trained_to = 1 + recipe_config("far-control").view_jitter
    assert VIEW_FAR_ZOOM_IN[0] >= trained_to > VIEW_ZOOM_IN[0]
    assert 1 + recipe_config("far-view-wide").view_jitter >= VIEW_FAR_ZOOM_IN[1]


def test_the_band_is_painted_inside_the_body_grey_to_white():
    square = torch.from_numpy(_body_in_margin())[None]
    banded = torch.from_numpy(view_variant(square[0].numpy(), BAND_VAL, "c.jpeg", 3))[None]
    top, bottom, left, right = body.body_box(square[0].numpy())
    outside = torch.ones_like(square, dtype=torch.bool)
    outside[:, top:bottom, left:right] = False
    assert torch.equal(banded[outside], square[outside])  # the margin is untouched
    changed = banded != square
    assert changed.any()
    rows = changed[0].any(dim=1).nonzero().flatten()
    assert rows.min() >= top and rows.max() < bottom  # every change is inside the box
    band = banded[0, top, left + (right - left) // 2].item()  # the box's top edge, mid-width
    assert band >= square[0, top:bottom, left:right].float().median().item() - 1
    # The centre of the body is left as it is: only the outer band of at most 14% is painted.
    height = bottom - top
    inner = slice(top + int(VIEW_BAND[1] * height) + 1, bottom - int(VIEW_BAND[1] * height) - 1)
    assert torch.equal(banded[0, inner, 40:60], square[0, inner, 40:60])


def test_view_draws_depend_on_seed_name_and_block_only():
    grey = _body_in_margin()
    first = view_variant(grey, TIGHTER_VAL, "a.jpeg", seed=0)
    np.testing.assert_array_equal(first, view_variant(grey, TIGHTER_VAL, "a.jpeg", seed=0))
    assert not np.array_equal(first, view_variant(grey, TIGHTER_VAL, "b.jpeg", seed=0))
    assert not np.array_equal(first, view_variant(grey, TIGHTER_VAL, "a.jpeg", seed=1))
    # Each block draws from its own stream: the same file is stressed differently per block.
    square = _body_in_margin(size=96, box=(0, 96, 0, 96))
    views = [view_variant(square, split, "a.jpeg", seed=0) for split in VIEW_VAL]
    assert not np.array_equal(views[0], views[1]) and not np.array_equal(views[1], views[2])


@pytest.mark.parametrize("crop", [False, True])
def test_the_view_blocks_are_the_validation_images_stressed(tiny_data, cache_dir, crop):
    data = load_data(tiny_data, 32, cache_dir=cache_dir, progress=False, crop_to_body=crop)
    val = data.splits["val"]
    assert set(VIEW_VAL) <= set(EVALUATED_SPLITS) and set(WORST_BLOCKS) <= set(EVALUATED_SPLITS)
    for split in (*VIEW_VAL, FAR_TIGHTER_VAL):
        images = getattr(data, split)
        assert images.shape == (len(val), 32, 32)
        pd.testing.assert_frame_equal(split_frame(data, split), val)
    first = val["relpath"].iat[0]
    # The tighter views and the band act on the model's input square (after the pipeline)...
    square = data.images[val["cache_row"].iat[0]]
    np.testing.assert_array_equal(data.tighter_val[0], view_variant(square, TIGHTER_VAL, first, 0))
    far = view_variant(square, FAR_TIGHTER_VAL, first, 0)
    np.testing.assert_array_equal(data.far_tighter_val[0], far)
    np.testing.assert_array_equal(data.band_val[0], view_variant(square, BAND_VAL, first, 0))
    # ...the looser view on the image as acquired, then through the pipeline.
    acquired = data.acquired(val.iloc[:1])[0]
    looser = data.input_pipeline(view_variant(acquired, LOOSER_VAL, first, 0))[0]
    np.testing.assert_array_equal(data.looser_val[0], looser)


# ------------------------------------------------------------------------ the worst-block rule


def _brute_force(blocks) -> float:
    """The highest worst-block balanced accuracy over a fine grid of thresholds."""
    best = 0.0
    for cut in np.linspace(0, 1.0001, 2001):
        worst = min(balanced_accuracy_score(y, p >= cut) for y, p in blocks)
        best = max(best, worst)
    return best


@pytest.mark.parametrize("seed", range(4))
def test_the_rule_finds_the_threshold_whose_worst_block_is_best(seed):
    rng = np.random.default_rng(seed)
    blocks = []
    for shift in (0.0, 0.15, -0.1):
        labels = rng.integers(0, 2, 60)
        probs = np.clip(0.35 + 0.3 * labels + shift + rng.normal(0, 0.15, 60), 0, 1)
        blocks.append((labels, probs))
    threshold, worst = worst_block_threshold(blocks)
    assert worst == pytest.approx(_brute_force(blocks), abs=1e-9)
    at_threshold = min(balanced_accuracy_score(y, p >= threshold) for y, p in blocks)
    assert at_threshold == pytest.approx(worst)


def test_a_specificity_drop_on_one_block_decides_where_a_mean_loss_did_not():
    """The round's reason (docs/frame.md): model A ranks every block well but one block's
    NORMAL images all move up, past any threshold that suits the others (its specificity
    falls by 40 points); model B is less confident everywhere. The mean log loss over the
    blocks prefers A; the worst block's balanced accuracy prefers B."""
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], [100, 300])

    def block(normal_mean, pneumonia_mean, spread, moved=0.0):
        probs = np.where(labels == 1, pneumonia_mean, normal_mean) + rng.normal(0, spread, 400)
        probs[: int(moved * 100)] = 0.999  # NORMAL images called PNEUMONIA with confidence
        return labels, np.clip(probs, 0.001, 0.999)

    model_a = [block(0.02, 0.98, 0.01), block(0.02, 0.98, 0.01), block(0.02, 0.98, 0.01, 0.4)]
    model_b = [block(0.25, 0.75, 0.08) for _ in range(3)]

    def mean_loss(blocks):
        return np.mean([
            -np.mean(np.where(y == 1, np.log(p), np.log(1 - p))) for y, p in blocks
        ])  # fmt: skip

    assert mean_loss(model_a) < mean_loss(model_b)
    assert worst_block_threshold(model_b)[1] > worst_block_threshold(model_a)[1] + 0.1


def test_a_prediction_that_is_not_finite_scores_nan_and_an_empty_block_is_refused():
    labels = np.array([0, 0, 1, 1])
    threshold, worst = worst_block_threshold([(labels, np.array([0.1, 0.2, 0.8, np.nan]))])
    assert np.isnan(threshold) and np.isnan(worst)
    with pytest.raises(ValueError, match="empty"):
        worst_block_threshold([(labels, np.array([0.1, 0.2, 0.8, 0.9])), (labels[:0], labels[:0])])


def test_a_block_with_one_class_is_scored_on_that_class():
    blocks = [
        (np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9])),
        (np.array([1, 1, 1]), np.array([0.7, 0.9, 0.95])),
    ]
    threshold, worst = worst_block_threshold(blocks)
    assert worst == 1.0 and 0.2 < threshold <= 0.7


def test_three_classes_are_scored_by_their_most_probable_class():
    labels = np.array([0, 1, 2, 2])
    logits = np.eye(3)[[0, 1, 2, 1]] * 5
    scores = worst_block_scores([(labels, logits), (labels, np.eye(3)[labels] * 5)])
    expected = balanced_accuracy_score(labels, [0, 1, 2, 1])
    assert scores["worst_block_bacc"] == pytest.approx(expected)
    assert np.isnan(scores["worst_block_threshold"])


def test_a_run_selects_and_thresholds_by_the_worst_block(tiny_config, tmp_path):
    """The history records the rule's numbers every epoch; best.pt is the epoch of the highest
    worst-block balanced accuracy, and the run's threshold is that epoch's."""
    from dataclasses import replace

    from pneumo_utils.analysis.scoring import finalize
    from pneumo_utils.training.fit import train

    config = replace(
        tiny_config,
        epochs=4,
        val_fraction=0.5,
        select_metric="worst_block_bacc",
        threshold_on="worst_block",
    )
    out = train(config, tmp_path / "run", progress=False,
                then=lambda run: finalize(run, robustness=False))  # fmt: skip
    history = runs.read_history(out)
    assert {"worst_block_bacc", "worst_block_threshold"} <= set(history.columns)
    assert history["worst_block_bacc"].nunique() > 1  # the epochs differ: the choice is real
    best = history.loc[history["worst_block_bacc"].idxmax()]
    metrics = runs.read_metrics(out)
    assert metrics["best_epoch"] == int(best["epoch"])
    assert metrics["test"]["threshold"] == pytest.approx(best["worst_block_threshold"], abs=1e-6)
    assert metrics["threshold_chosen_on"].startswith("worst_block")


# ---------------------------------------------------------------- the levers of the screening

# How far the normalised pixels of the lungs may move when the frame changes, in grey levels.
LUNG_TOLERANCE = 2


def _chest(size: int = 96, seed: int = 0) -> torch.Tensor:
    """A body-cropped square: darker lung fields left and right of a bright mediastinum, with
    texture, and air in the corners outside the body's outline, as after the crop to the body."""
    rng = np.random.default_rng(seed)
    pixels = rng.normal(170, 2, (size, size)) + 20 * np.sin(np.arange(size) / 9)[:, None]
    lung = slice(size // 5, 4 * size // 5)
    pixels[lung, size // 8 : 7 * size // 16] -= 90
    pixels[lung, 9 * size // 16 : 7 * size // 8] -= 90
    centred = (np.arange(size) + 0.5) / size - 0.5
    pixels[np.add.outer(centred**2, centred**2) > 0.3] = 8  # air beyond the outline
    return torch.from_numpy(np.clip(pixels, 0, 255).astype(np.uint8))[None]


def test_a_band_leaves_the_lungs_where_centre_percentiles_put_them():
    """A white band of 14% (the widest of the view blocks) changes every normalised pixel when
    the percentiles are the whole frame's, and none when they are the centre's."""
    from pneumo_utils.data.transforms import normalize_intensity, paint_band

    chest = _chest()
    banded = paint_band(chest, 0.14, 255)
    lungs = (slice(None), slice(30, 66), slice(16, 40))
    moved = {}
    for mode in ("percentile", "percentile-centre"):
        before = normalize_intensity(chest, mode)[lungs].float()
        after = normalize_intensity(banded, mode)[lungs].float()
        moved[mode] = (after - before).abs().max().item()
    assert moved["percentile-centre"] <= LUNG_TOLERANCE < moved["percentile"]


def test_a_tighter_view_moves_the_lungs_less_with_centre_percentiles():
    """A 1.25 times tighter view takes the air in the corners out of the frame: with the whole
    frame's percentiles the lungs' normalised mean grey level moves by more than twice the
    tolerance; with the centre's, by at most that. (The centre's mix of lung and mediastinum
    changes too, so this lever takes away a part of the scale cue, not the whole.)"""
    from pneumo_utils.data.transforms import normalize_intensity, zoom

    chest = _chest()
    tighter = zoom(chest, 1.25)
    moved = {}
    for mode in ("percentile", "percentile-centre"):
        before = normalize_intensity(chest, mode)[0, 30:66, 16:40].float().mean()
        # The same lung field in the enlarged view: (x - 48) * 1.25 + 48.
        after = normalize_intensity(tighter, mode)[0, 26:71, 8:38].float().mean()
        moved[mode] = abs(after - before).item()
    assert moved["percentile-centre"] <= 2 * LUNG_TOLERANCE < moved["percentile"]


def test_framing_variety_goes_both_ways_and_paints_bands_grey_to_white():
    from pneumo_utils.data.augment import Augmentation
    from pneumo_utils.data.transforms import VIEW_JITTER_BAND

    chest = _chest(64)
    view = Augmentation(TrainConfig(view_jitter=0.5))
    outcomes = view(chest[None].repeat(200, 1, 1, 1), torch.zeros(200), torch.Generator())
    assert all(o.shape == chest.shape for o in outcomes)
    median = chest.float().median().item()
    corners = [o[0, 0, 0].item() for o in outcomes]
    # Tighter views (the corner is body), wider ones (a margin below the median) and bands
    # (between the median and white) all occur.
    assert any(c > median + 20 for c in corners) and any(c < median - 40 for c in corners)
    # A band never reaches beyond VIEW_JITTER_BAND of the side: the centre is always body.
    centre = int(64 * (0.5 - VIEW_JITTER_BAND))
    assert all(o[0, centre:-centre, centre:-centre].float().mean() < 255 for o in outcomes)


def test_the_thorax_mask_hides_the_corners_of_every_split(tiny_config):
    from dataclasses import replace

    from pneumo_utils.data.augment import Augmentation
    from pneumo_utils.data.transforms import evaluation_transform

    chest = _chest(32)
    config = replace(tiny_config, thorax_mask=True, view_jitter=0.5, augment=True)
    trained = Augmentation(config)(chest[None], torch.zeros(1), torch.Generator())[0]
    for masked in (evaluation_transform(config)(chest), trained):
        assert masked[0, 0, 0] == masked[0, -1, -1] == masked[0, 0, -1] == 0
        assert (masked[0, 12:20, 12:20] > 0).all()  # the centre stays in view
    plain = evaluation_transform(replace(tiny_config, thorax_mask=True))(chest)
    assert torch.equal(plain[0, 8:24, 8:24], chest[0, 8:24, 8:24])


def test_view_jitter_out_of_range_is_refused(tiny_config):
    from dataclasses import replace

    from pneumo_utils.runtime.errors import UserError

    with pytest.raises(UserError, match="--view-jitter 1.5 is out of range"):
        replace(tiny_config, view_jitter=1.5).check()


# ------------------------------------------------------------------------- the screening


def _view_arm(finished_run, folder, scores):
    """A copy of a finished run whose history has the worst-block scores `scores`."""
    shutil.copytree(finished_run, folder, ignore=shutil.ignore_patterns("*.pt"))
    history = runs.read_history(folder).iloc[:1]
    rows = [
        history.assign(epoch=i + 1, worst_block_bacc=score, worst_block_threshold=0.5)
        for i, score in enumerate(scores)
    ]
    atomic_write_csv(folder / HISTORY, pd.concat(rows).to_dict("records"))


def test_the_view_screening_takes_the_highest_worst_block_and_breaks_ties_late(
    finished_run, tmp_path
):
    from pneumo_utils.results import screening

    late = [0.80] * 5
    scores = {"view-control": [0.900, *late], "view-variety": [0.897, *[0.88] * 5]}
    for recipe in screening.VIEW_SCREENING:
        _view_arm(finished_run, tmp_path / f"{recipe}-seed0", scores.get(recipe, [0.85, *late]))
    table = screening.view_screening_table(tmp_path)
    assert list(table.index[:2]) == ["view-variety", "view-control"]  # tied within 0.005
    assert table.loc["view-control", "at epoch"] == 1
    assert table.index[0] == "view-variety"
    blocks = screening.view_blocks_table(tmp_path)
    assert list(blocks.index) == list(screening.VIEW_SCREENING) and "tighter val" in blocks
    shutil.rmtree(tmp_path / "view-thorax-seed0")
    _view_arm(finished_run, tmp_path / "view-thorax-seed0", [0.99])  # now ahead, untied
    assert screening.view_screening_table(tmp_path).index[0] == "view-thorax"
    shutil.rmtree(tmp_path / "view-variety-seed0")
    with pytest.raises(ValueError, match="every arm finished"):
        screening.view_screening_table(tmp_path)


def test_validation_blocks_read_each_block_at_the_runs_threshold(finished_run):
    from pneumo_utils.results.screening import validation_blocks
    from pneumo_utils.training.metrics import binary_metrics

    table = validation_blocks(finished_run)
    threshold = runs.run_threshold(finished_run)
    assert {"val", "tighter val", "band val", "looser val"} <= set(table.index)
    assert sum(name.startswith("reframed val: ") for name in table.index) == 3
    val = runs.read_predictions(finished_run, "val")
    expected = binary_metrics(val["label"].to_numpy(), val["p_pneumonia"].to_numpy(), threshold,
                              ("NORMAL", "PNEUMONIA"))  # fmt: skip
    assert table.loc["val", "specificity"] == round(expected["specificity"], 3)
    assert table.loc["val", "sensitivity"] == round(expected["sensitivity"], 3)
