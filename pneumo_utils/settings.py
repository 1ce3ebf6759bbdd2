"""What the notebooks read from the environment, and the training profiles they run.

PNEUMO_DATA     dataset root                         (default data/chest_xray)
PNEUMO_RUNS     root of the run folders              (default runs/)
PNEUMO_WEIGHTS  ImageNet weights file for notebook 03 (default: torchvision's cache)
Relative paths count from the repository folder.
PNEUMO_PROFILE  full: the report's protocol, 224 px, 40 epochs (default)
                smoke: 64 px, 2 epochs of 2 batches, seconds per notebook, for CI
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

import pneumo_utils

from .errors import UserError
from .train import TrainConfig

PROFILES = ("full", "smoke")
# Frozen: stem, layer1, layer2 (edges and textures, generic across image types).
# Trained: layer3, layer4 and the new head, which must learn what pneumonia looks like.
PRETRAINED_FREEZE = "layer3"
# The run folder (under PNEUMO_RUNS/<profile>/) of each notebook's training.
RUN_NAMES = {"scratch": "scratch-seed0", "pretrained": "pretrained-seed0"}
# The settings a training recipe may change; the rest (data, device, workers...) do not define it.
RECIPE_SETTINGS = (
    "epochs",
    "batch_size",
    "lr",
    "weight_decay",
    "scheduler",
    "image_size",
    "dropout",
    "freeze",
    "unfreeze_after",
    "augment",
    "class_weighting",
    "weighted_sampling",
    "early_stopping",
    "select_metric",
)


def repo_root() -> Path:
    """The repository folder when pneumo_utils runs from a checkout, else the working folder."""
    package_parent = Path(pneumo_utils.__file__).resolve().parents[1]
    return package_parent if (package_parent / "notebooks").is_dir() else Path.cwd()


@dataclass(frozen=True)
class Settings:
    data: Path
    runs: Path
    profile: str
    figures: Path
    weights: str | None = None  # PNEUMO_WEIGHTS: an explicit ImageNet weights file

    @property
    def is_smoke(self) -> bool:
        return self.profile == "smoke"

    def run_dir(self, name: str) -> Path:
        return self.runs / self.profile / name


def notebook_settings() -> Settings:
    root = repo_root()
    profile = os.environ.get("PNEUMO_PROFILE", "full")
    if profile not in PROFILES:
        raise UserError(
            f"PNEUMO_PROFILE={profile!r} is not a profile: use one of {', '.join(PROFILES)}"
        )
    # Relative paths count from the repository folder, wherever the notebook kernel runs.
    data = root / Path(os.environ.get("PNEUMO_DATA", "data/chest_xray")).expanduser()
    runs = root / Path(os.environ.get("PNEUMO_RUNS", "runs")).expanduser()
    # Smoke figures are never results: they stay beside the smoke runs, out of figures/.
    figures = root / "figures" if profile == "full" else runs / "smoke" / "figures"
    return Settings(
        data=data,
        runs=runs,
        profile=profile,
        figures=figures,
        weights=os.environ.get("PNEUMO_WEIGHTS"),
    )


def profile_config(model: str, settings: Settings, seed: int = 0, **overrides) -> TrainConfig:
    """The training configuration a notebook uses for `model` under the active profile."""
    config = TrainConfig(model=model, data=str(settings.data), seed=seed)
    if model == "pretrained":
        config = replace(config, freeze=PRETRAINED_FREEZE, dropout=0.0, weights=settings.weights)
    if settings.is_smoke:
        config = replace(config, image_size=64, epochs=2, batch_size=16, max_batches=2)
    return replace(config, **overrides)


def hyperparameter_table(config: TrainConfig, baseline: TrainConfig | None = None) -> pd.DataFrame:
    """The settings that define a recipe; with `baseline`, only those that differ from it."""
    shown = ["model", *RECIPE_SETTINGS, "val_fraction", "seed", "max_batches"]
    values = asdict(config)
    if baseline is not None:
        reference = asdict(baseline)
        shown = [k for k in shown if values[k] != reference[k]]
    return pd.DataFrame(
        {"value": [values[k] for k in shown]}, index=pd.Index(shown, name="setting")
    )
