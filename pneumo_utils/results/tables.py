"""The runs behind the results: which are reported, and the tables made from them.

Two sources. The notebooks' runs (seed 0 of each notebook recipe) give the per-model table
with bootstrap intervals. The recipe × seed runs under runs/results/<dataset>/<recipe>-seed<N>
(REPORTED_RUNS) give mean ± sd over seeds and the distance from the bar; summary.py writes
them beside published results (and the README's table), screening.py the validation
evidence, page.py the page. Test numbers are only read; every choice was made on validation.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from pneumo_utils.data.files import find_dataset_root
from pneumo_utils.data.pneumoniamnist import NPZ_NAME, is_npz
from pneumo_utils.recipes import (
    FORMER_HEADLINES,
    HEADLINE,
    TASK_RECIPES,
    recipe_changes,
    titled,
)
from pneumo_utils.results.folders import RUN_NAME, run_name
from pneumo_utils.results.screening import (
    AVERAGING_SCREENING,
    CONSISTENCY_SCREENING,
    CROP_SCREENING,
    FAMILY_SCREENING,
    FAR_SCREENING,
    FRAME_SCREENING,
    SCREENING,
    VAL_METRICS,
    VIEW_SCREENING,
    late_epochs,
)
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.training import runs
from pneumo_utils.training.runs import with_checkpoints

# Every run the results table reports: recipe -> seeds.
REPORTED_RUNS: dict[str, tuple[int, ...]] = {
    "baseline-128px": (0, 1, 2),
    "baseline-224px": (0,),
    "improved-128px": (0, 1, 2),
    "improved-no-class-weighting": (0, 1),
    "improved-no-augment": (0,),
    "improved-no-scheduler": (0, 1),
    "improved-dropout0.2": (0, 1),
    **{recipe: (0,) for recipe in SCREENING},
    "shortcut-geometry": (0, 1),  # the runner-up of the screening, at a second seed
    **{recipe: (0,) for recipe in FRAME_SCREENING},
    "shortcut-all": (0, 1, 2),  # after the frame screening, whose seed-0 arm it also is
    "frame-counter": (0, 1, 2, 3, 4),
    **{recipe: (0,) for recipe in CROP_SCREENING},
    "crop-only": (0, 1, 2, 3, 4),
    "bacterial-viral": (0, 1, 2),
    "three-class": (0, 1, 2),
    "bacterial-viral-crop": (0, 1, 2),
    **{recipe: (0,) for recipe in VIEW_SCREENING},
    "view-variety": (0, 1, 2, 3, 4),
    **{recipe: (0, 1, 2) for recipe in TASK_RECIPES},
    **{recipe: (0,) for recipe in FAMILY_SCREENING},
    **{recipe: (0,) for recipe in CONSISTENCY_SCREENING},
    **{recipe: (0,) for recipe in AVERAGING_SCREENING},
    "family-control": (0, 1, 2, 3, 4),  # after the screenings whose seed-0 arm it is
    HEADLINE: (0, 1, 2, 3, 4),  # after AVERAGING_SCREENING, whose seed-0 arm it also is
    **{recipe: (0,) for recipe in FAR_SCREENING},
}
# PneumoniaMNIST's runs (docs/medmnist.md): MedMNIST's protocol and counter-framing's levers.
MEDMNIST_RUNS: dict[str, tuple[int, ...]] = {
    "medmnist-protocol": (0, 1, 2),
    "medmnist-headline": (0, 1, 2),
}
MEDMNIST_ROWS = titled(tuple(MEDMNIST_RUNS))
# The recipes of the results table, in order: the protocol, the improved recipe, the headlines.
TABLE_ROWS = titled(("baseline-128px", "baseline-224px", "improved-128px", *FORMER_HEADLINES,
                     HEADLINE))  # fmt: skip
# The other tasks' rows (docs/tasks.md), beside Kermany et al.'s bacterial vs viral result.
TASK_ROWS = titled(("bacterial-viral", "bacterial-viral-crop", "bacterial-viral-view",
                    "three-class", "three-class-view"))  # fmt: skip
# The task table: two-class and three-class metrics side by side (– where one does not apply).
TASK_METRICS = {
    "accuracy": "accuracy",
    "macro_f1": "macro F1",
    "roc_auc": "AUC (three classes: macro one-vs-rest)",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
}
# Grad-CAM figures of the results page: figure name -> the recipes it compares (seed 0).
GRADCAM_PAIRS = {
    "gradcam_baseline_224px": ("baseline-224px",),
    "gradcam_shortcut": ("improved-stressed-val", "shortcut-all"),
    "gradcam_frame": FORMER_HEADLINES,
}
# The frame issue's bar for ResNet-18 from scratch (mean of 5 seeds, unperturbed test set), its
# aim, and Kermany et al.'s published numbers (their model chosen on the test set).
BAR = {"accuracy": 0.95, "roc_auc": 0.985, "specificity": 0.92, "sensitivity": 0.95}
AIM = {"accuracy": 0.96, "roc_auc": 0.99, "specificity": 0.94}
KERMANY = {"accuracy": 0.928, "sensitivity": 0.932, "specificity": 0.901, "roc_auc": 0.968}
BAR_SEEDS = 5
TEST_METRICS = {
    "accuracy": "accuracy",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "roc_auc": "AUC",
}


def medmnist_runs(results_root: Path, include_smoke: bool = False) -> pd.DataFrame | None:
    """The finished PneumoniaMNIST runs beside the other datasets' (results_root is
    runs/results), or None."""
    folder = Path(results_root) / Path(NPZ_NAME).stem
    finished = any(runs.is_finished(run) for run in folder.glob("*-seed*"))
    return collect_runs(folder, include_smoke) if finished else None


def reported_runs(data: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """The runs the results report on `data`: PneumoniaMNIST's, or the Kermany table's."""
    try:
        root = find_dataset_root(data)
    except UserError:  # not there (yet): its name says which
        root = Path(data)
    return MEDMNIST_RUNS if is_npz(root) else REPORTED_RUNS


def runs_with_checkpoints(recipes: Iterable[str], results_dir: Path) -> dict:
    """Seed 0 of each recipe, finished and with its best.pt on this machine (checkpoints are
    not committed)."""
    found = {recipe: results_dir / run_name(recipe, 0) for recipe in recipes}
    return with_checkpoints({recipe: run for recipe, run in found.items() if runs.is_finished(run)})


# ----------------------------------------------------------------------------- recipe × seed runs


def collect_runs(results_dir: str | Path, include_smoke: bool = False) -> pd.DataFrame:
    """One row per finished run in `results_dir` (runs/results/<dataset>): recipe, seed, what
    it changes, its test and validation numbers. Smoke runs only with `include_smoke` (and
    then flagged in `title`); pretrained starts are not part of the scratch table. A run
    trained on another dataset than the folder's is refused: one page, one dataset."""
    results_dir = Path(results_dir)
    rows = []
    for run in sorted(results_dir.glob("*-seed*")):
        match = RUN_NAME.match(run.name)
        if not match or not runs.is_finished(run):
            continue
        saved, metrics = runs.open_run(run), runs.read_metrics(run)
        if saved.weights or (saved.config.max_batches and not include_smoke):
            continue
        dataset = saved.dataset
        if dataset != results_dir.name:
            raise UserError(
                f"{run} was trained on {dataset}, not {results_dir.name}: a results page shows "
                f"one dataset's runs; move it to {results_dir.parent / dataset}"
            )
        rows.append(_run_row(run, match, saved, metrics))
    if not rows:
        raise UserError(
            f"no finished runs in {results_dir}: train them with `python -m pneumo_utils "
            "reproduce` (or `train --recipe NAME --seed N --out <that folder>/NAME-seedN`)"
        )
    return pd.DataFrame(rows)


def _run_row(run: Path, match, saved: runs.SavedRun, metrics: dict) -> dict:
    """A finished run as one row: what it is, its test numbers, its validation numbers at the
    selected epoch and over its last epochs."""
    history = runs.completed_epochs(run).set_index("epoch")
    selected = history.loc[metrics["best_epoch"]]
    late = history.tail(late_epochs(saved.config.epochs))
    return {
        "recipe": match["recipe"],
        "seed": int(match["seed"]),
        "dataset": saved.dataset,
        "not_a_result": saved.not_a_result,
        "changes": recipe_changes(saved.config),
        "image_size": saved.config.image_size,
        "best_epoch": metrics["best_epoch"],
        "selected_on": metrics["selected_on"],
        "train_images": saved.data["splits"]["train"],
        "test_images": metrics["test"]["n"],
        "hardware": saved.hardware,
        "task": saved.config.task,
        **{key: metrics["test"][key] for key in TEST_METRICS},
        "macro_f1": metrics["test"].get("macro_f1", np.nan),
        "accuracy_at_0_5": metrics["test_at_0_5"]["accuracy"],
        **{key: float(selected.get(key, np.nan)) for key in VAL_METRICS},
        "late_val_loss": float(late["val_loss"].mean()),
        # Runs from before the stressed validation set have no such column.
        "late_stressed_val_loss": float(np.mean(late.get("stressed_val_loss", np.nan))),
        "run": run,
    }


def dataset_of(table: pd.DataFrame) -> str:
    """The one dataset a table's runs were trained on (collect_runs refuses a mix)."""
    return table["dataset"].iloc[0]


def histories(table: pd.DataFrame, recipes: Iterable[str] | None = None) -> pd.DataFrame:
    """Every completed epoch of each run (only the runs of `recipes`, if given).

    Adds recipe, seed and `selected`: whether the epoch is the one chosen on validation.
    """
    if recipes is not None:
        table = table[table["recipe"].isin(list(recipes))]
    frames = []
    for run in table.itertuples():
        history = runs.completed_epochs(run.run)
        frames.append(
            history.assign(
                recipe=run.recipe, seed=run.seed, selected=history["epoch"] == run.best_epoch
            )
        )
    return pd.concat(frames, ignore_index=True)


def mean_sd(values: pd.Series, digits: int = 3) -> str:
    if values.isna().all():
        return "–"
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f} (1 seed)"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def seed_summary(table: pd.DataFrame, metrics: dict[str, str] = TEST_METRICS) -> pd.DataFrame:
    """Mean ± sd over seeds of each recipe (sd with ddof=1; one seed says so)."""
    grouped = table.groupby("recipe", sort=False)
    summary = grouped.agg(
        seeds=("seed", lambda s: ", ".join(str(v) for v in sorted(s))),
        changes=("changes", "first"),
    )
    for key, label in metrics.items():
        summary[label] = grouped[key].apply(mean_sd)
    return summary


def bar_distance(table: pd.DataFrame, recipe: str, targets: dict[str, float] = BAR) -> pd.DataFrame:
    """How far a recipe's mean is from each target, in points (positive = met)."""
    chosen = table[table["recipe"] == recipe]
    rows = []
    for key, target in targets.items():
        mean = chosen[key].mean()
        rows.append(
            {
                "metric": TEST_METRICS[key],
                "target": f"≥ {target}",
                "mean": round(mean, 3),
                "distance (points)": round(100 * (mean - target), 1),
                "met": bool(mean >= target),
                "seeds": f"{len(chosen)} of {BAR_SEEDS}",
            }
        )
    return pd.DataFrame(rows).set_index("metric")


def official_pretrained(finished: dict[str, Path]) -> Path | None:
    """Notebook 03's run if it started from the official ImageNet weights (never a stand-in)."""
    run = finished.get("pretrained")
    return run if run is not None and runs.open_run(run).is_result else None
