"""Evaluation: predictions over a loader, per-class epoch statistics, test metrics with
patient-bootstrap intervals, the evaluation of a finished run's best checkpoint (finalize),
and its metrics on any split (evaluate_run)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from sklearn.metrics import (
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)
from torch import nn
from torch.utils.data import DataLoader

from . import runs
from .dataset import (
    CLASS_NAMES,
    EVALUATED_SPLITS,
    POOLED_VAL,
    REFRAMED_VAL,
    load_run_data,
    no_body_counts,
    patient_id,
    split_frame,
)
from .device import autocast, autocast_dtype
from .loaders import make_loader, to_model_input
from .models import load_trained_model
from .transforms import evaluation_transform


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    loader: DataLoader,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    channels_last: bool = True,
    max_batches: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Logits (N, 2) as float32 and labels (N,) for every batch of `loader`, in order."""
    model.eval()
    logits, labels = [], []
    for i, (images, targets) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        with autocast(device, amp_dtype):
            output = model(to_model_input(images, device, channels_last))
        logits.append(output.float().cpu())
        labels.append(targets)
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


def positive_probability(logits: np.ndarray) -> np.ndarray:
    """P(class 1): P(PNEUMONIA), or the positive class of another binary task."""
    return class_probabilities(logits)[:, 1]


def class_probabilities(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.as_tensor(logits), dim=1).numpy()


def epoch_stats(
    logits: np.ndarray, labels: np.ndarray, prefix: str, class_names=CLASS_NAMES
) -> dict[str, float]:
    """Mean cross-entropy and accuracy, overall and per class, as {prefix_loss: ..., ...}."""
    losses = F.cross_entropy(torch.as_tensor(logits), torch.as_tensor(labels), reduction="none")
    losses = losses.numpy()
    correct = logits.argmax(axis=1) == labels
    stats = {f"{prefix}_loss": float(losses.mean()), f"{prefix}_acc": float(correct.mean())}
    for label, name in enumerate(class_names):
        mask = labels == label
        stats[f"{prefix}_loss_{name}"] = float(losses[mask].mean()) if mask.any() else float("nan")
        stats[f"{prefix}_acc_{name}"] = float(correct[mask].mean()) if mask.any() else float("nan")
    return stats


def safe_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    return float(roc_auc_score(labels, probs)) if len(np.unique(labels)) == 2 else float("nan")


def auc_score(labels: np.ndarray, logits: np.ndarray) -> float:
    """probability_auc of the logits' class probabilities."""
    return probability_auc(labels, class_probabilities(logits))


def probability_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """AUC of P(class 1) for two classes; for more, the macro average of one-vs-rest AUCs.
    NaN when a class is missing from `labels`."""
    if probs.shape[1] == 2:
        return safe_auc(labels, probs[:, 1])
    if len(np.unique(labels)) < probs.shape[1]:
        return float("nan")
    return float(roc_auc_score(labels, probs, multi_class="ovr", average="macro"))


def choose_threshold(
    labels: np.ndarray, probs: np.ndarray, weights: np.ndarray | None = None
) -> float:
    """The P(pneumonia) cut-off that maximises Youden's J (sensitivity + specificity - 1),
    each image counted with its weight (default 1); on a plateau of equal J, its midpoint
    rather than its first point.

    Meant for validation predictions only; 0.5 where validation has a single class.
    """
    if len(np.unique(labels)) < 2:
        return 0.5
    fpr, tpr, thresholds = roc_curve(labels, probs, sample_weight=weights)
    youden = tpr - fpr
    first = int(np.argmax(youden))
    last = first
    while last + 1 < len(youden) and youden[last + 1] == youden[first]:
        last += 1
    return float(min((thresholds[first] + thresholds[last]) / 2, 1.0))


def threshold_warning(
    threshold: float, split: str, test_probs: np.ndarray | None = None, class_names=CLASS_NAMES
) -> str | None:
    """A word when the chosen threshold means little: at an end of the range, or calling
    every test image (`test_probs`, P(class 1)) one class."""
    called = None if test_probs is None else np.asarray(test_probs) >= threshold
    if called is not None and len(called) and (called.all() or not called.any()):
        name = class_names[int(called[0])]
        return (
            f"warning: the threshold chosen on {split} ({threshold:.4f}) calls every test image "
            f"{name}: the model does not separate the classes there (too few epochs, or a "
            "collapsed model), so the test numbers at this threshold say little"
        )
    if 0.001 < threshold < 0.999:
        return None
    return (
        f"warning: the threshold chosen on {split} is {threshold:.4f}, at the end of the range: "
        "its predictions barely separate the classes (too few epochs, or a collapsed model), "
        "so the test numbers at this threshold say little"
    )


def binary_metrics(
    labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5, class_names=CLASS_NAMES
) -> dict:
    """Accuracy, per-class accuracy, sensitivity, specificity, precision, F1, AUC, confusion.
    Class 1 (PNEUMONIA, or the task's positive class) is the positive one."""
    negative, positive = class_names
    predicted = (probs >= threshold).astype(int)
    tn, fp, fn, tp = confusion_matrix(labels, predicted, labels=[0, 1]).ravel()
    sensitivity = tp / (tp + fn) if tp + fn else float("nan")
    specificity = tn / (tn + fp) if tn + fp else float("nan")
    undefined = {}
    if not tp + fn:
        undefined["sensitivity"] = undefined["roc_auc"] = f"no {positive} images"
    if not tn + fp:
        undefined["specificity"] = undefined["roc_auc"] = f"no {negative} images"
    return {
        "n": int(len(labels)),
        f"n_{negative}": int(tn + fp),
        f"n_{positive}": int(tp + fn),
        "threshold": float(threshold),
        "accuracy": float((predicted == labels).mean()),
        f"acc_{negative}": float(specificity),
        f"acc_{positive}": float(sensitivity),
        "sensitivity": float(sensitivity),
        "specificity": float(specificity),
        "precision": float(precision_score(labels, predicted, zero_division=0)),
        "f1": float(f1_score(labels, predicted, zero_division=0)),
        "roc_auc": safe_auc(labels, probs),
        "confusion_matrix": [[int(tn), int(fp)], [int(fn), int(tp)]],
        # metric -> why it cannot be computed (it is NaN, null in JSON)
        "undefined": undefined,
    }


def multiclass_metrics(labels: np.ndarray, probs: np.ndarray, class_names) -> dict:
    """Three or more classes, each image called its most probable class: accuracy, macro F1,
    the macro one-vs-rest AUC, per class recall (acc_), precision, F1 and one-vs-rest AUC, the
    confusion matrix (rows true, columns predicted), and NORMAL vs any other class as the
    pneumonia task's sensitivity and specificity."""
    predicted = probs.argmax(axis=1)
    classes = list(range(len(class_names)))
    recall = recall_score(labels, predicted, labels=classes, average=None, zero_division=0)
    precision = precision_score(labels, predicted, labels=classes, average=None, zero_division=0)
    f1 = f1_score(labels, predicted, labels=classes, average=None, zero_division=0)
    present = [c for c in classes if (labels == c).any()]
    metrics = {"n": int(len(labels))}
    for c, name in enumerate(class_names):
        metrics[f"n_{name}"] = int((labels == c).sum())
    metrics.update(
        threshold=None,
        accuracy=float((predicted == labels).mean()),
        macro_f1=float(f1[present].mean()) if present else float("nan"),
        roc_auc=probability_auc(labels, probs),
    )
    for c, name in enumerate(class_names):
        inside = labels == c
        metrics[f"acc_{name}"] = float(recall[c]) if inside.any() else float("nan")
        metrics[f"precision_{name}"] = float(precision[c])
        metrics[f"f1_{name}"] = float(f1[c])
        metrics[f"auc_{name}"] = safe_auc(inside.astype(int), probs[:, c])
    if class_names[0] == "NORMAL":
        sick, called_sick = labels != 0, predicted != 0
        metrics["sensitivity"] = float(called_sick[sick].mean()) if sick.any() else float("nan")
        metrics["specificity"] = (
            float((~called_sick)[~sick].mean()) if (~sick).any() else float("nan")
        )
    metrics["confusion_matrix"] = confusion_matrix(labels, predicted, labels=classes).tolist()
    missing = [name for c, name in enumerate(class_names) if c not in present]
    metrics["undefined"] = {"roc_auc": f"no {', '.join(missing)} images"} if missing else {}
    return metrics


def task_metrics(
    labels: np.ndarray, probs: np.ndarray, class_names, threshold: float | None = None
) -> dict:
    """binary_metrics at `threshold` on P(class 1) for two classes, multiclass_metrics for
    more; `probs` holds one column per class."""
    if len(class_names) == 2:
        return binary_metrics(labels, probs[:, 1], 0.5 if threshold is None else threshold,
                              class_names)  # fmt: skip
    return multiclass_metrics(labels, probs, class_names)


def bootstrap_metrics(class_names=CLASS_NAMES) -> tuple[str, ...]:
    """The metrics a task's bootstrap intervals are given for, in table order."""
    accuracies = tuple(f"acc_{name}" for name in class_names)
    if len(class_names) == 2:
        return ("accuracy", *accuracies, "sensitivity", "specificity", "precision", "f1",
                "roc_auc")  # fmt: skip
    normal_first = ("sensitivity", "specificity") if class_names[0] == "NORMAL" else ()
    return ("accuracy", "macro_f1", "roc_auc", *accuracies, *normal_first)


BOOTSTRAP_METRICS = bootstrap_metrics()


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
    class_names=CLASS_NAMES,
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
    class_names=CLASS_NAMES,
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


def finalize(
    run_dir: Path,
    data=None,
    device: torch.device | None = None,
    progress: bool = True,
    robustness: bool = True,
):
    """Evaluate a run's best checkpoint: the threshold from cfg.threshold_on (two classes;
    three are called by their most probable class), metrics on test, the predictions of every
    evaluated split, and (`robustness`) the robustness report, written into the run folder."""
    model, cfg, device = load_trained_model(run_dir, device)
    data = data or load_run_data(cfg, progress=progress)
    task = data.task
    amp_dtype = autocast_dtype(device, cfg.amp)
    probs, labels = {}, {}
    for split in EVALUATED_SPLITS:
        loader = make_loader(data, split, 2 * cfg.batch_size, transform=evaluation_transform(cfg))
        logits, labels[split] = predict_logits(model, loader, device, amp_dtype, cfg.channels_last)
        probs[split] = class_probabilities(logits)
        scored = probs[split][:, 1:] if task.binary else probs[split]
        runs.write_table(
            run_dir,
            f"{split}_predictions.csv",
            dict(
                relpath=split_frame(data, split)["relpath"].to_numpy(),
                **(
                    {"reframing": split_frame(data, split)["reframing"].to_numpy()}
                    if split == REFRAMED_VAL
                    else {}
                ),
                label=labels[split],
                # float64 text round-trips exactly: numbers read back from the file equal these
                **{
                    column: scored[:, i].astype(np.float64)
                    for i, column in enumerate(task.probability_columns)
                },
            ),
        )
    threshold = None
    if task.binary:
        chosen_on = POOLED_VAL if cfg.threshold_on == "pooled_val" else (cfg.threshold_on,)
        # Pooled: each set weighs a third, as in pooled_val_loss, whatever its size.
        threshold = choose_threshold(
            np.concatenate([labels[split] for split in chosen_on]),
            np.concatenate([probs[split][:, 1] for split in chosen_on]),
            np.concatenate([np.full(len(labels[s]), 1 / len(labels[s])) for s in chosen_on]),
        )
    metrics = dict(
        best_epoch=int(runs.load_best(run_dir)["epoch"]),
        selected_on=cfg.select_metric,
        threshold_chosen_on=(
            f"{cfg.threshold_on} (Youden's J)" if task.binary else "none: the most probable class"
        ),
        task=task.name,
        crop_to_body=cfg.crop_to_body,
        no_body_found=no_body_counts(data) if cfg.crop_to_body else None,
        test=task_metrics(labels["test"], probs["test"], task.class_names, threshold),
        test_at_0_5=task_metrics(labels["test"], probs["test"], task.class_names),
        class_names=list(task.class_names),
    )
    runs.write_metrics(run_dir, metrics)
    print(_final_line(metrics, cfg, probs["test"][:, 1]))
    if robustness and task.binary:
        from .robustness import robustness_report

        robustness_report(run_dir, data=data, device=device, progress=progress)
    return metrics


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
    loader = make_loader(data, split, 2 * cfg.batch_size, transform=evaluation_transform(cfg))
    logits, labels = predict_logits(
        model, loader, device, autocast_dtype(device, cfg.amp), cfg.channels_last
    )
    stats = epoch_stats(logits, labels, split, data.class_names)
    threshold = runs.run_threshold(run_dir) if data.task.binary else None
    return dict(
        split=split,
        loss=stats[f"{split}_loss"],
        acc_at_0_5=stats[f"{split}_acc"],
        **task_metrics(labels, class_probabilities(logits), data.class_names, threshold),
    )
