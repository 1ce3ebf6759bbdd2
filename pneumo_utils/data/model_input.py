"""A batch of uint8 grey images as the tensor both models take: float, three channels,
normalised with ImageNet's statistics (the pretrained start expects them; the scratch model
gets the same input so that the two compare), on the device."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from pneumo_utils.resnet import IMAGENET_MEAN, IMAGENET_STD


def to_model_input(
    batch: torch.Tensor, device: torch.device, channels_last: bool = True
) -> torch.Tensor:
    """uint8 (B,1,S,S) -> normalized float (B,3,S,S) on `device`, ImageNet statistics."""
    batch = batch.to(device, non_blocking=True).float().div_(255)
    batch = v2.functional.normalize(batch.expand(-1, 3, -1, -1), IMAGENET_MEAN, IMAGENET_STD)
    if channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch
