"""The run folder: its files, a typed view of config.json, its readers and writers, its best
model, and the lock (the loop writes checkpoints.py's and epoch_log.py's files).

    config.json            configuration, data fingerprint, weights provenance, machine
    history.csv            one row per epoch: loss/accuracy overall and per class, every split
    timing.csv             seconds and images/s per epoch (kept apart so history is reproducible)
    metrics.json           the best checkpoint on test, at a threshold chosen on validation
    {val,stressed_val,frame_val,reframed_val,test}_predictions.csv
    robustness.json/.csv   the best checkpoint on perturbed test images (analysis/robustness.py)
    last.pt, best.pt       checkpoints (last.prev.pt is the one before last.pt)
    tb/                    TensorBoard events

Reporting code reads runs through this module and never imports the training loop. Where the
run folders of the results are kept is results/folders.py's; robustness.json and .csv are
analysis/robustness.py's.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from filelock import FileLock, Timeout

from pneumo_utils.config import TrainConfig
from pneumo_utils.data.files import dataset_label, sample_note
from pneumo_utils.model import build_model
from pneumo_utils.runtime.device import pick_device
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.runtime.fileio import atomic_write_text, load_checkpoint
from pneumo_utils.splits import CURVE_SPLITS
from pneumo_utils.tasks import Task, get_task
from pneumo_utils.training.checkpoints import BEST
from pneumo_utils.training.epoch_log import HISTORY

CONFIG, METRICS = "config.json", "metrics.json"
LOCK = ".lock"


@dataclass(frozen=True)
class SavedRun:
    """What config.json says about a run."""

    path: Path
    config: TrainConfig
    data: dict  # root, fingerprint, split sizes, skipped files
    weights: dict | None  # provenance of ImageNet weights; None for scratch
    environment: dict  # machine, libraries, git commit

    @property
    def not_a_result(self) -> str | None:
        """Why this run's numbers are not a result (smoke run, stand-in weights), or None."""
        n_images = sum(self.data.get("splits", {}).values())
        return not_a_result(self.config, self.weights, self.data["root"], n_images)

    @property
    def is_result(self) -> bool:
        return self.not_a_result is None

    @property
    def title(self) -> str:
        """The model's name in a table or figure, flagged when its numbers are not a result."""
        reason = self.not_a_result
        return f"{self.config.model} ({reason}: not a result)" if reason else self.config.model

    @property
    def dataset(self) -> str:
        """The name of the dataset it was trained on (its folder, or the npz file's stem)."""
        return dataset_label(self.data["root"])

    @property
    def task(self) -> Task:
        return get_task(self.config.task)

    @property
    def hardware(self) -> str:
        """What trained it: the GPU where there was one, else the CPU."""
        if gpu := self.environment.get("gpu"):
            return f"{gpu} ({self.environment['device']})"
        return f"{self.environment['processor']} ({self.environment['device']})"


def not_a_result(config: TrainConfig, weights: dict | None, root, n_images: int) -> str | None:
    """Why a run's numbers are not a result, or None: a smoke run (a few batches per pass),
    whatever its data; ImageNet weights that are not the official file; a sample of a dataset
    (files.sample_note)."""
    reasons = []
    if weights and not weights.get("official"):
        reasons.append("stand-in weights")
    if config.max_batches:
        reasons.append("smoke run")
    if note := sample_note(root, n_images):
        reasons.append(note)
    return ", ".join(reasons) or None


def open_run(run_dir: str | os.PathLike) -> SavedRun:
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).exists():
        raise UserError(
            f"{run_dir} is not a run folder (no {CONFIG}): pass the --out of a training"
        )
    saved = json.loads((run_dir / CONFIG).read_text())
    return SavedRun(
        path=run_dir,
        config=TrainConfig.from_dict(saved["config"]),
        data=saved["data"],
        weights=saved.get("weights"),
        environment=saved["environment"],
    )


def write_config(run_dir: Path, record: dict) -> None:
    atomic_write_text(run_dir / CONFIG, json.dumps(record, indent=2))


def is_finished(run_dir: str | os.PathLike) -> bool:
    return (Path(run_dir) / METRICS).exists()


def run_state(run_dir: str | os.PathLike) -> str:
    """done (metrics written), partial (started, not finished) or missing."""
    run_dir = Path(run_dir)
    if is_finished(run_dir):
        return "done"
    return "partial" if (run_dir / CONFIG).exists() else "missing"


def read_history(run_dir: str | os.PathLike) -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / HISTORY)


def completed_epochs(run_dir: str | os.PathLike) -> pd.DataFrame:
    """history.csv less the epochs that stopped on a non-finite loss: they have no metrics."""
    history = read_history(run_dir)
    return history[history["status"] == "ok"]


def read_metrics(run_dir: str | os.PathLike) -> dict:
    return json.loads((Path(run_dir) / METRICS).read_text())


def write_metrics(run_dir: Path, metrics: dict) -> None:
    atomic_write_text(run_dir / METRICS, json.dumps(json_safe(metrics), indent=2))


def json_safe(value):
    """NaN and infinity become null: valid JSON, which bare NaN is not."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_predictions(run_dir: str | os.PathLike, split: str = "test") -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / f"{split}_predictions.csv")


def prediction_probabilities(predictions: pd.DataFrame, task: Task) -> np.ndarray:
    """(N, classes) probabilities from a *_predictions.csv, which holds P(class 1) alone for
    a two-class task."""
    columns = predictions[list(task.probability_columns)].to_numpy(np.float64)
    return np.hstack([1 - columns, columns]) if task.binary else columns


def run_threshold(run_dir: str | os.PathLike) -> float:
    """The decision threshold chosen on validation when the run finished (0.5 before that)."""
    return read_metrics(run_dir)["test"]["threshold"] if is_finished(run_dir) else 0.5


def training_curves(run_dir: str | os.PathLike) -> pd.DataFrame:
    """history.csv in long form (epoch, split, metric, cls, value) for plotting."""
    history = completed_epochs(run_dir)
    frames = []
    for column in history.columns:
        split = next((s for s in CURVE_SPLITS if column.startswith(f"{s}_")), None)
        if split is None:
            continue
        metric, _, class_name = column[len(split) + 1 :].partition("_")
        if metric in ("loss", "acc"):
            frames.append(
                pd.DataFrame(
                    dict(
                        epoch=history["epoch"],
                        split=split,
                        metric=metric,
                        cls=class_name or "overall",
                        value=history[column],
                    )
                )
            )
    return pd.concat(frames, ignore_index=True)


# ----------------------------------------------------------------------------- the best model


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


def load_trained_model(run_dir: str | os.PathLike, device: torch.device | None = None):
    """The best checkpoint of a run as an eval-mode model, with its config and device."""
    cfg = open_run(run_dir).config
    device = device or pick_device("auto")
    return trained_model(cfg, load_best(run_dir)["model"], device), cfg, device


def trained_model(cfg: TrainConfig, weights: dict, device: torch.device) -> torch.nn.Module:
    """A run's model with trained `weights` (best.pt's, or kept in memory), in eval mode."""
    # Both models share one architecture; the weights replace any starting weights.
    classes = len(get_task(cfg.task).class_names)
    model = build_model("scratch", dropout=cfg.dropout, num_classes=classes)
    model.load_state_dict(weights)
    model = model.to(device, memory_format=torch.channels_last if cfg.channels_last else None)
    return model.eval()


def with_checkpoints(finished: dict[str, Path]) -> dict[str, Path]:
    """The runs whose best.pt is on this machine (checkpoints are not committed)."""
    return {name: run for name, run in finished.items() if (run / BEST).exists()}


# ----------------------------------------------------------------------------- lock


class RunLock:
    """An exclusive lock on a run folder for one training, on every operating system.

    The lock file stays in the folder: deleting it after release would let a second process
    lock a file that a third then recreates (filelock's known race). The OS lock dies with its
    process, so a killed training's lock is taken over by the next one.
    """

    def __init__(self, run_dir: Path):
        self.path = run_dir / LOCK
        self.lock = FileLock(self.path, timeout=0)

    def __enter__(self):
        try:
            self.lock.acquire()
        except Timeout:
            raise UserError(
                f"{self.path.parent} is in use by another training: wait for it to finish, or "
                "pass another --out"
            ) from None
        return self

    def __exit__(self, *exc):
        self.lock.release()


# ----------------------------------------------------------------------------- a run set aside


def set_aside(run_dir: Path) -> Path:
    """Move an existing run out of the way (nothing is deleted) and return where it went."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = run_dir.with_name(f"{run_dir.name}.old-{stamp}")
    run_dir.rename(target)
    return target
