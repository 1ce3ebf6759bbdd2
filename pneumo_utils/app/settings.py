"""What the notebooks read from the environment, and where their runs and figures go.

PNEUMO_DATA     dataset root                          (default data/chest_xray); `none`: no
                dataset, the notebooks show the committed runs and the committed summary of
                their dataset (what `pytest --nbval` and `notebooks --save` use)
PNEUMO_RUNS     root of the run folders               (default runs/)
PNEUMO_FIGURES  where the notebooks' figures go       (default: figures_folder below)
PNEUMO_WEIGHTS  ImageNet weights file for notebook 03 (default: torchvision's cache)
PNEUMO_PROFILE  full: the recipes as they are (default); smoke: the same recipes shrunk to
                seconds (64 px, 2 epochs of 2 batches), for CI
Relative paths count from the repository folder.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd

from pneumo_utils.config import TrainConfig
from pneumo_utils.data.dataset import dataset_fingerprint
from pneumo_utils.data.files import EMBEDDED_SAMPLE
from pneumo_utils.recipes import (
    HEADLINE,
    NEEDS_WEIGHTS,
    PRETRAINED_RECIPES,
    RECIPES,
    REPORT_HYPERPARAMETERS,
    changed_settings,
    protocol_of,
    recipe_config,
)
from pneumo_utils.results.folders import dataset_name, results_dir, run_folder
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.training import runs

PROFILES = ("full", "smoke")
NO_DATASET = "none"  # PNEUMO_DATA=none: the committed files only, whatever data is here
# The dataset the committed runs (runs/results/<it>), figures/ and docs/results.md are on.
COMMITTED_DATASET = "chest_xray_224"
# The recipe of each role in the notebooks: 02 trains the course report's protocol and the
# headline recipe, 03 the same two from ImageNet, 04 compares the four.
NOTEBOOK_RECIPES = {
    "protocol": "baseline-224px",
    "headline": HEADLINE,
    "pretrained-protocol": "pretrained-protocol",
    "pretrained": "pretrained",
}


def repo_root() -> Path:
    """The repository folder when pneumo_utils runs from a checkout, else the working folder."""
    package_parent = Path(__file__).resolve().parents[2]  # above pneumo_utils/
    return package_parent if (package_parent / "notebooks").is_dir() else Path.cwd()


def shown_path(path: str | os.PathLike) -> str:
    """A path as the notebooks print it: from the repository folder where it is inside it, so
    that a notebook's output is the same in every clone."""
    try:
        return Path(path).resolve().relative_to(repo_root()).as_posix()
    except ValueError:
        return str(path)


def default_data() -> Path:
    """The dataset every command and notebook uses when none is given: $PNEUMO_DATA, else
    data/chest_xray (relative paths from the repository folder), else, in the smoke profile
    only, the embedded sample (data/embedded_sample: not a result). The full profile never
    falls back to the sample: without a dataset it stops and says how to get one."""
    if os.environ.get("PNEUMO_DATA") == NO_DATASET:
        return no_dataset_folder()
    if os.environ.get("PNEUMO_DATA"):
        return repo_root() / Path(os.environ["PNEUMO_DATA"]).expanduser()
    readme_folder = repo_root() / "data" / "chest_xray"
    sample = repo_root() / "data" / EMBEDDED_SAMPLE
    smoke = os.environ.get("PNEUMO_PROFILE") == "smoke"
    return sample if smoke and not readme_folder.exists() and sample.is_dir() else readme_folder


def no_dataset_folder() -> Path:
    """The dataset folder of PNEUMO_DATA=none: one that is never there."""
    return repo_root() / "data" / NO_DATASET


def default_runs() -> Path:
    """The root of the run folders: $PNEUMO_RUNS, else runs/ in the repository folder."""
    return repo_root() / Path(os.environ.get("PNEUMO_RUNS") or "runs").expanduser()


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

    @property
    def has_data(self) -> bool:
        """Whether the dataset is here; without it the notebooks show the committed files."""
        return self.data.exists()

    @property
    def committed_files_only(self) -> bool:
        """PNEUMO_DATA=none: the committed files, whatever dataset is on this machine."""
        return self.data == no_dataset_folder()

    @property
    def runs_data(self) -> Path:
        """The dataset whose runs the notebooks show: the one here, else the one named where
        there are runs on it (PNEUMO_DATA=chest_xray_224 needs no images), else the committed
        runs' dataset."""
        if self.has_data or results_dir(self.runs, self.data, self.profile).is_dir():
            return self.data
        return Path(COMMITTED_DATASET)

    @property
    def bootstrap_resamples(self) -> int:
        """Patient-bootstrap resamples of the test metrics: fewer in the smoke profile."""
        return 200 if self.is_smoke else 1000

    @property
    def results_page(self) -> Path:
        """docs/results.md beside the committed figures/; beside the figures otherwise (smoke
        runs, other data, PNEUMO_FIGURES), so that neither overwrites the committed page."""
        committed = repo_root() / "figures"
        return (
            repo_root() / "docs" / "results.md"
            if self.figures == committed
            else (self.figures / "results.md")
        )

    @property
    def results_dir(self) -> Path:
        """The runs on this dataset, in this profile (notebook 04 reads only these)."""
        return results_dir(self.runs, self.runs_data, self.profile)

    def run_dir(self, recipe: str, seed: int = 0) -> Path:
        return run_folder(self.runs, self.runs_data, recipe, seed, self.profile)


def notebook_settings() -> Settings:
    root = repo_root()
    profile = os.environ.get("PNEUMO_PROFILE", "full")
    if profile not in PROFILES:
        raise UserError(
            f"PNEUMO_PROFILE={profile!r} is not a profile: use one of {', '.join(PROFILES)}"
        )
    # Relative paths count from the repository folder, wherever the notebook kernel runs.
    data, runs = default_data(), default_runs()
    return Settings(
        data=data,
        runs=runs,
        profile=profile,
        figures=repo_root() / Path(os.environ["PNEUMO_FIGURES"]).expanduser()
        if os.environ.get("PNEUMO_FIGURES")
        else figures_folder(root, data, runs, profile),
        weights=os.environ.get("PNEUMO_WEIGHTS"),
    )


def figures_folder(root: Path, data: Path, runs_root: Path, profile: str) -> Path:
    """Where the notebooks' figures go. The committed figures/ holds the report's figures of
    the committed runs and their dataset: they go there when the dataset is absent (they are
    drawn from the committed runs alone) or is that dataset (the same file names and sizes).
    Figures of any other data (a partial copy, another dataset) go to runs/figures/<dataset>,
    and smoke figures beside the smoke runs, so that neither overwrites the report's."""
    if profile != "full":
        return runs_root / "smoke" / "figures"
    if not data.exists() or _is_committed_runs_data(data, results_dir(runs_root, data)):
        return root / "figures"
    return runs_root / "figures" / dataset_name(data)


def _is_committed_runs_data(data: Path, committed: Path) -> bool:
    """Whether `data` has the files (names and sizes) that the committed pneumonia-task runs
    in `committed` trained on."""
    for config in sorted(committed.glob(f"*/{runs.CONFIG}")):
        saved = runs.open_run(config.parent)
        if saved.task.name == "pneumonia" and saved.is_result:
            try:
                found = dataset_fingerprint(data, saved.data.get("skipped"))
            except UserError:  # not a dataset at all: other data
                return False
            return found == saved.data["fingerprint"]
    return False


def profile_config(role: str, settings: Settings, seed: int = 0) -> TrainConfig:
    """The configuration a notebook trains for a role of NOTEBOOK_RECIPES (or a recipe of
    recipes.TASK_RECIPES): its recipe, on the notebook's data, shrunk to seconds in the smoke
    profile."""
    recipe = NOTEBOOK_RECIPES.get(role, role)
    config = recipe_config(recipe, data=str(settings.data), seed=seed)
    if recipe in PRETRAINED_RECIPES:
        config = replace(config, weights=settings.weights)
    if settings.is_smoke:
        config = replace(config, **RECIPES["smoke"])
    return config


def hyperparameter_table(config: TrainConfig) -> pd.DataFrame:
    """The course report's hyperparameters and every recipe setting where `config` differs from
    the report's protocol (the TrainConfig defaults), side by side, each value as Python
    writes it; then the validation share and the seed."""
    protocol, values = asdict(protocol_of(config)), asdict(config)
    changed = changed_settings(config)
    shown = [*REPORT_HYPERPARAMETERS, *(k for k in changed if k not in REPORT_HYPERPARAMETERS)]
    shown += ["val_fraction", "seed"]
    return pd.DataFrame(
        {
            "course report": [str(protocol[k]) for k in shown],
            "this run": [str(values[k]) for k in shown],
        },
        index=pd.Index(shown, name="setting"),
    )


# ----------------------------------------------------------------------------- notebook runs


def finished_runs(settings: Settings) -> tuple[dict[str, Path], dict[str, str]]:
    """The finished run of each notebook role (protocol, headline, pretrained protocol,
    pretrained), and for each missing one what it needs."""
    finished, missing = {}, {}
    for role, recipe in NOTEBOOK_RECIPES.items():
        run = settings.run_dir(recipe)
        if runs.is_finished(run):
            finished[role] = run
        elif recipe in PRETRAINED_RECIPES:
            missing[role] = NEEDS_WEIGHTS
        else:
            missing[role] = f"no finished run at {run}: run notebooks/02"
    if not finished:
        raise UserError(
            f"no finished runs for {settings.data} in {settings.runs}: run notebooks 02 and 03 "
            "first"
        )
    return finished, missing
