"""The tables of the data that notebook 01 shows: images and patients per split and class,
and the patients or identical images that two splits share."""

from __future__ import annotations

import pandas as pd

from pneumo_utils.analysis.audit import content_hash
from pneumo_utils.tasks import FOLDER_CLASSES


def split_summary(splits: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Images per class and patients per split, as a table."""
    rows = []
    for name, frame in splits.items():
        counts = frame["class_name"].value_counts()
        rows.append(
            dict(
                split=name,
                **{c: int(counts.get(c, 0)) for c in FOLDER_CLASSES},
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


def patient_overlap(splits: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """For each pair of splits: patient ids found in both, and images identical by content.

    Patient ids in the official test set reuse the numbering of train (e.g. person1 exists in
    both) although the publishers state the patients are different; identical image content
    would be a real leak. Both are reported, nothing is dropped. Content is compared by the
    `sha256` column where the frames have it (the dataset summary), else by hashing the files.
    """
    hashes = {
        name: set(frame["sha256"] if "sha256" in frame else map(content_hash, frame["path"]))
        for name, frame in splits.items()
    }
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
