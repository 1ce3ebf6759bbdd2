"""The average of the weights (--ema; docs/frame.md, round 7): a copy of the model whose weights
and BatchNorm statistics follow the model's as an exponential moving average, scored, chosen
and saved in its place. Written here rather than taken from torch.optim.swa_utils.AveragedModel,
whose step counter lives on the CPU and makes a GPU wait at every update."""

from __future__ import annotations

import copy

import torch


def new_average(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of `model` to average into: never trained, so in eval mode and without gradients."""
    average = copy.deepcopy(model).eval()
    return average.requires_grad_(False)


@torch.no_grad()
def update_average(average: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """Move each weight and BatchNorm statistic of `average` the share 1 - `decay` of the way to
    the model's; the integer ones (BatchNorm's batch counts) are copied."""
    for averaged, current in zip(average.state_dict().values(), model.state_dict().values(),
                                 strict=True):  # fmt: skip
        if averaged.is_floating_point():
            averaged.lerp_(current, 1 - decay)
        else:
            averaged.copy_(current)
