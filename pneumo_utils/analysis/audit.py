"""The shortcut audit: how much of the label can be had from how an image was saved, not from
the lungs.

For every file, properties that are not anatomy: from the file (estimated JPEG quality,
metadata blocks, original width, height and aspect, bytes per pixel) and from the decoded
pixels (pure-black and saturated fractions, border statistics). A gradient-boosted classifier
that sees only these properties is cross-validated on the training pool, grouped by patient;
its AUC is how much of the label the properties give away.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
from threadpoolctl import threadpool_limits

from pneumo_utils.data.dataset import load_data
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.tasks import get_task

# libjpeg's luminance quantisation table at quality 50 (ITU-T T.81, K.1), row by row as PIL
# reports it; a file's table divided by this one gives the quality scaling it was saved with.
_STANDARD_LUMINANCE = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69,
     56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81,
     104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99],
    dtype=np.float64,
)  # fmt: skip
# Metadata blocks as PIL names them in Image.info.
METADATA_BLOCKS = ("exif", "icc_profile", "photoshop", "adobe", "jfif")
FILE_PROPERTIES = (
    "jpeg_quality",
    "metadata_blocks",
    "width",
    "height",
    "aspect",
    "bytes_per_pixel",
)
PIXEL_PROPERTIES = (
    "black_fraction",
    "saturated_fraction",
    "mean",
    "std",
    "border_mean",
    "border_std",
    "border_black_fraction",
)
BLACK, SATURATED = 3, 252  # grey levels at or below / at or above which a pixel counts
BORDER = 1 / 16  # the outer frame, as a share of the side, whose statistics are taken
SHA256_DIGITS = 16  # 64 bits: no two different files of a dataset share them
AUDIT_SIZE = 128  # the decoded size of the pixel properties (the size the recipes train at)
# The axis label of each property, with its unit.
PROPERTY_UNITS = {
    "jpeg_quality": "estimated JPEG quality (1 to 100)",
    "metadata_blocks": "metadata blocks in the file (count)",
    "width": "original width (pixels)",
    "height": "original height (pixels)",
    "aspect": "original width / height",
    "bytes_per_pixel": "file size / pixels (bytes per pixel)",
    "black_fraction": f"fraction of pixels at grey level ≤ {BLACK}",
    "saturated_fraction": f"fraction of pixels at grey level ≥ {SATURATED}",
    "mean": "mean grey level (0 to 255)",
    "std": "grey-level sd (0 to 255)",
    "border_mean": "border's mean grey level (0 to 255)",
    "border_std": "border's grey-level sd (0 to 255)",
    "border_black_fraction": f"fraction of border pixels at grey level ≤ {BLACK}",
}


def estimate_jpeg_quality(quantization: dict | None) -> float:
    """The libjpeg quality (1-100) that produces a file's luminance table; NaN if not a JPEG."""
    if not quantization:
        return float("nan")
    table = np.asarray(quantization[0], dtype=np.float64)
    scale = 100 * np.mean(table / _STANDARD_LUMINANCE)  # percent of the quality-50 table
    quality = (200 - scale) / 2 if scale <= 100 else 5000 / scale
    return float(np.clip(round(quality), 1, 100))


def content_hash(path: str | os.PathLike) -> str:
    """The start of a file's SHA-256: enough to tell identical files apart across splits."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:SHA256_DIGITS]


def file_properties(path: str | os.PathLike) -> dict:
    """What the file says without decoding it: quality, metadata, size, bytes per pixel; and
    the start of its SHA-256, which tells identical files apart across splits (not a feature)."""
    digest = content_hash(path)
    with Image.open(path) as image:
        width, height = image.size
        quality = estimate_jpeg_quality(getattr(image, "quantization", None))
        blocks = sum(key in image.info for key in METADATA_BLOCKS if key != "jfif")
    return dict(
        jpeg_quality=quality,
        metadata_blocks=blocks,
        width=width,
        height=height,
        aspect=width / height,
        bytes_per_pixel=os.path.getsize(path) / (width * height),
        sha256=digest,
    )


def pixel_properties(image: np.ndarray) -> dict:
    """Grey-level statistics of one decoded image that say nothing about the lungs."""
    side = image.shape[0]
    frame = max(1, round(side * BORDER))
    border = np.concatenate(
        [image[:frame].ravel(), image[-frame:].ravel(), image[:, :frame].ravel(),
         image[:, -frame:].ravel()]
    )  # fmt: skip
    return dict(
        black_fraction=float((image <= BLACK).mean()),
        saturated_fraction=float((image >= SATURATED).mean()),
        mean=float(image.mean()),
        std=float(image.std()),
        border_mean=float(border.mean()),
        border_std=float(border.std()),
        border_black_fraction=float((border <= BLACK).mean()),
    )


def image_properties(
    data_dir: str | os.PathLike,
    image_size: int = AUDIT_SIZE,
    progress: bool = False,
    task: str = "pneumonia",
) -> pd.DataFrame:
    """One row per file of the task: split, class, patient, and every file and pixel
    property."""
    dataset = load_data(data_dir, image_size, progress=progress, skip_bad_images=True, task=task)
    if dataset.records.attrs.get("source") == "npz":
        raise UserError(
            f"{data_dir} is PneumoniaMNIST's npz: the audit reads how each JPEG was saved, and "
            "its images were re-saved together by MedMNIST; audit the image folders instead"
        )
    rows = []
    for record in dataset.records.itertuples():
        rows.append(
            dict(
                relpath=record.relpath,
                split=record.split,
                label=record.label,
                class_name=record.class_name,
                patient=record.patient,
                **file_properties(record.path),
                **pixel_properties(np.asarray(dataset.images[record.cache_row])),
            )
        )
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class AuditResult:
    properties: pd.DataFrame  # one row per file
    auc: pd.DataFrame  # property-only classifier: cross-validated on train, and on test
    single: pd.DataFrame  # each property alone: how well it separates the classes in train


def _classifier(seed: int) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.1, random_state=seed)


def _separation(labels: np.ndarray, values: np.ndarray) -> float:
    """AUC of one property as a score, turned so that 0.5 is no signal and 1.0 a perfect one."""
    if np.nanstd(values) == 0:
        return 0.5
    auc = roc_auc_score(labels, np.nan_to_num(values, nan=np.nanmedian(values)))
    return float(max(auc, 1 - auc))


def shortcut_audit(
    data_dir: str | os.PathLike,
    image_size: int = AUDIT_SIZE,
    folds: int = 5,
    seed: int = 0,
    task: str = "pneumonia",
) -> AuditResult:
    """The audit of a dataset's files (see audit_properties)."""
    _check_two_classes(task)
    return audit_properties(image_properties(data_dir, image_size, task=task), folds, seed, task)


def _check_two_classes(task: str) -> None:
    if len(get_task(task).class_names) != 2:
        raise UserError(
            f"the shortcut audit tells two classes apart: use --task pneumonia or "
            f"bacterial-viral, not {task}"
        )


def audit_properties(
    properties: pd.DataFrame, folds: int = 5, seed: int = 0, task: str = "pneumonia"
) -> AuditResult:
    """How much of a two-class task's labels (NORMAL vs PNEUMONIA, or BACTERIAL vs VIRAL) a
    property-only classifier reaches, from the properties of every file (image_properties,
    or the committed dataset summary that holds them).

    `cv AUC (train)` is out-of-fold on the training pool (train and the official val),
    folds grouped by patient: what the properties give away inside the training collection.
    `AUC on test` trains on the whole pool and scores the official test set: whether the
    same properties still point the same way there (read after the fact; it chooses nothing).
    """
    _check_two_classes(task)
    # A few thousand rows: one OpenMP thread takes seconds, where two beside another busy
    # process spin at every barrier and took minutes (2 cores, a training running).
    with threadpool_limits(limits=1, user_api="openmp"):
        return _audit(properties, folds, seed, get_task(task).class_names)


def _audit(properties: pd.DataFrame, folds: int, seed: int, class_names) -> AuditResult:
    pool = properties[properties["split"] != "test"]
    test = properties[properties["split"] == "test"]
    groups = {
        "file properties": list(FILE_PROPERTIES),
        "pixel properties": list(PIXEL_PROPERTIES),
        "all properties": [*FILE_PROPERTIES, *PIXEL_PROPERTIES],
    }
    n_folds = min(folds, pool.groupby("label")["patient"].nunique().min())
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    rows = []
    for name, columns in groups.items():
        out_of_fold = cross_val_predict(
            _classifier(seed),
            pool[columns],
            pool["label"],
            groups=pool["patient"],
            cv=splitter,
            method="predict_proba",
        )[:, 1]
        fitted = _classifier(seed).fit(pool[columns], pool["label"])
        rows.append(
            {
                "properties": name,
                "cv AUC (train)": roc_auc_score(pool["label"], out_of_fold),
                "AUC on test": roc_auc_score(
                    test["label"], fitted.predict_proba(test[columns])[:, 1]
                )
                if test["label"].nunique() == 2
                else float("nan"),
            }
        )
    single = pd.DataFrame(
        [
            dict(
                property=column,
                **{
                    f"median {name}": pool.loc[pool["class_name"] == name, column].median()
                    for name in class_names
                },
                **{f"median test {class_names[0]}": test.loc[test["label"] == 0, column].median()},
                separation=_separation(pool["label"].to_numpy(), pool[column].to_numpy()),
            )
            for column in [*FILE_PROPERTIES, *PIXEL_PROPERTIES]
        ]
    ).set_index("property")
    auc = pd.DataFrame(rows).set_index("properties")
    return AuditResult(properties, auc, single.sort_values("separation", ascending=False))
