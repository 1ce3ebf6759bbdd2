"""The dataset as a run sees it: the decoded images, the patient-grouped splits and the
stressed validation copies (files.py finds the files; analysis/exploration.py: its tables).

`load_data` is the one entry point: scan the files, decode them through the cache
(cache.py), leave out or refuse bad files, and carve validation out of train by patient.
PneumoniaMNIST's npz file is the other source (pneumoniamnist.py): its own split, kept.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold

from pneumo_utils.config import TrainConfig, validation_folds
from pneumo_utils.data.cache import build_cache, decode_grey, file_list_fingerprint, frame_input
from pneumo_utils.data.files import normal_family, scan_dataset
from pneumo_utils.data.pneumoniamnist import decode_npz
from pneumo_utils.data.stresses import (
    REFRAMINGS,
    VIEW_STRESSES,
    frame_stressed_copy,
    stressed,
    stressed_copy,
)
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.splits import (
    BAND_VAL,
    FAMILY_BLOCKS,
    FAR_TIGHTER_VAL,
    LOOSER_VAL,
    REFRAMED_VAL,
    SPLITS,
    TIGHTER_VAL,
    VALIDATION_COPIES,
)
from pneumo_utils.tasks import FOLDER_CLASSES, TASKS, Task, get_task, task_records


@dataclass
class XrayData:
    """All files of a dataset, their decoded pixels, and the three splits used for training."""

    records: pd.DataFrame  # one row per usable file; column cache_row indexes `images`
    images: np.ndarray
    splits: dict[str, pd.DataFrame]
    fingerprint: str  # file names and sizes: what a resumed run checks
    skipped: dict[str, str]
    seed: int = field(default=0)  # the carve of validation, and the stress of its copy
    task: Task = field(default=TASKS["pneumonia"])  # which files, which classes (tasks.py)
    # The input pipeline (cache.frame_input): the square's side, how it is made square, and
    # whether images are cropped to the body; `no_body` lists the files it found none in.
    image_size: int = 224
    resize: str = "squash"
    crop_to_body: bool = False
    no_body: list[str] = field(default_factory=list)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.task.class_names

    @cached_property
    def stressed_val(self) -> np.ndarray:
        """The validation images, in split order, stressed (see splits.STRESSED_VAL)."""
        val = self.splits["val"]
        return stressed_copy(
            self.images[val["cache_row"].to_numpy()],
            val["folder_label"].to_numpy(),
            val["relpath"],
            self.seed,
        )

    def acquired(self, frame: pd.DataFrame) -> list[np.ndarray]:
        """The images of `frame` as acquired: decoded, full frame, before the input pipeline
        (PneumoniaMNIST: its squares, which the pipeline leaves as they are)."""
        if self.records.attrs.get("source") == "npz":
            return [np.asarray(self.images[row]) for row in frame["cache_row"]]
        return [decode_grey(path, self.image_size) for path in frame["path"]]

    def input_pipeline(self, grey: np.ndarray) -> tuple[np.ndarray, bool]:
        """An acquired grey image as this run's model input square (cache.frame_input)."""
        return frame_input(grey, self.image_size, self.resize, self.crop_to_body)

    @cached_property
    def _acquired_val(self) -> list[np.ndarray]:
        return self.acquired(self.splits["val"])

    @cached_property
    def reframed_val(self) -> np.ndarray:
        """The validation images, each reframed every way of stresses.REFRAMINGS (in that
        order, each a block of the validation images in split order) as acquired, then through
        the input pipeline (see splits.REFRAMED_VAL)."""
        names = self.splits["val"]["relpath"]
        blocks = (stressed(reframing, self._acquired_val, names, self.seed)
                  for reframing in REFRAMINGS)  # fmt: skip
        return np.concatenate([self._through_pipeline(block) for block in blocks])

    def _through_pipeline(self, acquired: Iterable[np.ndarray]) -> np.ndarray:
        return np.stack([self.input_pipeline(grey)[0] for grey in acquired])

    def _view_block(self, split: str) -> np.ndarray:
        """The validation images stressed the way of view block `split` (stresses.VIEW_STRESSES):
        on the input square, or as acquired and then through the input pipeline."""
        val = self.splits["val"]
        stress, acts_on = VIEW_STRESSES[split]
        if acts_on == "square":
            squares = self.images[val["cache_row"].to_numpy()]
            return np.stack(list(stressed(stress, squares, val["relpath"], self.seed)))
        acquired = stressed(stress, self._acquired_val, val["relpath"], self.seed)
        return self._through_pipeline(acquired)

    @cached_property
    def tighter_val(self) -> np.ndarray:
        """See splits.TIGHTER_VAL."""
        return self._view_block(TIGHTER_VAL)

    @cached_property
    def band_val(self) -> np.ndarray:
        """See splits.BAND_VAL."""
        return self._view_block(BAND_VAL)

    @cached_property
    def looser_val(self) -> np.ndarray:
        """See splits.LOOSER_VAL."""
        return self._view_block(LOOSER_VAL)

    @cached_property
    def far_tighter_val(self) -> np.ndarray:
        """See splits.FAR_TIGHTER_VAL."""
        return self._view_block(FAR_TIGHTER_VAL)

    @cached_property
    def frame_val(self) -> np.ndarray:
        """The stressed validation images with the frame stressed as well (see splits.FRAME_VAL)."""
        val = self.splits["val"]
        return frame_stressed_copy(
            self.stressed_val, val["folder_label"].to_numpy(), val["relpath"], self.seed
        )


def load_data(
    data_dir: str | os.PathLike,
    image_size: int = 224,
    *,
    val_fraction: float = 0.1,
    keep_official_val: bool = False,
    seed: int = 0,
    skip_bad_images: bool = False,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: bool = True,
    resize: str = "squash",
    subset: int | None = None,
    task: str = "pneumonia",
    crop_to_body: bool = False,
) -> XrayData:
    """Scan, validate and cache a dataset, then split it. Bad files stop here, before training.

    `task` (tasks.py) chooses the files and their labels; the cache holds every file of the
    dataset whatever the task, so the three tasks share it.

    With `subset`, validation and test keep at most that many images each, stratified by
    class (smoke runs: both classes stay, in their proportions).
    """
    records = scan_dataset(data_dir)
    task = get_task(task)
    labelled = task_records(records, task)  # a file the task cannot label stops it here
    npz = records.attrs.get("source") == "npz"
    for name, changed in (("--resize", resize != "squash"), ("--crop-to-body", crop_to_body)):
        if npz and changed:
            raise UserError(
                f"{name} does nothing for {records.attrs['root']}: PneumoniaMNIST's images are "
                f"28 px squares already; drop {name}"
            )
    decode = (lambda r, size: decode_npz(r, size, SPLITS, FOLDER_CLASSES)) if npz else None
    decoded = build_cache(
        records, image_size, cache_dir, workers, progress, resize, decode, crop_to_body
    )
    images, bad_files = decoded.images, decoded.bad_files
    cache_rows = pd.Series(np.arange(len(records)), index=records.index)
    records = labelled.assign(cache_row=cache_rows.loc[labelled.index])
    if bad_files:
        listing = "; ".join(f"{path}: {reason}" for path, reason in sorted(bad_files.items()))
        if not skip_bad_images:
            raise UserError(
                f"{len(bad_files)} bad file(s) in {records.attrs['root']}: {listing} -- remove "
                "or fix them, or pass --skip-bad-images to leave them out"
            )
        warnings.warn(f"leaving out {len(bad_files)} bad file(s): {listing}", stacklevel=2)
        records = records[~records["relpath"].isin(bad_files)]
    # PneumoniaMNIST's split is part of its benchmark: kept as given.
    splits = make_splits(records, val_fraction, seed, keep_official_val or npz)
    if subset:
        for split in ("val", "test"):
            splits[split] = stratified_subset(splits[split], subset, seed)
    return XrayData(
        records=records,
        images=images,
        splits=splits,
        fingerprint=file_list_fingerprint(records, mtimes=False),
        skipped=dict(bad_files),
        seed=seed,
        task=task,
        image_size=image_size,
        resize=resize,
        crop_to_body=crop_to_body,
        no_body=decoded.no_body,
    )


def load_run_data(cfg: TrainConfig, data_dir: str | None = None, progress: bool = True) -> XrayData:
    """The dataset and splits of a run's configuration (from `data_dir` if given)."""
    return load_data(
        data_dir or cfg.data,
        cfg.image_size,
        val_fraction=cfg.val_fraction,
        seed=cfg.seed,
        keep_official_val=cfg.keep_official_val,
        skip_bad_images=cfg.skip_bad_images,
        cache_dir=cfg.cache_dir,
        progress=progress,
        resize=cfg.resize,
        subset=cfg.max_batches and cfg.max_batches * cfg.batch_size * 2,
        task=cfg.task,
        crop_to_body=cfg.crop_to_body,
    )


def make_splits(
    records: pd.DataFrame,
    val_fraction: float = 0.1,
    seed: int = 0,
    keep_official_val: bool = False,
) -> dict[str, pd.DataFrame]:
    """Train/val/test. Test is the official test set. Val is carved out of train (plus the
    official val images) by patient and stratified by class, unless `keep_official_val`."""
    test = records[records["split"] == "test"]
    official_val = records[records["split"] == "val"]
    if keep_official_val:
        if official_val.empty:
            raise UserError(
                f"{records.attrs['root']} has no val/ folder, so there is no official validation "
                "set to keep: drop --keep-official-val to carve one out of train"
            )
        return dict(train=records[records["split"] == "train"], val=official_val, test=test)

    pool = records[records["split"].isin(["train", "val"])].sort_values("relpath")
    n_folds = validation_folds(val_fraction)
    smallest_class = pool.groupby("label")["patient"].nunique().min()
    if smallest_class < 2:
        raise UserError(
            f"too few patients in {records.attrs['root']} to carve a validation set: each class "
            "needs at least 2 patients in train/"
        )
    folds = StratifiedGroupKFold(
        n_splits=min(n_folds, smallest_class), shuffle=True, random_state=seed
    )
    train_rows, val_rows = next(folds.split(pool, pool["label"], groups=pool["patient"]))
    return dict(train=pool.iloc[train_rows], val=pool.iloc[val_rows], test=test)


def stratified_subset(frame: pd.DataFrame, size: int, seed: int = 0) -> pd.DataFrame:
    """At most `size` rows, each class in its share (at least one row of each), in file order."""
    if len(frame) <= size:
        return frame
    counts = frame["label"].value_counts()
    keep = []
    for label, count in counts.items():
        share = max(1, round(size * count / len(frame)))
        rows = frame[frame["label"] == label]
        keep.append(rows.sample(n=min(share, count), random_state=seed))
    return pd.concat(keep).sort_values("relpath")


def dataset_fingerprint(
    data_dir: str | os.PathLike, skipped: dict | None = None, task: str = "pneumonia"
) -> str:
    """The fingerprint a run records (the task's file names and sizes, less its skipped
    files), from a scan alone: nothing is decoded."""
    records = task_records(scan_dataset(data_dir), get_task(task))
    records = records[~records["relpath"].isin(list(skipped or {}))]
    return file_list_fingerprint(records, mtimes=False)


def split_frame(data: XrayData, split: str) -> pd.DataFrame:
    """The files of a split, one row per image scored: the stressed validation sets have those
    of validation; the reframed one, validation's once per reframing."""
    if split == REFRAMED_VAL:
        val = data.splits["val"]
        return pd.concat([val.assign(reframing=f.name) for f in REFRAMINGS])
    return data.splits["val" if split in VALIDATION_COPIES else split]


def block_families(data: XrayData) -> dict[str, np.ndarray]:
    """The NORMAL file family (files.normal_family) of every image of each validation block
    that a family rule splits (splits.FAMILY_BLOCKS), in the block's order, by block; '' for
    an image of the PNEUMONIA folder."""
    families = {}
    for split in FAMILY_BLOCKS:
        frame = split_frame(data, split)
        normal = frame["folder_label"].to_numpy() == FOLDER_CLASSES.index("NORMAL")
        families[split] = np.where(normal, [normal_family(n) for n in frame["relpath"]], "")
    return families


def no_body_counts(data: XrayData) -> dict[str, int]:
    """How many images of each split the crop to the body found no body in (used whole)."""
    missing = set(data.no_body)
    return {
        split: int(frame["relpath"].isin(missing).sum()) for split, frame in data.splits.items()
    }
