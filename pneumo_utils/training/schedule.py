"""The learning-rate schedule: built from the configuration, stepped once an epoch."""

from __future__ import annotations

import torch

from pneumo_utils.config import TrainConfig


def build(cfg: TrainConfig, optimizer: torch.optim.Optimizer):
    """cfg.scheduler's schedule for `optimizer`, or None for a constant rate."""
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.3, patience=3)
    if cfg.scheduler == "step":
        milestones = [cfg.epochs // 2, cfg.epochs * 3 // 4]
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    return None


def step(scheduler, val_loss: float) -> None:
    """The end of an epoch: the plateau schedule reads the validation loss, the others count."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(val_loss)
    elif scheduler is not None:
        scheduler.step()
