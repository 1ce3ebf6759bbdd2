"""What each epoch leaves behind: its rows in history.csv and timing.csv, one console line,
TensorBoard scalars (and hparams at the end), and whether progress bars are shown."""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path

from pneumo_utils.config import TrainConfig
from pneumo_utils.runtime.fileio import atomic_write_csv
from pneumo_utils.splits import EVALUATED_SPLITS
from pneumo_utils.tasks import get_task

# One row per epoch: loss and accuracy, overall and per class, of every split (history.csv);
# seconds and images/s (timing.csv, apart so that the history is reproducible).
HISTORY, TIMING = "history.csv", "timing.csv"


def write_epoch(run_dir: Path, history: list[dict], timing: list[dict], writer) -> None:
    """The tables so far, and the last epoch's TensorBoard scalars."""
    atomic_write_csv(run_dir / HISTORY, history)
    atomic_write_csv(run_dir / TIMING, timing)
    log_scalars(writer, history[-1])


def tensorboard(run_dir: Path, epochs_done: int):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(run_dir / "tb"), purge_step=epochs_done + 1)


def close_tensorboard(writer, cfg: TrainConfig, best_epoch: int, best_score: float) -> None:
    if best_epoch:
        writer.add_hparams(
            {k: v for k, v in asdict(cfg).items() if isinstance(v, int | float | str | bool)},
            {"hparam/best_score": best_score, "hparam/best_epoch": best_epoch},
            run_name=".",
        )
    writer.close()


def log_scalars(writer, row: dict) -> None:
    """TensorBoard tags as metric/split (loss/train beside loss/val), so splits share a chart."""
    for key, value in row.items():
        if key in ("epoch", "status"):
            continue
        split = next((s for s in ("train", *EVALUATED_SPLITS) if key.startswith(f"{s}_")), None)
        tag = f"{key[len(split) + 1 :]}/{split}" if split else key
        writer.add_scalar(tag, value, row["epoch"])
    writer.flush()


# The scores the epoch line shows anyway; any other selection score is shown by its name.
SHOWN_SCORES = ("val_loss", "stressed_val_loss")


def summary_line(
    row: dict, cfg: TrainConfig, seconds: float, is_best: bool, stopped: bool = False
) -> str:
    """One line per epoch (and a second when early stopping ends the run). Accuracies here
    are of the most probable class (threshold 0.5 for two classes); the final line gives the
    test numbers at the threshold chosen on validation. The score that selects the checkpoint
    (cfg.select_metric) is shown by its name."""
    test_acc = "acc@0.5" if get_task(cfg.task).binary else "acc"
    stop = (
        f"\nearly stopping: no better {cfg.select_metric} for {cfg.early_stopping} epochs"
        if stopped
        else ""
    )
    selection = (
        f"{cfg.select_metric.replace('_', ' ')} {row[cfg.select_metric]:.4f} | "
        if cfg.select_metric not in SHOWN_SCORES
        else ""
    )
    return (
        f"epoch {row['epoch']:>3}/{cfg.epochs}  "
        f"train loss {row['train_loss']:.3f} acc {row['train_acc']:.3f} | "
        f"val loss {row['val_loss']:.3f} acc {row['val_acc']:.3f} | "
        f"stressed val loss {row['stressed_val_loss']:.3f} acc {row['stressed_val_acc']:.3f} | "
        f"{selection}"
        f"test loss {row['test_loss']:.3f} {test_acc} {row['test_acc']:.3f} | "
        f"lr {row['lr']:.1e}  {seconds:.0f}s{'  *best*' if is_best else ''}{stop}"
    )


def show_progress(progress: bool | None = None) -> bool:
    """Progress bars only where someone watches a terminal (or a notebook), and not when
    TQDM_DISABLE is set: a log file gets one line per epoch instead."""
    if progress is not None:
        return progress
    if os.environ.get("TQDM_DISABLE", "").lower() in ("1", "true", "yes"):
        return False
    return sys.stderr.isatty() or "ipykernel" in sys.modules
