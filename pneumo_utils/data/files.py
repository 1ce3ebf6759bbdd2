"""The dataset's files: its root found from what the user passed (Kaggle or Mendeley layout, a
link, PneumoniaMNIST's npz file), its name, the patient of each file, and the scan of every
image with its split, class and patient."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from pneumo_utils.data.pneumoniamnist import NPZ_NAME, is_npz, scan_npz
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.splits import SPLITS
from pneumo_utils.tasks import FOLDER_CLASSES

# The small real subset that ships in data/ (its README: source, licence, citation), for smoke
# runs and tests without a download; whatever is computed on it is not a result.
EMBEDDED_SAMPLE = "embedded_sample"

# Files that operating systems drop into folders; they are not part of the data.
OS_JUNK = {".ds_store", "thumbs.db", "desktop.ini"}

# The second family of NORMAL files in Kermany's folders (NORMAL2-IM-...), beside IM-....
NORMAL2_PREFIX = "NORMAL2-"
_PATIENT_PATTERNS = (
    re.compile(r"^(person\d+)_(?:bacteria|virus)_", re.IGNORECASE),
    re.compile(rf"^({NORMAL2_PREFIX}IM-\d+)-\d+"),
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


def normal_family(file_name: str) -> str:
    """The family of a NORMAL file, read from its name: NORMAL2-* or IM-* (every other name,
    so PneumoniaMNIST's NORMAL images are one family). The two naming schemes differ in more
    than their names (docs/frame.md, round 5)."""
    return "NORMAL2-*" if Path(file_name).name.startswith(NORMAL2_PREFIX) else "IM-*"


# --------------------------------------------------------------------------- discovery


def _is_dataset(folder: Path) -> bool:
    return (folder / "train").is_dir() and (folder / "test").is_dir()


def find_dataset_root(path: str | os.PathLike) -> Path:
    """The folder holding train/ and test/: `path` itself, or the one dataset one or two
    levels below it; or PneumoniaMNIST's npz file (`path`, or pneumoniamnist.npz in it). Two
    datasets at the same level, or the npz beside a dataset at any level, are an error that
    lists them."""
    path = Path(path).expanduser()
    if is_npz(path):
        if not path.is_file():
            raise UserError(
                f"{path} does not exist: pass the path of PneumoniaMNIST's pneumoniamnist.npz "
                "(docs/medmnist.md), or a dataset folder"
            )
        return path
    if not path.is_dir():
        raise UserError(
            f"data folder {path} does not exist: get the dataset (see data/README.md or run "
            "`python -m pneumo_utils download`) and pass its folder with --data or PNEUMO_DATA; "
            "to try the project without it, PNEUMO_PROFILE=smoke uses the embedded sample "
            "(data/embedded_sample), which gives no results"
        )
    if _is_dataset(path):
        return path
    npz = [path / NPZ_NAME] if (path / NPZ_NAME).is_file() else []
    for pattern in ("*", "*/*"):
        found = npz + sorted(
            p
            for p in path.glob(pattern)
            if p.is_dir()
            and not any(part.startswith((".", "__MACOSX")) for part in p.parts)
            and _is_dataset(p)
        )
        if found == npz and pattern == "*":
            continue  # a dataset one level further down makes the npz ambiguous too
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


def dataset_label(root: str | os.PathLike) -> str:
    """The name a dataset's runs are kept under: its folder's name, or the npz file's stem,
    after following links, so that `data/chest_xray` linked to a copy named chest_xray_224 is
    chest_xray_224 in the run folder's path, config.json, the results page and resume alike."""
    root = Path(root).expanduser().resolve()
    return root.stem if is_npz(root) else root.name


def sample_note(root: str | os.PathLike, n_images: int) -> str | None:
    """Why outputs made from the embedded sample are not results (callers add "not a result"),
    or None for a dataset."""
    if dataset_label(root) != EMBEDDED_SAMPLE:
        return None
    return f"embedded sample ({n_images} images)"


def _class_dir(split_dir: Path, class_name: str) -> Path:
    class_dir = split_dir / class_name
    if not class_dir.is_dir():
        found = ", ".join(sorted(p.name for p in split_dir.iterdir() if p.is_dir())) or "none"
        raise UserError(
            f"missing folder {class_dir} (found: {found}): class folders must be named "
            f"{' and '.join(FOLDER_CLASSES)}"
        )
    return class_dir


def scan_dataset(root: str | os.PathLike) -> pd.DataFrame:
    """One row per file: path, relpath, split, label, class_name, patient, bytes, mtime_ns.

    OS junk files are ignored; every other file is listed, so that a non-image is reported
    as a bad file rather than silently dropped.
    """
    root = find_dataset_root(root)
    if is_npz(root):
        return scan_npz(root, SPLITS, FOLDER_CLASSES)
    rows = []
    for split in SPLITS:
        split_dir = root / split
        if not split_dir.is_dir():
            continue  # the Mendeley layout has no val/
        for label, class_name in enumerate(FOLDER_CLASSES):
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
    records.attrs["root"] = str(Path(root).resolve())  # absolute, links followed: one name
    return records
