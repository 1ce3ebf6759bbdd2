"""A run's checkpoints: last.pt written atomically for resume (the one before kept), and best.pt
for the epoch chosen on validation (runs.py loads it as a model in later processes; the process
that trained it keeps that epoch in memory, as a BestEpoch)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pneumo_utils.runtime.errors import UserError
from pneumo_utils.runtime.fileio import atomic_torch_save, load_checkpoint

# last.pt is written as last.next.pt and renamed; the one before it stays as last.prev.pt.
LAST, PREVIOUS, NEXT, BEST = "last.pt", "last.prev.pt", "last.next.pt", "best.pt"


def save_last(run_dir: Path, checkpoint: dict) -> None:
    """Write last.pt atomically, keeping the previous one as last.prev.pt."""
    last, previous, temporary = run_dir / LAST, run_dir / PREVIOUS, run_dir / NEXT
    atomic_torch_save(temporary, checkpoint)
    if last.exists():
        os.replace(last, previous)
    os.replace(temporary, last)


def load_last(run_dir: Path, fallback: bool) -> dict | None:
    """The last checkpoint, None for a new run; the previous one if asked and last.pt is bad."""
    last, previous = run_dir / LAST, run_dir / PREVIOUS
    if not last.exists():
        # A kill between the two renames of save_last leaves only the previous checkpoint.
        return load_checkpoint(previous) if previous.exists() else None
    try:
        return load_checkpoint(last)
    except UserError:
        if not (fallback and previous.exists()):
            raise
        print(f"{last} is unreadable; resuming from {previous} as asked (--fallback-checkpoint)")
        return load_checkpoint(previous)


@dataclass(frozen=True)
class BestEpoch:
    """The epoch chosen on validation as training saw it: its weights (a copy) and every
    evaluation set's predictions, name -> (labels, logits), so that the scoring after training
    reads nothing back from the run folder."""

    epoch: int
    weights: dict[str, torch.Tensor]
    predictions: dict[str, tuple[np.ndarray, np.ndarray]]


def keep_best(model: torch.nn.Module, epoch: int, predictions: dict) -> BestEpoch:
    weights = {name: value.detach().clone() for name, value in model.state_dict().items()}
    return BestEpoch(epoch, weights, predictions)


def save_best(run_dir: Path, best: BestEpoch) -> None:
    atomic_torch_save(run_dir / BEST, dict(model=best.weights, epoch=best.epoch))


def remove_leftovers(run_dir: Path) -> None:
    """Temporary files of a write that a kill cut short."""
    for leftover in run_dir.glob(".*.tmp-*"):
        leftover.unlink()
