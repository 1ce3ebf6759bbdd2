"""The consistency lever (TrainConfig.consistency): each training image twice in its batch, in
two random views, and a penalty on how far its output moves between them; on tiny generated
data."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from pneumo_utils import TrainConfig
from pneumo_utils.data.augment import Augmentation
from pneumo_utils.data.batches import TrainingBatches, hold
from pneumo_utils.data.dataset import load_data
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.training import objective
from pneumo_utils.training.objective import consistency_loss


def test_the_loss_is_its_weight_times_half_the_squared_change_of_the_log_odds():
    first = torch.tensor([[0.0, -3.0], [1.0, 2.0]])  # log odds -3 and 1
    second = torch.tensor([[0.0, -1.0], [1.0, 2.0]])  # -1 and 1: the first image moved by 2
    assert consistency_loss(torch.cat([first, second]), weight=3.0).item() == pytest.approx(
        3 * (2**2 / 2) / 2
    )


def test_the_same_output_in_both_views_costs_nothing_even_shifted_in_every_class():
    logits = torch.randn(5, 3)
    assert consistency_loss(torch.cat([logits, logits + 7.0]), weight=1.0).item() == pytest.approx(
        0, abs=1e-6
    )


@pytest.fixture
def held(tiny_data, cache_dir):
    data = load_data(tiny_data, 32, cache_dir=cache_dir, progress=False)
    return hold(data, "train", torch.device("cpu"))


def test_two_views_hold_each_image_twice_each_copy_drawn_anew(held):
    random_views = Augmentation(TrainConfig(image_size=32, view_jitter=0.5))
    batches = TrainingBatches(held, 8, random_views, views=2)
    batches.start_epoch(3, 0)
    for images, labels in batches:
        first, second = images.chunk(2)
        assert len(images) == 2 * len(first) and labels.chunk(2)[0].equal(labels.chunk(2)[1])
        assert not first.equal(second)
    fixed = TrainingBatches(held, 8, Augmentation(TrainConfig()), views=2)
    fixed.start_epoch(3, 0)
    images, _ = next(iter(fixed))
    first, second = images.chunk(2)
    assert first.equal(second)  # the same rows: only the draws told the copies apart


def test_consistency_without_random_views_is_refused_before_any_work():
    with pytest.raises(UserError, match="--consistency compares two random views"):
        TrainConfig(consistency=1.0).check()
    TrainConfig(consistency=1.0, view_jitter=0.5).check()
    with pytest.raises(UserError, match="--consistency -1.0 is out of range"):
        TrainConfig(consistency=-1.0, view_jitter=0.5).check()


def test_training_adds_the_disagreement_of_each_batch_only_when_asked(
    tiny_config, tmp_path, monkeypatch
):
    from pneumo_utils import train

    seen = []

    def spy(logits, weight):
        added = consistency_loss(logits, weight)
        seen.append((len(logits), weight, added.item()))
        return added

    monkeypatch.setattr(objective, "consistency_loss", spy)
    config = replace(tiny_config, epochs=1, view_jitter=0.5)
    train(config, tmp_path / "plain", progress=False)
    assert seen and all(weight == 0 and added == 0 for _, weight, added in seen)
    seen.clear()
    train(replace(config, consistency=1.0), tmp_path / "paired", progress=False)
    assert seen[0][0] == 2 * config.batch_size
    assert all(n % 2 == 0 and weight == 1.0 for n, weight, _ in seen)
    assert any(added > 0 for *_, added in seen)  # the views differ, so their outputs do

    # What the term returns is in the loss that training steps on: a term that is not a number
    # stops the run at its first step.
    monkeypatch.setattr(
        objective, "consistency_loss", lambda logits, weight: logits.sum() * math.nan
    )
    with pytest.raises(UserError, match="non-finite loss at epoch 1, step 1"):
        train(replace(config, consistency=1.0), tmp_path / "nan", progress=False)


@pytest.mark.parametrize(
    "setting",
    [dict(), dict(augment=True), dict(view_jitter=0.5), dict(frame_jitter=0.5),
     dict(blur_noise=0.3), dict(intensity_jitter=0.1), dict(aspect_jitter=0.1),
     dict(counter_framing=0.5), dict(jpeg_quality_min=50), dict(intensity_norm="percentile"),
     dict(thorax_mask=True)],
)  # fmt: skip
def test_random_views_are_the_settings_whose_augmentation_draws(setting):
    """The check that refuses --consistency and the augmentation agree on what is random."""
    config = TrainConfig(image_size=32, **setting)
    images = torch.randint(0, 256, (4, 1, 32, 32), dtype=torch.uint8)
    draws = Augmentation(config).draw(images, torch.zeros(4), torch.Generator())
    assert config.random_views == bool(draws)
