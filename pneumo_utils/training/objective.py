"""The training objective's terms beyond the cross-entropy (setup.py builds that)."""

from __future__ import annotations

import torch


def consistency_loss(logits: torch.Tensor, weight: float) -> torch.Tensor:
    """`weight` times how far each image's output moves between its two views, for a batch that
    holds every image twice (TrainConfig.consistency; with `weight` 0 it holds each once, and
    this is 0): the squared difference of its centred logits summed over the classes (for two
    classes, half the squared change of the log odds), averaged over the images. Centred, since
    a constant added to every class's logit changes no prediction."""
    if not weight:
        return logits.new_zeros(())
    first, second = (logits - logits.mean(1, keepdim=True)).chunk(2)
    return weight * (first - second).pow(2).sum(1).mean()
