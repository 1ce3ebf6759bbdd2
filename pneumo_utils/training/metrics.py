"""The metrics of a model's predictions: logits over a loader, per-class epoch statistics,
the threshold chosen on validation, and the test metrics (analysis/bootstrap.py: their
intervals)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import (
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)
from torch import nn
from torch.utils.data import DataLoader

from pneumo_utils.data.model_input import to_model_input
from pneumo_utils.runtime.device import autocast
from pneumo_utils.splits import FAR_FAMILY_BLOCK, WORST_BLOCK, WORST_FAMILY_BLOCK


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
        labels.append(targets.cpu())
    return torch.cat(logits).numpy(), torch.cat(labels).numpy()


def positive_probability(logits: np.ndarray) -> np.ndarray:
    """P(class 1): P(PNEUMONIA), or the positive class of another binary task."""
    return class_probabilities(logits)[:, 1]


def class_probabilities(logits: np.ndarray) -> np.ndarray:
    return torch.softmax(torch.as_tensor(logits), dim=1).numpy()


def epoch_stats(
    logits: np.ndarray, labels: np.ndarray, prefix: str, class_names: tuple[str, ...]
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


def worst_block_threshold(blocks: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float]:
    """The worst-block rule (docs/frame.md, round 4) over `blocks`, each (labels, P(class 1))
    of one validation set: the threshold whose worst block has the highest balanced accuracy,
    and that balanced accuracy. A drop of specificity on one block shows in full, where a
    mean of losses over blocks let it through. Among thresholds of equal worst, the highest
    mean balanced accuracy over the blocks; among those, the middle one (the upper middle one
    of an even number). A block missing a class is scored on the class it has; a prediction
    that is not finite makes both numbers NaN, which no epoch's score can beat.

    Meant for validation predictions only."""
    if any(len(labels) == 0 for labels, _ in blocks):
        raise ValueError("the worst-block rule needs images in every block: one is empty")
    blocks = [(labels, np.asarray(probs, np.float64)) for labels, probs in blocks]
    pooled = np.concatenate([probs for _, probs in blocks])
    if not np.isfinite(pooled).all():
        return float("nan"), float("nan")
    cuts = np.unique(pooled)
    cuts = np.concatenate([cuts[:1], (cuts[1:] + cuts[:-1]) / 2, [np.nextafter(cuts[-1], 2)]])
    per_block = []  # balanced accuracy of each block at every cut: an image >= cut is positive
    for labels, probs in blocks:
        positives, negatives = np.sort(probs[labels == 1]), np.sort(probs[labels == 0])
        with np.errstate(invalid="ignore"):
            sensitivity = 1 - np.searchsorted(positives, cuts, "left") / len(positives)
            specificity = np.searchsorted(negatives, cuts, "left") / len(negatives)
        per_block.append(np.nanmean(np.stack([sensitivity, specificity]), axis=0))
    per_block = np.stack(per_block)
    worst, mean = per_block.min(axis=0), per_block.mean(axis=0)
    tied = np.flatnonzero(worst == worst.max())
    best = tied[mean[tied] == mean[tied].max()]
    return float(cuts[best[len(best) // 2]]), float(worst.max())


def family_blocks(blocks: list[tuple], families: list[np.ndarray]) -> list[tuple]:
    """The family rule's blocks (docs/frame.md, round 5): each block, (labels, scores), split
    by NORMAL file family, each family's NORMAL images with all the block's other images.
    `families` names, for each block, every image's family ('' for an image that is not a NORMAL
    file); a block without NORMAL files, or with one family, stays as it is."""
    split = []
    for (labels, scores), family in zip(blocks, families, strict=True):
        for name in sorted(set(family) - {""}) or [""]:
            keep = (family == "") | (family == name)
            split.append((labels[keep], scores[keep]))
    return split


def worst_block_scores(
    blocks: list[tuple[np.ndarray, np.ndarray]], prefix: str = WORST_BLOCK
) -> dict[str, float]:
    """The worst-block rule's numbers of an epoch from each block's (labels, logits), as
    `<prefix>_bacc` and `<prefix>_threshold` (the caller splits the blocks for the family
    rule): two classes as worst_block_threshold; more, each image called its most probable
    class."""
    if blocks[0][1].shape[1] == 2:
        pairs = [(labels, positive_probability(logits)) for labels, logits in blocks]
        threshold, worst = worst_block_threshold(pairs)
    else:
        threshold = float("nan")
        worst = min(balanced_accuracy_score(labels, logits.argmax(1)) for labels, logits in blocks)
    return {f"{prefix}_bacc": float(worst), f"{prefix}_threshold": threshold}


def threshold_rule(threshold_on: str) -> str:
    """How a run's threshold was chosen, as metrics.json says it."""
    if threshold_on == WORST_BLOCK:
        return "worst_block (the highest balanced accuracy of the worst validation block)"
    if threshold_on == WORST_FAMILY_BLOCK:
        return (
            "worst_family_block (the highest balanced accuracy of the worst validation block, "
            "each block split by NORMAL file family)"
        )
    if threshold_on == FAR_FAMILY_BLOCK:
        return (
            "far_family_block (the highest balanced accuracy of the worst validation block, "
            "the far tighter view among them, each block split by NORMAL file family)"
        )
    return f"{threshold_on} (Youden's J)"


def threshold_warning(
    threshold: float, split: str, test_probs: np.ndarray | None, class_names: tuple[str, ...]
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
    labels: np.ndarray, probs: np.ndarray, threshold: float, class_names: tuple[str, ...]
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
