"""PneumoniaMNIST (MedMNIST v2, Yang et al. 2023) as a data source beside the folder layouts.

`--data path/to/pneumoniamnist.npz` (or a folder that holds it): the official 28 px file, the
same 624 test images as Kermany's, centre-cropped and resized by MedMNIST. Its own 4,708 / 524
/ 624 train/val/test split is kept as given. It has no patient ids: each image counts as its
own patient, so the "patient" bootstrap resamples images. A run at more than 28 px upsamples
the images by nearest neighbour, as MedMNIST's own training code does.
"""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from pneumo_utils.runtime.errors import UserError

NPZ_NAME = "pneumoniamnist.npz"
NO_PATIENT_IDS = "no patient ids in PneumoniaMNIST: each image counts as its own patient"
_REFETCH = (
    "download pneumoniamnist.npz again (MedMNIST v2, zenodo.org/records/10519652; the 28 px "
    "file's md5 is 28209eda62fecd6e6a2d98b1501bb15f)"
)


def is_npz(path: Path) -> bool:
    return path.suffix.lower() == ".npz"


def read_npz(path: Path, splits: tuple[str, ...], class_names: tuple[str, ...]) -> dict:
    """{split: (images (N, H, W) uint8, labels (N,))}, or one clear error for a file that is
    not PneumoniaMNIST, is truncated, or holds arrays of the wrong shape."""
    needed = [f"{split}_{kind}" for split in splits for kind in ("images", "labels")]
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is not an npz file (an npz is a zip archive): {_REFETCH}")
    try:
        with np.load(path) as npz:
            if missing := [name for name in needed if name not in npz.files]:
                raise UserError(
                    f"{path} is not a PneumoniaMNIST file (it has no {', '.join(missing)} "
                    f"array): pass pneumoniamnist.npz, or {_REFETCH}"
                )
            arrays = {s: (npz[f"{s}_images"], npz[f"{s}_labels"].reshape(-1)) for s in splits}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise UserError(
            f"cannot read {path} ({error}): it is truncated or not an npz; {_REFETCH}"
        ) from None
    for split, (images, labels) in arrays.items():
        if images.ndim != 3 or images.dtype != np.uint8 or len(images) != len(labels):
            raise UserError(
                f"{path}: {split}_images is {images.dtype} {images.shape} for {len(labels)} "
                f"labels, not N grey uint8 images: {_REFETCH}"
            )
        if len(images) == 0 or not set(np.unique(labels)) <= set(range(len(class_names))):
            raise UserError(f"{path}: {split}_labels are not 0/1 ({class_names}): {_REFETCH}")
    return arrays


def scan_npz(path: Path, splits: tuple[str, ...], class_names: tuple[str, ...]) -> pd.DataFrame:
    """One row per image, as scan_dataset gives one per file: relpath `split/index`, each image
    its own patient, and a checksum of its pixels and label in `bytes` (so the fingerprint of
    a run and the cache key change when either does)."""
    mtime_ns = path.stat().st_mtime_ns
    rows = []
    for split, (images, labels) in read_npz(path, splits, class_names).items():
        for index, (image, label) in enumerate(zip(images, labels, strict=True)):
            rows.append(
                dict(
                    path=str(path),
                    relpath=f"{split}/{index:05d}",
                    split=split,
                    label=int(label),
                    class_name=class_names[int(label)],
                    patient=f"{split}-{index:05d}",
                    bytes=zlib.crc32(image.tobytes() + bytes([int(label)])),
                    mtime_ns=mtime_ns,
                )
            )
    records = pd.DataFrame(rows)
    records.attrs.update(root=str(path), source="npz")
    return records


def decode_npz(records: pd.DataFrame, image_size: int, splits, class_names):
    """(pixels, None) per record in order, at `image_size` (nearest neighbour), as the cache
    takes them from decoded files."""
    arrays = read_npz(Path(records.attrs["root"]), splits, class_names)
    for relpath in records["relpath"]:
        split, index = relpath.split("/")
        image = arrays[split][0][int(index)]
        if image.shape != (image_size, image_size):
            image = np.asarray(
                Image.fromarray(image).resize((image_size, image_size), Image.Resampling.NEAREST)
            )
        yield image, None
