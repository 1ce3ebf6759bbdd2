"""Where the runs of the results are kept: runs/results/<dataset>/<recipe>-seed<N> (the smoke
profile's under runs/smoke/), one folder per dataset, so that a run is never taken for a
result of data it was not trained on."""

from __future__ import annotations

import os
import re
from pathlib import Path

from pneumo_utils.data.files import dataset_label, find_dataset_root
from pneumo_utils.runtime.errors import UserError

# A run folder of the results: <recipe>-seed<N> (run_name), under runs/results/<dataset>.
RUN_NAME = re.compile(r"^(?P<recipe>.+)-seed(?P<seed>\d+)$")


def run_name(recipe: str, seed: int) -> str:
    """The folder name of one recipe at one seed."""
    return f"{recipe}-seed{seed}"


def dataset_name(data: str | os.PathLike) -> str:
    """The name runs on a dataset are kept under: the folder name of its root."""
    try:
        return dataset_label(find_dataset_root(data))
    except UserError:  # not there (yet): its folder name still keeps its runs apart
        return dataset_label(data)


def results_dir(runs_root: Path, data: str | os.PathLike, profile: str = "full") -> Path:
    """Where the runs on one dataset live: runs/results/<dataset> (smoke: runs/smoke/...).

    Runs are kept apart per dataset, so a run is never taken for a result of data it was not
    trained on.
    """
    return runs_root / ("results" if profile == "full" else "smoke") / dataset_name(data)


def run_folder(
    runs_root: Path, data: str | os.PathLike, recipe: str, seed: int, profile: str = "full"
) -> Path:
    """The one place a run's folder is named: <runs>/results/<dataset>/<recipe>-seed<N>."""
    return results_dir(runs_root, data, profile) / run_name(recipe, seed)
