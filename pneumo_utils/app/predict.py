"""`predict`: a trained run's class probabilities for files, folders and globs (batched, one
CSV row per file)."""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
from tqdm.auto import tqdm

from pneumo_utils.data.cache import BadImageError
from pneumo_utils.data.inputs import decode_input, expand_inputs
from pneumo_utils.data.model_input import to_model_input
from pneumo_utils.data.transforms import evaluation_transform
from pneumo_utils.runtime.device import autocast, autocast_dtype
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.tasks import Task, get_task
from pneumo_utils.training import runs
from pneumo_utils.training.runs import load_trained_model

PREDICTION_COLUMNS = ("path", "p_pneumonia", "label", "threshold", "error")


def prediction_columns(task: Task) -> tuple[str, ...]:
    """predict's CSV columns for a run's task: P(PNEUMONIA) for the pneumonia task (as
    PREDICTION_COLUMNS), P(VIRAL) for bacterial-viral, one probability per class for three."""
    return ("path", *task.probability_columns, "label", "threshold", "error")


def predict_files(
    run_dir: str | os.PathLike,
    inputs: list[str | os.PathLike],
    batch_size: int = 64,
    progress: bool = False,
) -> Iterator[dict]:
    """One row per file (see prediction_columns), `batch_size` images in memory at a time.
    Two classes: `label` is class 1 when its probability reaches the run's threshold; three:
    the most probable class (no threshold).

    A file that cannot be read gets its row with the reason in `error`; the others go on.
    """
    paths = expand_inputs(inputs)
    model, cfg, device = load_trained_model(run_dir)
    task = get_task(cfg.task)
    threshold = runs.run_threshold(run_dir) if task.binary else ""
    probability_columns = task.probability_columns
    normalize = evaluation_transform(cfg)
    amp_dtype = autocast_dtype(device, cfg.amp)
    bar = tqdm(total=len(paths), desc="predict", unit="image", disable=not progress)
    with bar:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            rows, pixels = _decoded(chunk, cfg, normalize, probability_columns, threshold)
            if pixels:
                with torch.inference_mode(), autocast(device, amp_dtype):
                    logits = model(to_model_input(torch.stack(pixels), device, cfg.channels_last))
                probabilities = iter(torch.softmax(logits.float(), dim=1).cpu().numpy())
                for row in rows:
                    if not row["error"]:
                        _call(row, next(probabilities), task, threshold)
            bar.update(len(chunk))
            yield from rows


def _decoded(chunk: list[Path], cfg, normalize, columns, threshold) -> tuple[list, list]:
    """Each file's row (its reason in `error` when it cannot be read) and the pixels of those
    that could, in order."""
    rows, pixels = [], []
    for path in chunk:
        row = dict(path=str(path), **dict.fromkeys(columns, ""), label="", threshold=threshold,
                   error="")  # fmt: skip
        try:
            image = torch.from_numpy(decode_input(path, cfg).copy())[None]
            pixels.append(image if normalize is None else normalize(image))
        except (BadImageError, OSError) as error:
            row["error"] = str(error)
        rows.append(row)
    return rows, pixels


def _call(row: dict, probabilities: np.ndarray, task: Task, threshold) -> None:
    """A row's probabilities (P(class 1), or each class's) and its label: class 1 at or above
    the threshold for two classes, the most probable class for three."""
    shown = probabilities[1:] if task.binary else probabilities
    row.update(zip(task.probability_columns, np.round(shown, 6).tolist(), strict=True))
    called = int(probabilities[1] >= threshold) if task.binary else int(probabilities.argmax())
    row["label"] = task.class_names[called]


def write_predictions(
    rows: Iterable[dict], out: TextIO, columns: tuple[str, ...] = PREDICTION_COLUMNS
) -> tuple[int, list[dict]]:
    """Stream rows as CSV with a header; returns the number written and the failed rows."""
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    count, failed = 0, []
    for row in rows:
        writer.writerow(row)
        count += 1
        if row["error"]:
            failed.append(row)
    return count, failed


def predict_command(run_dir, inputs, out: str | None, batch_size: int, progress: bool) -> None:
    """`predict`: CSV to stdout or --out (written whole or not at all), a summary on stderr.
    Nothing is written when no file could be read."""
    saved = runs.open_run(run_dir)
    task, columns = saved.task, prediction_columns(saved.task)
    if task.binary:
        threshold = runs.run_threshold(saved.path)
        positive = task.positive
        print(f"threshold {threshold:.4f} (P({positive}) at or above it: {positive})",
              file=sys.stderr)  # fmt: skip
    else:
        print(f"label: the most probable of {', '.join(task.class_names)}", file=sys.stderr)
    rows = list(predict_files(run_dir, inputs, batch_size, progress))  # rows are small
    failed = [row for row in rows if row["error"]]
    if len(failed) == len(rows):
        raise UserError(f"no image could be read: {failed[0]['path']}: {failed[0]['error']}")
    if out is None:
        write_predictions(rows, sys.stdout, columns)
    else:
        target = Path(out)
        temporary = target.with_name(f".{target.name}.partial")
        with open(temporary, "w", newline="") as handle:
            write_predictions(rows, handle, columns)
        os.replace(temporary, target)
    summary = f"{len(rows) - len(failed)} of {len(rows)} images predicted"
    if failed:
        summary += (
            f"; {len(failed)} unreadable (reason in the error column), e.g. {failed[0]['path']}"
        )
    print(summary + (f"; CSV in {out}" if out else ""), file=sys.stderr)
