"""Scoring a run that has just trained, from memory (the Run that training hands to `then`):
its best epoch's predictions of every evaluated split, the threshold chosen on validation, its
metrics on test (metrics.json) and its robustness report; and, for a run folder in a later
process, the metrics of its best checkpoint on any split (evaluate_run)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pneumo_utils.analysis.robustness import score_robustness
from pneumo_utils.data.batches import hold
from pneumo_utils.data.dataset import block_families, load_run_data, no_body_counts, split_frame
from pneumo_utils.data.transforms import evaluation_transform
from pneumo_utils.runtime.device import autocast_dtype
from pneumo_utils.runtime.fileio import atomic_write_csv
from pneumo_utils.splits import (
    BLOCKS_OF_RULE,
    EVALUATED_SPLITS,
    FAMILY_RULES,
    POOLED,
    POOLED_VAL,
    REFRAMED_VAL,
)
from pneumo_utils.training import runs
from pneumo_utils.training.metrics import (
    choose_threshold,
    class_probabilities,
    epoch_stats,
    family_blocks,
    predict_logits,
    task_metrics,
    threshold_rule,
    threshold_warning,
    worst_block_threshold,
)
from pneumo_utils.training.runs import load_trained_model, trained_model

if TYPE_CHECKING:  # evaluate_run and the evaluate command need not import the training stack
    from pneumo_utils.training.fit import Run


def finalize(run: Run, robustness: bool = True) -> dict:
    """Score a run that has just trained to the end, from memory: the threshold from
    cfg.threshold_on (two classes; three are called by their most probable class), metrics on
    test, the predictions of every evaluated split and (`robustness`) the robustness report,
    written into the run folder. Only a run resumed past its best epoch loads best.pt and
    predicts the splits again."""
    cfg, data, device = run.config, run.data, run.device
    if run.best is not None:
        model, best_epoch = trained_model(cfg, run.best.weights, device), run.best.epoch
        predictions = run.best.predictions
    else:
        checkpoint = runs.load_best(run.run_dir)
        model, best_epoch = trained_model(cfg, checkpoint["model"], device), checkpoint["epoch"]
        predictions = _predict_splits(model, cfg, data, device)
    labels = {split: predictions[split][0] for split in EVALUATED_SPLITS}
    probs = {split: class_probabilities(predictions[split][1]) for split in EVALUATED_SPLITS}
    _write_predictions(run.run_dir, data, probs, labels)
    threshold = _threshold(cfg, data, probs, labels) if data.task.binary else None
    metrics = dict(
        best_epoch=int(best_epoch),
        selected_on=cfg.select_metric,
        threshold_chosen_on=(
            threshold_rule(cfg.threshold_on)
            if data.task.binary
            else "none: the most probable class"
        ),
        task=data.task.name,
        crop_to_body=cfg.crop_to_body,
        no_body_found=no_body_counts(data) if cfg.crop_to_body else None,
        test=task_metrics(labels["test"], probs["test"], data.class_names, threshold),
        test_at_0_5=task_metrics(labels["test"], probs["test"], data.class_names),
        class_names=list(data.class_names),
    )
    runs.write_metrics(run.run_dir, metrics)
    reasons = run.not_a_result
    print((f"not a result ({reasons}): " if reasons else "")
          + _final_line(metrics, cfg, probs["test"][:, 1]))  # fmt: skip
    if robustness and data.task.binary:
        score_robustness(run.run_dir, model, cfg, data, metrics, device, progress=run.progress,
                         predictions=predictions)  # fmt: skip
    return metrics


def _predict_splits(model, cfg, data, device) -> dict:
    """Every evaluated split predicted by `model`, name -> (labels, logits), as training
    scored them."""
    predictions = {}
    for split in EVALUATED_SPLITS:
        logits, labels = predict_split(model, cfg, data, split, device)
        predictions[split] = (labels, logits)
    return predictions


def predict_split(model, cfg, data, split: str, device) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels of one split (or validation copy), held on `device` as training held
    it for evaluation, in file order."""
    held = hold(data, split, device, evaluation_transform(cfg))
    amp_dtype = autocast_dtype(device, cfg.amp)
    return predict_logits(model, held.in_order(2 * cfg.batch_size), device, amp_dtype,
                          cfg.channels_last)  # fmt: skip


def _write_predictions(run_dir: Path, data, probs: dict, labels: dict) -> None:
    """Each evaluated split's class probabilities and labels, in its <split>_predictions.csv."""
    for split in EVALUATED_SPLITS:
        scored = probs[split][:, 1:] if data.task.binary else probs[split]
        files = split_frame(data, split)
        reframing = {"reframing": files["reframing"].to_numpy()} if split == REFRAMED_VAL else {}
        atomic_write_csv(
            run_dir / f"{split}_predictions.csv",
            dict(
                relpath=files["relpath"].to_numpy(),
                **reframing,
                label=labels[split],
                # float64 text round-trips exactly: numbers read back from the file equal these
                **{
                    column: scored[:, i].astype(np.float64)
                    for i, column in enumerate(data.task.probability_columns)
                },
            ),
        )


def _threshold(cfg, data, probs: dict, labels: dict) -> float:
    """The threshold of cfg.threshold_on: a worst-block rule over its blocks (split by NORMAL
    file family for the family rules), or Youden's J on one split; pooled, each set weighs a
    third (as in pooled_val_loss), whatever its size."""
    if cfg.threshold_on in BLOCKS_OF_RULE:
        splits = BLOCKS_OF_RULE[cfg.threshold_on]
        blocks = [(labels[s], probs[s][:, 1]) for s in splits]
        if cfg.threshold_on in FAMILY_RULES:
            families = block_families(data)
            blocks = family_blocks(blocks, [families[s] for s in splits])
        return worst_block_threshold(blocks)[0]
    chosen_on = POOLED_VAL if cfg.threshold_on == POOLED else (cfg.threshold_on,)
    return choose_threshold(
        np.concatenate([labels[split] for split in chosen_on]),
        np.concatenate([probs[split][:, 1] for split in chosen_on]),
        np.concatenate([np.full(len(labels[s]), 1 / len(labels[s])) for s in chosen_on]),
    )


def _final_line(metrics: dict, cfg, test_probs: np.ndarray) -> str:
    """The line a finished run ends with: its test numbers, and a word on a threshold that
    means little (`test_probs`: P(class 1) of the test images)."""
    test, names = metrics["test"], metrics["class_names"]
    counts = ", ".join(f"{test[f'n_{name}']} {name}" for name in names)
    if test["threshold"] is None:
        decided = "each image called its most probable class"
        scores = f"macro F1 {test['macro_f1']:.3f}, one-vs-rest AUC {test['roc_auc']:.3f}"
    else:
        decided = f"at threshold {test['threshold']:.3f} (chosen on {cfg.threshold_on})"
        scores = (
            f"sensitivity {test['sensitivity']:.3f}, specificity {test['specificity']:.3f}, "
            f"AUC {test['roc_auc']:.3f}"
        )
    warning = test["threshold"] is not None and threshold_warning(
        test["threshold"], cfg.threshold_on, test_probs, names
    )
    return (
        (f"{warning}\n" if warning else "")
        + f"best epoch {metrics['best_epoch']} on {test['n']} test images ({counts}) {decided}: "
        + f"accuracy {test['accuracy']:.3f}, {scores}"
        + "".join(f"; {k} undefined: {why}" for k, why in test["undefined"].items())
    )


def evaluate_run(
    run_dir: str | os.PathLike, data_dir: str | None = None, split: str = "test"
) -> dict:
    """Metrics of a run's best checkpoint on one split. `loss` and `acc_at_0_5` are at
    threshold 0.5; every other metric is at the run's threshold, chosen on validation (three
    classes: each image called its most probable class)."""
    model, cfg, device = load_trained_model(run_dir)
    data = load_run_data(cfg, data_dir)
    logits, labels = predict_split(model, cfg, data, split, device)
    stats = epoch_stats(logits, labels, split, data.class_names)
    threshold = runs.run_threshold(run_dir) if data.task.binary else None
    return dict(
        split=split,
        loss=stats[f"{split}_loss"],
        acc_at_0_5=stats[f"{split}_acc"],
        **task_metrics(labels, class_probabilities(logits), data.class_names, threshold),
    )
