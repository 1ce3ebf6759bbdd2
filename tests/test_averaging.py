"""The average of the weights (TrainConfig.ema, docs/frame.md round 7): scored, chosen and
saved in place of the weights, and carried across a resume; on tiny generated data."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from pneumo_utils import TrainConfig, UserError, train


def test_an_average_out_of_range_is_refused_before_any_work():
    with pytest.raises(UserError, match="--ema 1.0 is out of range: use 0 .off. or a decay"):
        TrainConfig(ema=1.0).check()
    TrainConfig(ema=0.999).check()


def test_the_run_saves_the_average_as_its_model_and_keeps_the_weights_to_resume(
    tiny_config, tmp_path
):
    out = train(replace(tiny_config, epochs=1, ema=0.5), tmp_path / "run", progress=False)
    last = torch.load(out / "last.pt", weights_only=True)
    best = torch.load(out / "best.pt", weights_only=True)
    average = last["average"]
    assert average.keys() == last["model"].keys() == best["model"].keys()
    for name, value in best["model"].items():
        assert torch.equal(value, average[name]), name  # weights and BatchNorm statistics
    moved = [name for name, value in last["model"].items()
             if value.is_floating_point() and not torch.equal(value, average[name])]  # fmt: skip
    assert moved, "the average is the last weights: nothing was averaged"

    plain = train(replace(tiny_config, epochs=1), tmp_path / "plain", progress=False)
    assert torch.load(plain / "last.pt", weights_only=True)["average"] is None


def test_the_average_moves_its_share_of_the_way_and_copies_the_batch_counts():
    from pneumo_utils.training.averaging import new_average, update_average

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    average = new_average(model)
    assert not average.training and not any(p.requires_grad for p in average.parameters())
    before = {name: value.clone() for name, value in average.state_dict().items()}
    model.train()(torch.randn(8, 2))  # moves the running statistics and the batch count
    with torch.no_grad():
        model[0].weight.add_(1.0)
    update_average(average, model, decay=0.75)
    for name, value in average.state_dict().items():
        current = model.state_dict()[name]
        if value.is_floating_point():
            torch.testing.assert_close(value, 0.75 * before[name] + 0.25 * current)
        else:
            assert value.equal(current)  # num_batches_tracked


def test_a_resumed_run_carries_its_average_on(tiny_config, tmp_path):
    """A run stopped after epoch 1 and resumed ends as the run that never stopped: the average
    is restored, not started again from the resumed weights."""
    config = replace(tiny_config, ema=0.9)
    reference = train(config, tmp_path / "reference", progress=False)
    out = train(replace(config, epochs=1), tmp_path / "run", progress=False)
    saved = json.loads((out / "config.json").read_text())
    saved["config"]["epochs"] = config.epochs  # the same run, now to be continued
    (out / "config.json").write_text(json.dumps(saved))
    (out / "metrics.json").unlink()
    train(config, out, progress=False)
    assert (out / "history.csv").read_text() == (reference / "history.csv").read_text()
