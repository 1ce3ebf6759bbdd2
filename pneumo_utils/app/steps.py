"""The notebooks' named steps (data, weights, training), each from the dataset where it is here,
else from the committed files: the run folders under runs/results/<COMMITTED_DATASET> and the
dataset's summary under data/summaries/. So a fresh clone with no data shows the report, and
`pytest --nbval` checks it against the committed outputs."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pneumo_utils.analysis.audit import image_properties
from pneumo_utils.app.pipeline import train
from pneumo_utils.app.settings import Settings, repo_root, shown_path
from pneumo_utils.config import TrainConfig
from pneumo_utils.data.dataset import load_run_data, make_splits
from pneumo_utils.data.files import EMBEDDED_SAMPLE
from pneumo_utils.model import load_imagenet_weights
from pneumo_utils.results.folders import dataset_name
from pneumo_utils.runtime.errors import UserError, WeightsUnavailable
from pneumo_utils.training import runs

SUMMARIES = Path("data") / "summaries"  # <dataset>.csv.gz: `python -m pneumo_utils audit --csv`


def summary_file(settings: Settings) -> Path:
    return repo_root() / SUMMARIES / f"{dataset_name(settings.runs_data)}.csv.gz"


def dataset_summary(settings: Settings) -> pd.DataFrame:
    """One row per file: split, class, patient, and the audit's file and pixel properties;
    measured on the dataset here, else read from its committed summary."""
    if settings.has_data:
        print(f"measured on the dataset at {shown_path(settings.data)}")
        return image_properties(settings.data)
    path = summary_file(settings)
    if not path.is_file():
        raise UserError(
            f"no dataset at {shown_path(settings.data)} and no summary at {shown_path(path)}: "
            "set PNEUMO_DATA to the dataset (data/README.md)"
        )
    dataset = path.name.removesuffix(".csv.gz")
    print(f"no dataset here: the committed summary of {dataset} ({shown_path(path)})")
    return pd.read_csv(path)


def run_splits(config: TrainConfig, settings: Settings) -> dict[str, pd.DataFrame]:
    """The train/val/test files of a run of `config`: from the dataset here (as the training
    loads them), else the same carving (make_splits) of the committed summary's files."""
    if settings.has_data:
        return load_run_data(config, progress=False).splits
    return make_splits(dataset_summary(settings), config.val_fraction, config.seed)


def pictures_data(settings: Settings) -> Path:
    """The images the example figures show: the dataset here, else the embedded sample."""
    if settings.has_data:
        return settings.data
    print(f"pictures from the embedded sample (data/{EMBEDDED_SAMPLE}), not the whole dataset")
    return repo_root() / "data" / EMBEDDED_SAMPLE


def imagenet_weights(config: TrainConfig, settings: Settings) -> dict | None:
    """ImageNet's ResNet-18 weights where there is a dataset to train on and they can be had,
    else None, said in one line."""
    if not settings.has_data:
        print("no dataset here: nothing to fine-tune, so no ImageNet weights are loaded")
        return None
    try:
        state, provenance = load_imagenet_weights(config.weights)
    except WeightsUnavailable as error:
        print(f"no ImageNet weights: {error}")
        return None
    print(f"ImageNet weights: {provenance}")
    return state


def train_or_open(config: TrainConfig, run_dir: Path, settings: Settings) -> Path | None:
    """Train the run (or resume it, or leave a finished one as it is) where the dataset is here;
    else open the committed run. None, said in one line, where neither can be had."""
    if settings.has_data:
        try:
            return train(config, run_dir)
        except WeightsUnavailable as error:
            print(f"not trained: {error}")
            return None
    if runs.is_finished(run_dir):
        hardware = runs.open_run(run_dir).hardware
        print(f"no dataset here: the committed run {shown_path(run_dir)}, trained on {hardware}")
        return run_dir
    print(f"no dataset here and no finished run at {shown_path(run_dir)}: nothing to show")
    return None
