"""Patient-bootstrap intervals of the test metrics: whole patients resampled with their images
(images of one patient are not independent), vectorised for two classes."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from pneumo_utils.data.files import patient_id
from pneumo_utils.tasks import TASKS
from pneumo_utils.training.metrics import binary_metrics, multiclass_metrics


def bootstrap_metrics(class_names: tuple[str, ...]) -> tuple[str, ...]:
    """The metrics a task's bootstrap intervals are given for, in table order."""
    accuracies = tuple(f"acc_{name}" for name in class_names)
    if len(class_names) == 2:
        return ("accuracy", *accuracies, "sensitivity", "specificity", "precision", "f1",
                "roc_auc")  # fmt: skip
    normal_first = ("sensitivity", "specificity") if class_names[0] == "NORMAL" else ()
    return ("accuracy", "macro_f1", "roc_auc", *accuracies, *normal_first)


# The pneumonia task's, the results table's rows.
BOOTSTRAP_METRICS = bootstrap_metrics(TASKS["pneumonia"].class_names)


def resample_weights(
    groups: np.ndarray | None, n: int, n_resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """(n_resamples, n) counts: how often each image is drawn in each resample. With `groups`
    (a patient id per image), whole patients are drawn with replacement, their images with
    them: images of one patient are not independent, so resampling images alone would give
    intervals that are too narrow."""
    if groups is None:  # every image its own group
        groups = np.arange(n)
    codes, inverse = np.unique(np.asarray(groups), return_inverse=True)
    drawn = rng.integers(0, len(codes), (n_resamples, len(codes)))
    per_group = np.stack([np.bincount(row, minlength=len(codes)) for row in drawn])
    return per_group[:, inverse]


def weighted_metrics(
    labels: np.ndarray,
    probs: np.ndarray,
    threshold: float,
    weights: np.ndarray,
    class_names: tuple[str, ...],
) -> dict[str, np.ndarray]:
    """bootstrap_metrics of two classes for each row of `weights` (R, N) at once: the metrics
    of resampled sets, where an image drawn k times counts k times. AUC counts ties as one
    half."""
    negative, positive_class = class_names
    weights = np.atleast_2d(weights).astype(np.float64)
    positive, predicted = labels == 1, probs >= threshold
    tp = weights @ (positive & predicted)
    fn = weights @ (positive & ~predicted)
    tn = weights @ (~positive & ~predicted)
    fp = weights @ (~positive & predicted)
    # AUC: for each distinct score, the weight of negatives below it and tied with it.
    order = np.argsort(probs, kind="stable")
    sorted_probs = probs[order]
    starts = np.flatnonzero(np.r_[True, sorted_probs[1:] != sorted_probs[:-1]])
    neg = np.add.reduceat((weights * ~positive)[:, order], starts, axis=1)
    pos = np.add.reduceat((weights * positive)[:, order], starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * (neg_below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
        sensitivity, specificity = tp / (tp + fn), tn / (tn + fp)
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        accuracy = (tp + tn) / (tp + tn + fp + fn)
    return {
        "accuracy": accuracy,
        f"acc_{negative}": specificity,
        f"acc_{positive_class}": sensitivity,
        "sensitivity": sensitivity,
        "specificity": specificity,
        "precision": precision,
        "f1": f1,
        "roc_auc": auc,
    }


def resampled_multiclass_metrics(
    labels: np.ndarray, probs: np.ndarray, weights: np.ndarray, class_names
) -> dict[str, np.ndarray]:
    """bootstrap_metrics of three or more classes for each row of `weights`: each resample's
    images, repeated as often as drawn, through multiclass_metrics (slower than the two-class
    arithmetic, but a few seconds for a thousand resamples of the test set)."""
    names = bootstrap_metrics(class_names)
    samples = {name: [] for name in names}
    for row in np.atleast_2d(weights):
        drawn = np.repeat(np.arange(len(labels)), row.astype(int))
        metrics = multiclass_metrics(labels[drawn], probs[drawn], class_names)
        for name in names:
            samples[name].append(metrics[name])
    return {name: np.asarray(values, dtype=np.float64) for name, values in samples.items()}


def bootstrap_intervals(
    labels: np.ndarray,
    probs: np.ndarray,
    threshold: float | None,
    groups: np.ndarray | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    *,
    class_names: tuple[str, ...],
) -> pd.DataFrame:
    """Point estimate and percentile bootstrap interval for each metric. With `groups` (the
    patient of each image) patients are resampled, which is what the published intervals
    use; without, images. Two classes: `probs` is P(class 1), called at `threshold`; more:
    one column per class, each image called its most probable class."""
    labels, probs = np.asarray(labels), np.asarray(probs, dtype=np.float64)
    weights = resample_weights(groups, len(labels), n_resamples, np.random.default_rng(seed))
    if len(class_names) == 2:
        point = binary_metrics(labels, probs, threshold, class_names)
        samples = weighted_metrics(labels, probs, threshold, weights, class_names)
    else:
        point = multiclass_metrics(labels, probs, class_names)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a resample without some class: NaN, as intended
            samples = resampled_multiclass_metrics(labels, probs, weights, class_names)
    names = bootstrap_metrics(class_names)
    tail = (1 - level) / 2 * 100
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a metric undefined in every resample
        return pd.DataFrame(
            {
                "value": [point[m] for m in names],
                "low": [np.nanpercentile(samples[m], tail) for m in names],
                "high": [np.nanpercentile(samples[m], 100 - tail) for m in names],
            },
            index=list(names),
        )


def prediction_patients(predictions: pd.DataFrame) -> np.ndarray:
    """The patient of each row of a *_predictions.csv, read from its file name."""
    return predictions["relpath"].map(lambda relpath: patient_id(Path(relpath).name)).to_numpy()
