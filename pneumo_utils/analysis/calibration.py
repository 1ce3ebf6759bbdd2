"""Where a run's decisions stand apart from its perturbations: how well its probabilities are
calibrated, how each file family and pneumonia type fares, and its worst mistakes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import brier_score_loss

from pneumo_utils.data.files import normal_family
from pneumo_utils.tasks import pneumonia_type

CALIBRATION_BINS = 15
FAILURES = 12


def calibration(labels: np.ndarray, probs: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
    """Expected calibration error of P(class 1) over equal-width bins (the weighted mean gap
    between the share of class 1 and the mean probability in each bin), the Brier score, and
    the reliability diagram's bins (scikit-learn's `calibration_curve` and its binning)."""
    share, mean_probability = calibration_curve(labels, probs, n_bins=bins, strategy="uniform")
    edges = np.linspace(0, 1, bins + 1)
    counts = np.bincount(np.searchsorted(edges[1:-1], probs), minlength=bins)
    filled = np.flatnonzero(counts)
    ece = float(np.sum(counts[filled] / len(probs) * np.abs(share - mean_probability)))
    table = [
        dict(low=edges[b], high=edges[b + 1], n=int(counts[b]), mean_probability=float(p),
             share_pneumonia=float(s))
        for b, p, s in zip(filled, mean_probability, share, strict=True)
    ]  # fmt: skip
    brier = float(brier_score_loss(labels, probs))
    return dict(ece=ece, brier=brier, bins=table, n=int(len(labels)))


def subgroup(relpath: str, label: int) -> str:
    """The file family of a test image: IM-* or NORMAL2-* for NORMAL, bacteria or virus for
    PNEUMONIA (read from the file name)."""
    if label == 0:
        return normal_family(relpath)
    kind = pneumonia_type(Path(relpath).name)
    return {"BACTERIAL": "bacteria", "VIRAL": "virus"}.get(kind, "other")


def subgroup_rows(
    frame: pd.DataFrame, probs: np.ndarray, threshold: float, class_names: tuple[str, ...]
) -> list[dict]:
    """Specificity of each NORMAL file family, sensitivity of bacterial and viral pneumonia
    (bacterial-viral: the share of each called right, specificity for BACTERIAL)."""
    folders = frame["folder_label"] if "folder_label" in frame else frame["label"]
    groups = np.array([subgroup(r, y) for r, y in zip(frame["relpath"], folders,
                                                      strict=True)])  # fmt: skip
    rows = []
    for name in sorted(set(groups)):
        inside = groups == name
        label = int(frame["label"].to_numpy()[inside][0])
        metric = "specificity" if label == 0 else "sensitivity"
        correct = (probs[inside] >= threshold) == bool(label)
        rows.append(dict(subgroup=name, class_name=class_names[label], n=int(inside.sum()),
                         metric=metric, value=float(correct.mean())))  # fmt: skip
    return rows


def failures(
    frame: pd.DataFrame,
    probs: np.ndarray,
    threshold: float,
    *,
    class_names: tuple[str, ...],
    column: str,
    n: int = FAILURES,
):
    """The misclassified test images, the most confidently wrong first, with P(class 1) under
    the name of the predictions' column (p_pneumonia, p_viral)."""
    labels = frame["label"].to_numpy()
    wrong = (probs >= threshold) != labels.astype(bool)
    confidence = np.where(labels == 1, threshold - probs, probs - threshold)
    order = [i for i in np.argsort(-confidence, kind="stable") if wrong[i]][:n]
    return [{"relpath": frame["relpath"].iat[i], "label": int(labels[i]),
             "class_name": class_names[labels[i]], column: float(probs[i])}
            for i in order]  # fmt: skip
