"""A run's checkpoints: last.pt written atomically for resume (the one before kept), best.pt
for the epoch chosen on validation, and the best checkpoint loaded as a model."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from pneumo_utils.config import TrainConfig
from pneumo_utils.model import build_model
from pneumo_utils.runtime.device import pick_device
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.runtime.fileio import atomic_torch_save, load_checkpoint
from pneumo_utils.tasks import get_task
from pneumo_utils.training.runs import BEST, CONFIG, LAST, NEXT, PREVIOUS, is_finished, open_run


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


def save_best(run_dir: Path, model_state: dict, epoch: int) -> None:
    atomic_torch_save(run_dir / BEST, dict(model=model_state, epoch=epoch))


def load_best(run_dir: str | os.PathLike) -> dict:
    """best.pt: the model weights of the epoch chosen on validation, and that epoch."""
    run_dir = Path(run_dir)
    if not (run_dir / BEST).exists():
        if is_finished(run_dir):
            raise UserError(
                f"{run_dir} is a finished run whose checkpoints are not here (the committed "
                "runs keep their numbers, not their weights): train its model again with "
                f"`python -m pneumo_utils train --config {run_dir / CONFIG} --out NEW_FOLDER`"
            )
        raise UserError(f"{run_dir} has no {BEST} yet: let the training finish at least one epoch")
    return load_checkpoint(run_dir / BEST)


def remove_leftovers(run_dir: Path) -> None:
    """Temporary files of a write that a kill cut short."""
    for leftover in run_dir.glob(".*.tmp-*"):
        leftover.unlink()


def load_trained_model(run_dir: str | os.PathLike, device: torch.device | None = None):
    """The best checkpoint of a run as an eval-mode model, with its config and device."""
    cfg: TrainConfig = open_run(run_dir).config
    checkpoint = load_best(run_dir)
    device = device or pick_device("auto")
    # Both models share one architecture; the checkpoint replaces any starting weights.
    classes = len(get_task(cfg.task).class_names)
    model = build_model("scratch", dropout=cfg.dropout, num_classes=classes)
    model.load_state_dict(checkpoint["model"])
    model = model.to(device, memory_format=torch.channels_last if cfg.channels_last else None)
    return model.eval(), cfg, device


def with_checkpoints(finished: dict[str, Path]) -> dict[str, Path]:
    """The runs whose best.pt is on this machine (checkpoints are not committed)."""
    return {name: run for name, run in finished.items() if (run / BEST).exists()}
