"""The classification tasks: which images a run sees and which classes it tells apart.

`pneumonia` is the course report's task (NORMAL vs PNEUMONIA). Kermany et al.'s second result
tells bacterial from viral pneumonia among the PNEUMONIA images; `three-class` does both at
once. The pneumonia type is in the file names (personNNN_bacteria_MMM, personNNN_virus_MMM).

The acquisition confounds the shortcut and frame levers work against separate the NORMAL
folder from the PNEUMONIA folder, whatever the task: counter-framing and the stressed
validation copies follow the folder (column `folder_label`), not the task's label.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pneumo_utils.runtime.errors import UserError

if TYPE_CHECKING:  # the command line imports this module and must stay quick
    import pandas as pd

FOLDER_CLASSES = ("NORMAL", "PNEUMONIA")
_PNEUMONIA_TYPE = re.compile(r"_(bacteria|virus)_", re.IGNORECASE)


@dataclass(frozen=True)
class Task:
    name: str
    class_names: tuple[str, ...]
    description: str

    @property
    def binary(self) -> bool:
        """Two classes: class 1 is the positive one, scored by P(class 1) and a threshold."""
        return len(self.class_names) == 2

    @property
    def positive(self) -> str | None:
        return self.class_names[1] if self.binary else None

    @property
    def probability_columns(self) -> tuple[str, ...]:
        """The columns of a *_predictions.csv: P(positive class), or one per class."""
        if self.name == "pneumonia":
            return ("p_pneumonia",)  # the name every run before the task setting wrote
        if self.binary:
            return (f"p_{self.positive.lower()}",)
        return tuple(f"p_{name.lower()}" for name in self.class_names)


TASKS = {
    "pneumonia": Task("pneumonia", FOLDER_CLASSES, "NORMAL vs PNEUMONIA (positive: PNEUMONIA)"),
    "bacterial-viral": Task(
        "bacterial-viral",
        ("BACTERIAL", "VIRAL"),
        "PNEUMONIA images only, bacterial vs viral (positive: VIRAL)",
    ),
    "three-class": Task(
        "three-class", ("NORMAL", "BACTERIAL", "VIRAL"), "NORMAL vs BACTERIAL vs VIRAL"
    ),
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise UserError(f"unknown --task {name!r}: choose one of {', '.join(TASKS)}")
    return TASKS[name]


def pneumonia_type(file_name: str) -> str | None:
    """BACTERIAL or VIRAL, read from a PNEUMONIA file's name; None when the name says neither."""
    match = _PNEUMONIA_TYPE.search(Path(file_name).stem)
    if not match:
        return None
    return "BACTERIAL" if match.group(1).lower() == "bacteria" else "VIRAL"


def task_records(records: pd.DataFrame, task: Task) -> pd.DataFrame:
    """The files of a task with its labels: `label` and `class_name` follow the task, and
    `folder_label` keeps the NORMAL (0) / PNEUMONIA (1) folder the confounds follow. A
    PNEUMONIA file whose name gives no type stops a task that needs it, with its name."""
    records = records.assign(folder_label=records["label"])
    if task.name == "pneumonia":
        return records
    if records.attrs.get("source") == "npz":
        raise UserError(
            f"--task {task.name} needs bacterial/viral labels, which PneumoniaMNIST's npz does "
            "not have: use a chest_xray folder, or --task pneumonia"
        )
    types = records["relpath"].map(pneumonia_type).where(records["folder_label"] == 1)
    untyped = records[(records["folder_label"] == 1) & types.isna()]
    if len(untyped):
        raise UserError(
            f"{len(untyped)} PNEUMONIA file(s) in {records.attrs['root']} say neither bacteria nor "
            f"virus in their name (e.g. {untyped['relpath'].iloc[0]}), so --task {task.name} "
            "cannot label them: rename them personNNN_bacteria_MMM / personNNN_virus_MMM, or "
            "use --task pneumonia"
        )
    class_names = types.fillna("NORMAL")
    keep = class_names.isin(task.class_names)
    records = records[keep].assign(class_name=class_names[keep])
    records["label"] = records["class_name"].map(task.class_names.index).astype(int)
    return records
