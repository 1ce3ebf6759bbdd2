"""Dataset discovery, patient-grouped splits, the decoded-image cache and the loaders.

Images are decoded once, converted to 8-bit grayscale, resized to a square and kept in a
uint8 array on disk (the cache). Loaders read that array, transform single images as uint8
tensors (see transforms.py), and `to_model_input` turns a batch into the normalized
3-channel float tensor both models expect, on the training device.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from sklearn.model_selection import StratifiedGroupKFold
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler
from torchvision.transforms import v2
from tqdm.auto import tqdm

from .config import RESIZE_MODES, TrainConfig, validation_folds
from .errors import UserError
from .fileio import atomic_write_text, fsync_and_replace
from .transforms import frame_stressed_copy, stressed_copy

CLASS_NAMES = ("NORMAL", "PNEUMONIA")
SPLITS = ("train", "val", "test")
# The carved validation images again, with the training set's confounds turned against
# their labels (transforms.stress): the split that can see a shortcut.
STRESSED_VAL = "stressed_val"
# The stressed images again, with the frame turned against the label too
# (transforms.frame_stress): the split that can see the framing shortcut.
FRAME_VAL = "frame_val"
# Every split a run scores after each epoch and at the end, in this order.
EVALUATED_SPLITS = ("val", STRESSED_VAL, FRAME_VAL, "test")

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff"}
# Files that operating systems drop into folders; they are not part of the data.
OS_JUNK = {".ds_store", "thumbs.db", "desktop.ini"}
# The published originals are at most ~8.5 MP; anything far beyond is not a chest X-ray
# and would cost gigabytes to decode.
MAX_PIXELS = 50_000_000
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CACHE_FORMAT = 1

_PATIENT_PATTERNS = (
    re.compile(r"^(person\d+)_(?:bacteria|virus)_"),
    re.compile(r"^(NORMAL2-IM-\d+)-\d+"),
    re.compile(r"^(IM-\d+)-\d+"),
)


def patient_id(file_name: str) -> str:
    """The patient a file belongs to, read from its name; unknown names are their own patient."""
    stem = Path(file_name).stem
    for pattern in _PATIENT_PATTERNS:
        match = pattern.match(stem)
        if match:
            return match.group(1)
    return stem


# --------------------------------------------------------------------------- discovery


def _is_dataset(folder: Path) -> bool:
    return (folder / "train").is_dir() and (folder / "test").is_dir()


def find_dataset_root(path: str | os.PathLike) -> Path:
    """The folder holding train/ and test/: `path` itself, or the one dataset one or two
    levels below it. Two datasets at the same level are an error that lists them."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise UserError(
            f"data folder {path} does not exist: get the dataset (see data/README.md or run "
            "`python -m pneumo_utils download`) and pass its folder with --data or PNEUMO_DATA"
        )
    if _is_dataset(path):
        return path
    for pattern in ("*", "*/*"):
        found = sorted(
            p
            for p in path.glob(pattern)
            if p.is_dir()
            and not any(part.startswith((".", "__MACOSX")) for part in p.parts)
            and _is_dataset(p)
        )
        if len(found) == 1:
            return found[0]
        if found:
            raise UserError(
                f"{path} holds {len(found)} datasets ({', '.join(str(p) for p in found)}): pass "
                "the one you mean with --data or PNEUMO_DATA"
            )
    found = ", ".join(sorted(p.name for p in path.iterdir() if p.is_dir())) or "no folders"
    raise UserError(
        f"{path} is not a chest X-ray dataset (found: {found}): expected train/ and test/ "
        "folders with NORMAL/ and PNEUMONIA/ inside, as in the Kaggle or Mendeley download"
    )


def _class_dir(split_dir: Path, class_name: str) -> Path:
    class_dir = split_dir / class_name
    if not class_dir.is_dir():
        found = ", ".join(sorted(p.name for p in split_dir.iterdir() if p.is_dir())) or "none"
        raise UserError(
            f"missing folder {class_dir} (found: {found}): class folders must be named "
            f"{' and '.join(CLASS_NAMES)}"
        )
    return class_dir


def scan_dataset(root: str | os.PathLike) -> pd.DataFrame:
    """One row per file: path, relpath, split, label, class_name, patient, bytes, mtime_ns.

    OS junk files are ignored; every other file is listed, so that a non-image is reported
    as a bad file rather than silently dropped.
    """
    root = find_dataset_root(root)
    rows = []
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            continue  # the Mendeley layout has no val/
        for label, class_name in enumerate(CLASS_NAMES):
            class_dir = _class_dir(split_dir, class_name)
            files = sorted(
                p
                for p in class_dir.iterdir()
                if p.is_file() and not p.name.startswith(".") and p.name.lower() not in OS_JUNK
            )
            if not files:
                raise UserError(
                    f"class folder {class_dir} has no images: put the {class_name} images of "
                    f"the {split} split there"
                )
            for file in files:
                stat = file.stat()
                rows.append(
                    dict(
                        path=str(file),
                        relpath=file.relative_to(root).as_posix(),
                        split=split,
                        label=label,
                        class_name=class_name,
                        patient=patient_id(file.name),
                        bytes=stat.st_size,
                        mtime_ns=stat.st_mtime_ns,
                    )
                )
    records = pd.DataFrame(rows)
    records.attrs["root"] = str(root)
    return records


def file_list_fingerprint(records: pd.DataFrame, *, mtimes: bool) -> str:
    """A hash of the file list with sizes and, with `mtimes`, modification times.

    The cache keys on mtimes too, so that a file edited in place rebuilds it. A run keys on
    names and sizes only, so that it resumes on a copy or a fresh extraction of the same data,
    which resets every mtime.
    """
    columns = ["relpath", "bytes", "mtime_ns"] if mtimes else ["relpath", "bytes"]
    digest = hashlib.sha256()
    for row in records[columns].itertuples(index=False):
        digest.update(("\t".join(map(str, row)) + "\n").encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------- decoding


class BadImageError(Exception):
    """A file that cannot serve as a training image; the message says why."""


def scale_to_8bit(pixels: np.ndarray, low: float, high: float) -> np.ndarray:
    """Grey levels [low, high] mapped linearly to 0-255 (clipped outside)."""
    scaled = (pixels.astype(np.float64) - low) * (255.0 / max(high - low, 1e-9))
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def bit_depth(pixels: np.ndarray) -> int:
    """The bits an integer grey image uses, read from its largest value: a 12-bit radiograph
    stored in a 16-bit PNG (maximum <= 4095) is 12-bit, not a very dark 16-bit image."""
    return max(8, int(np.ceil(np.log2(float(pixels.max()) + 1))))


def _to_grayscale(image: Image.Image) -> Image.Image:
    if image.mode == "L":
        return image
    if image.mode.startswith("I") or image.mode == "F":  # 16/32-bit grayscale, e.g. 16-bit PNG
        pixels = np.asarray(image)
        if image.mode == "F":
            return Image.fromarray(scale_to_8bit(pixels, 0, 255))
        return Image.fromarray(scale_to_8bit(pixels, 0, 2 ** bit_depth(pixels) - 1))
    return image.convert("RGB").convert("L")  # CMYK, RGBA, palette, RGB: drop colour and alpha


def to_square(gray: Image.Image, size: int, resize: str) -> Image.Image:
    """A grey image made a `size` square by `resize` (see decode_xray)."""
    if resize == "pad":
        return ImageOps.pad(gray, (size, size), Image.Resampling.BILINEAR, color=0)
    if resize == "crop":
        return ImageOps.fit(gray, (size, size), Image.Resampling.BILINEAR)
    return gray.resize((size, size), Image.Resampling.BILINEAR)


def decode_xray(path: str | os.PathLike, size: int, resize: str = "squash") -> np.ndarray:
    """Decode one file into a `size` x `size` uint8 grayscale array, made square by `resize`:
    squashed (aspect lost, as in chest_xray_224), padded with black, or centre-cropped."""
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, not {resize!r}")
    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise BadImageError(f"not an image file ({path.suffix or 'no extension'})")
    if path.stat().st_size == 0:
        raise BadImageError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise BadImageError(f"image too large ({width}x{height} px)")
                # JPEG only: decode at a reduced scale that is still >= size (much faster).
                image.draft("L", (size, size))
                image.load()
                return np.asarray(to_square(_to_grayscale(image), size, resize))
    except Image.DecompressionBombError as error:
        raise BadImageError("image too large") from error
    except UnidentifiedImageError as error:
        raise BadImageError("not a readable image") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise BadImageError(f"cannot decode ({error})") from error


def _decode_or_reason(job: tuple[str, int, str]) -> tuple[np.ndarray | None, str | None]:
    path, size, resize = job
    try:
        return decode_xray(path, size, resize), None
    except BadImageError as error:
        return None, str(error)


# --------------------------------------------------------------------------- cache


def default_cache_dir() -> Path:
    if os.environ.get("PNEUMO_CACHE"):
        return Path(os.environ["PNEUMO_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pneumo_utils"


def _check_outside(cache_dir: Path, data_root: Path) -> None:
    cache, data = cache_dir.resolve(), data_root.resolve()
    if cache == data or data in cache.parents:
        raise UserError(
            f"cache folder {cache_dir} is inside the dataset folder {data_root}, which must stay "
            "untouched: set PNEUMO_CACHE or --cache-dir to a folder outside it"
        )


def build_cache(
    records: pd.DataFrame,
    image_size: int,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: bool = True,
    resize: str = "squash",
) -> tuple[np.ndarray, dict[str, str]]:
    """Decode every file once into a uint8 array (N, size, size) on disk, or reuse it.

    Returns the memory-mapped array (row i belongs to records row i) and the bad files as
    {relpath: reason}. The cache is keyed by the file list, sizes, mtimes and image size, so
    any change to the data rebuilds it. The array is written under a temporary name and the
    JSON index last, so a build cut short is never read.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    _check_outside(cache_dir, Path(records.attrs["root"]))
    key = f"{file_list_fingerprint(records, mtimes=True)}:{image_size}:{CACHE_FORMAT}"
    if resize != "squash":  # the squash key predates the option: existing caches stay valid
        key += f":{resize}"
    fingerprint = hashlib.sha256(key.encode()).hexdigest()
    array_path = cache_dir / f"{fingerprint[:20]}-{image_size}px.npy"
    index_path = array_path.with_suffix(".json")
    shape = (len(records), image_size, image_size)

    if index_path.exists() and array_path.exists():
        try:
            index = json.loads(index_path.read_text())
            images = np.load(array_path, mmap_mode="r")
            if index.get("fingerprint") == fingerprint and images.shape == shape:
                return images, index["bad_files"]
        except (OSError, ValueError):
            pass  # unreadable or cut short: rebuild below

    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"cannot create cache folder {cache_dir} ({error.strerror}): set PNEUMO_CACHE or "
            "--cache-dir to a writable folder"
        ) from error
    partial_path = array_path.with_name(f"{array_path.name}.partial-{os.getpid()}")
    images = np.lib.format.open_memmap(partial_path, mode="w+", dtype=np.uint8, shape=shape)
    bad_files: dict[str, str] = {}
    jobs = [(path, image_size, resize) for path in records["path"]]
    workers = workers or min(4, os.cpu_count() or 1)
    bar = tqdm(total=len(jobs), desc=f"decoding images to {image_size}px", disable=not progress)
    with bar, ProcessPoolExecutor(max_workers=workers) as pool:
        for i, (pixels, reason) in enumerate(pool.map(_decode_or_reason, jobs, chunksize=16)):
            if reason is None:
                images[i] = pixels
            else:
                bad_files[records["relpath"].iat[i]] = reason
            bar.update()
    images.flush()
    del images
    fsync_and_replace(partial_path, array_path)
    index = dict(fingerprint=fingerprint, root=records.attrs["root"], bad_files=bad_files)
    atomic_write_text(index_path, json.dumps(index, indent=1))
    return np.load(array_path, mmap_mode="r"), bad_files


# --------------------------------------------------------------------------- loading


@dataclass
class XrayData:
    """All files of a dataset, their decoded pixels, and the three splits used for training."""

    records: pd.DataFrame  # one row per usable file; column cache_row indexes `images`
    images: np.ndarray
    splits: dict[str, pd.DataFrame]
    fingerprint: str  # file names and sizes: what a resumed run checks
    skipped: dict[str, str]
    seed: int = field(default=0)  # the carve of validation, and the stress of its copy

    @cached_property
    def stressed_val(self) -> np.ndarray:
        """The validation images, in split order, stressed (see STRESSED_VAL)."""
        val = self.splits["val"]
        return stressed_copy(
            self.images[val["cache_row"].to_numpy()],
            val["label"].to_numpy(),
            val["relpath"],
            self.seed,
        )

    @cached_property
    def frame_val(self) -> np.ndarray:
        """The stressed validation images with the frame stressed as well (see FRAME_VAL)."""
        val = self.splits["val"]
        return frame_stressed_copy(
            self.stressed_val, val["label"].to_numpy(), val["relpath"], self.seed
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
) -> XrayData:
    """Scan, validate and cache a dataset, then split it. Bad files stop here, before training.

    With `subset`, validation and test keep at most that many images each, stratified by
    class (smoke runs: both classes stay, in their proportions).
    """
    records = scan_dataset(data_dir)
    images, bad_files = build_cache(records, image_size, cache_dir, workers, progress, resize)
    records = records.assign(cache_row=np.arange(len(records)))
    if bad_files:
        listing = "; ".join(f"{path}: {reason}" for path, reason in sorted(bad_files.items()))
        if not skip_bad_images:
            raise UserError(
                f"{len(bad_files)} bad file(s) in {records.attrs['root']}: {listing} -- remove "
                "or fix them, or pass --skip-bad-images to leave them out"
            )
        warnings.warn(f"leaving out {len(bad_files)} bad file(s): {listing}", stacklevel=2)
        records = records[~records["relpath"].isin(bad_files)]
    splits = make_splits(records, val_fraction, seed, keep_official_val)
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


def dataset_fingerprint(data_dir: str | os.PathLike, skipped: dict | None = None) -> str:
    """The fingerprint a run records (file names and sizes, less its skipped files), from a
    scan alone: nothing is decoded."""
    records = scan_dataset(data_dir)
    records = records[~records["relpath"].isin(list(skipped or {}))]
    return file_list_fingerprint(records, mtimes=False)


def split_summary(splits: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Images per class and patients per split, as a table."""
    rows = []
    for name, frame in splits.items():
        counts = frame["class_name"].value_counts()
        rows.append(
            dict(
                split=name,
                **{c: int(counts.get(c, 0)) for c in CLASS_NAMES},
                images=len(frame),
                patients=frame["patient"].nunique(),
            )
        )
    return pd.DataFrame(rows).set_index("split")


def patients_per_split(records: pd.DataFrame) -> pd.DataFrame:
    """Patients and images per patient, for each official split and class."""
    per_patient = records.groupby(["split", "class_name", "patient"]).size()
    table = per_patient.groupby(["split", "class_name"]).agg(
        patients="size", images_per_patient_mean="mean", images_per_patient_max="max"
    )
    return table.round(2)


def _content_hash(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def patient_overlap(splits: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """For each pair of splits: patient ids found in both, and images identical by content.

    Patient ids in the official test set reuse the numbering of train (e.g. person1 exists in
    both) although the publishers state the patients are different; identical image content
    would be a real leak. Both are reported, nothing is dropped.
    """
    hashes = {name: set(map(_content_hash, frame["path"])) for name, frame in splits.items()}
    names = list(splits)
    rows = []
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            shared = set(splits[first]["patient"]) & set(splits[second]["patient"])
            rows.append(
                dict(
                    splits=f"{first} / {second}",
                    shared_patient_ids=len(shared),
                    identical_images=len(hashes[first] & hashes[second]),
                    examples=", ".join(sorted(shared)[:3]),
                )
            )
    return pd.DataFrame(rows).set_index("splits")


class XrayDataset(Dataset):
    """Images (rows of `images`) as (uint8 tensor 1xSxS, label) pairs."""

    def __init__(self, images: np.ndarray, rows: np.ndarray, labels: np.ndarray, transform=None):
        self.images = images
        self.rows = rows
        self.labels = labels
        self.transform = transform

    def __getstate__(self) -> dict:
        # A loader worker started by "spawn" (macOS, Windows) gets a pickled dataset: send the
        # cache file's name, not a copy of the whole cache.
        state = dict(self.__dict__)
        if isinstance(self.images, np.memmap):
            state["images"] = Path(self.images.filename)
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["images"], Path):
            state["images"] = np.load(state["images"], mmap_mode="r")
        self.__dict__.update(state)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        image = torch.from_numpy(np.array(self.images[self.rows[i]]))[None]
        label = int(self.labels[i])
        if getattr(self.transform, "takes_label", False):  # counter-framing reads the label
            image = self.transform(image, label)
        elif self.transform is not None:
            image = self.transform(image)
        return image, label


def split_frame(data: XrayData, split: str) -> pd.DataFrame:
    """The files of a split; the stressed validation sets have those of validation."""
    return data.splits["val" if split in (STRESSED_VAL, FRAME_VAL) else split]


def make_loader(
    data: XrayData,
    split: str,
    batch_size: int,
    *,
    transform=None,
    shuffle: bool = False,
    weighted_sampling: bool = False,
    workers: int = 0,
    generator: torch.Generator | None = None,
    pin_memory: bool = False,
) -> DataLoader:
    """A loader over one split (or a stressed copy of val), each image through `transform`:
    shuffled (or class-balanced with `weighted_sampling`) for training, in file order otherwise.

    Shuffling, sampling and worker seeds all come from `generator`, so reseeding it at the
    start of an epoch makes that epoch reproducible.
    """
    frame = split_frame(data, split)
    if split in (STRESSED_VAL, FRAME_VAL):
        images, rows = getattr(data, split), np.arange(len(frame))
    else:
        images, rows = data.images, frame["cache_row"].to_numpy()
    dataset = XrayDataset(images, rows, frame["label"].to_numpy(), transform)
    sampler = None
    if weighted_sampling:
        class_counts = np.bincount(dataset.labels, minlength=len(CLASS_NAMES))
        weights = torch.as_tensor(1.0 / class_counts[dataset.labels], dtype=torch.double)
        sampler = WeightedRandomSampler(weights, len(dataset), generator=generator)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        sampler=sampler,
        num_workers=workers,
        generator=generator,
        pin_memory=pin_memory,
        drop_last=False,
    )


def to_model_input(
    batch: torch.Tensor, device: torch.device, channels_last: bool = True
) -> torch.Tensor:
    """uint8 (B,1,S,S) -> normalized float (B,3,S,S) on `device`, ImageNet statistics."""
    batch = batch.to(device, non_blocking=True).float().div_(255)
    batch = v2.functional.normalize(batch.expand(-1, 3, -1, -1), IMAGENET_MEAN, IMAGENET_STD)
    if channels_last:
        batch = batch.contiguous(memory_format=torch.channels_last)
    return batch


def class_weights(labels: np.ndarray) -> torch.Tensor:
    """Inverse-frequency weights, scaled so that they average to 1 over the samples."""
    counts = np.bincount(labels, minlength=len(CLASS_NAMES)).astype(np.float64)
    weights = len(labels) / (len(CLASS_NAMES) * counts)
    return torch.as_tensor(weights, dtype=torch.float32)
