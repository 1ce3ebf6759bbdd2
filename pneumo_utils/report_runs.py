"""The report run: several recipes × seeds of the scratch model, summarised for the README.

Run folders under runs/report/ are named `<recipe>-seed<N>` (for example
`improved-128px-seed1`), so every seed of a recipe is grouped by name. Test numbers are
summarised as mean ± sd over seeds; the ablation that justifies a recipe reads validation
numbers only: at the epoch each run selected, and over its last epochs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from .compare import NEEDS_WEIGHTS, is_result
from .errors import UserError
from .fileio import atomic_write_text
from .settings import RECIPE_SETTINGS, repo_root
from .train import TrainConfig, completed_epochs, is_finished, read_config, read_metrics

RUN_NAME = re.compile(r"^(?P<recipe>.+)-seed(?P<seed>\d+)$")
TEST_METRICS = {
    "accuracy": "accuracy",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "roc_auc": "AUC",
}
VAL_METRICS = {
    "val_loss": "val loss",
    "val_acc": "val accuracy",
    "val_acc_NORMAL": "val NORMAL accuracy",
    "val_auc": "val AUC",
}
# The recipes of the README's results table, in order, with the name each row shows.
TABLE_ROWS = {
    "baseline-128px": "the course report's protocol",
    "baseline-224px": "the course report's protocol",
    "improved-128px": "improved recipe",
}
IMPROVED = "improved-128px"
# The validation ablation: each change against the recipe it was made to, at one seed.
ABLATIONS = {
    "improved recipe vs protocol": ("baseline-128px", "improved-128px"),
    "class weighting": (IMPROVED, "improved-no-class-weighting"),
    "augmentation": (IMPROVED, "improved-no-augment"),
    "cosine schedule": (IMPROVED, "improved-no-scheduler"),
    "dropout 0.5 vs 0.2": (IMPROVED, "improved-dropout0.2"),
    "resolution 128 vs 224 px": ("baseline-128px", "baseline-224px"),
}
ABLATION_SEED = 0
# What the report-run issue asks of ResNet-18 from scratch (mean over 3 seeds).
BAR = {"accuracy": 0.92, "roc_auc": 0.97, "specificity": 0.85}
BAR_SEEDS = 3
# The ablation's second reading of validation loss: where a recipe ends, not its lowest dip.
LATE_EPOCHS = 10


@dataclass(frozen=True)
class Published:
    source: str
    model: str
    accuracy: str
    sensitivity: str
    specificity: str
    auc: str
    protocol: str


# Published results on the same 624 official test images (see the report-run issue).
PUBLISHED = (
    Published(
        "Course report",
        "ResNet-18 pretrained",
        "≈0.82–0.87",
        "",
        "",
        "",
        "best of swinging epochs; 16-image val set",
    ),
    Published(
        "Course report",
        "ResNet-18 from scratch",
        "≈0.70–0.85",
        "",
        "",
        "",
        "best of swinging epochs; 16-image val set",
    ),
    Published(
        "Kermany et al., Cell 2018",
        "Inception-V3, ImageNet, frozen convolutions",
        "0.928",
        "0.932",
        "0.901",
        "0.968",
        "best model chosen on the test set",
    ),
    Published(
        "MedMNIST v2 (PneumoniaMNIST)",
        "ResNet-18 from scratch, 28 px upsampled to 224",
        "0.864",
        "",
        "",
        "0.956",
        "28 px source images",
    ),
    Published(
        "MedMNIST+",
        "ResNet-18 ImageNet, end to end, 224 px",
        "0.911",
        "",
        "",
        "0.980",
        "mean of 3 seeds",
    ),
    Published(
        "Typical published pattern",
        "various CNNs",
        "",
        "0.94–0.99",
        "0.52–0.92",
        "",
        "NORMAL is the hard class",
    ),
)


def default_report_dir() -> Path:
    return repo_root() / "runs" / "report"


def recipe_changes(config: dict) -> str:
    """The recipe settings that differ from the course report's protocol, as one line."""
    protocol = asdict(TrainConfig(model=config["model"]))
    changed = [
        f"{key}={config[key]}" for key in RECIPE_SETTINGS if config.get(key) != protocol[key]
    ]
    return ", ".join(changed) or "the report's protocol"


def collect_runs(report_dir: str | Path | None = None) -> pd.DataFrame:
    """One row per finished run: recipe, seed, what it changes, its test and validation numbers."""
    report_dir = Path(report_dir) if report_dir is not None else default_report_dir()
    rows = []
    for run in sorted(report_dir.glob("*-seed*")):
        match = RUN_NAME.match(run.name)
        if not match or not is_finished(run):
            continue
        saved, metrics = read_config(run), read_metrics(run)
        if saved["config"].get("max_batches") or saved.get("weights"):
            continue  # smoke runs and pretrained starts are not part of the scratch report run
        history = completed_epochs(run).set_index("epoch")
        selected = history.loc[metrics["best_epoch"]]
        rows.append(
            {
                "recipe": match["recipe"],
                "seed": int(match["seed"]),
                "changes": recipe_changes(saved["config"]),
                "image_size": saved["config"]["image_size"],
                "best_epoch": metrics["best_epoch"],
                "train_images": saved["data"]["splits"]["train"],
                "test_images": metrics["test"]["n"],
                "hardware": f"{saved['environment']['processor']} "
                f"({saved['environment']['device']})",
                **{key: metrics["test"][key] for key in TEST_METRICS},
                **{key: float(selected[key]) for key in VAL_METRICS},
                "late_val_loss": float(history["val_loss"].tail(LATE_EPOCHS).mean()),
                "run": run,
            }
        )
    if not rows:
        raise UserError(
            f"no finished report runs in {report_dir}: train them with "
            "`python -m pneumo_utils train --out runs/report/<recipe>-seed<N> ...` (see README)"
        )
    return pd.DataFrame(rows)


def histories(runs: pd.DataFrame, recipes: Iterable[str] | None = None) -> pd.DataFrame:
    """Every completed epoch of each run (only the runs of `recipes`, if given).

    Adds recipe, seed and `selected`: whether the epoch is the one chosen on validation.
    """
    if recipes is not None:
        runs = runs[runs["recipe"].isin(list(recipes))]
    frames = []
    for run in runs.itertuples():
        history = completed_epochs(run.run)
        frames.append(
            history.assign(
                recipe=run.recipe, seed=run.seed, selected=history["epoch"] == run.best_epoch
            )
        )
    return pd.concat(frames, ignore_index=True)


def _mean_sd(values: pd.Series, digits: int = 3) -> str:
    if len(values) == 1:
        return f"{values.iloc[0]:.{digits}f} (1 seed)"
    return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f}"


def seed_summary(runs: pd.DataFrame, metrics: dict[str, str] = TEST_METRICS) -> pd.DataFrame:
    """Mean ± sd over seeds of each recipe (sd with ddof=1; one seed says so)."""
    grouped = runs.groupby("recipe", sort=False)
    summary = grouped.agg(
        seeds=("seed", lambda s: ", ".join(str(v) for v in sorted(s))),
        changes=("changes", "first"),
    )
    for key, label in metrics.items():
        summary[label] = grouped[key].apply(_mean_sd)
    return summary


def bar_distance(runs: pd.DataFrame, recipe: str) -> pd.DataFrame:
    """How far a recipe's mean is from each target of the bar, in points (positive = met)."""
    chosen = runs[runs["recipe"] == recipe]
    rows = []
    for key, target in BAR.items():
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


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = [header, ["---"] * len(header), *rows]
    return "".join("| " + " | ".join(cells) + " |\n" for cells in lines)


def _frame_markdown(frame: pd.DataFrame) -> str:
    header = [frame.index.name or "", *map(str, frame.columns)]
    return _markdown_table(header, [[str(name), *map(str, row)] for name, row in frame.iterrows()])


def _pretrained_row(run: Path | None) -> list[str]:
    """Our pretrained model, only from a run that started from the official ImageNet weights."""
    if run is None:
        return ["**ours**: pretrained", "ResNet-18 ImageNet", NEEDS_WEIGHTS, "", "", "", ""]
    saved, test = read_config(run), read_metrics(run)["test"]
    config = saved["config"]
    return [
        "**ours**: pretrained",
        f"ResNet-18 ImageNet, frozen below {config['freeze']}, {config['image_size']} px",
        *(f"{test[key]:.3f} (1 seed)" for key in TEST_METRICS),
        f"seed {config['seed']}; {recipe_changes(config)}; model and threshold chosen on "
        f"validation; {saved['environment']['processor']} ({saved['environment']['device']})",
    ]


def results_markdown(
    runs: pd.DataFrame, pretrained_run: Path | None = None, rows: dict[str, str] = TABLE_ROWS
) -> str:
    """The README's results table: our recipes (named in `rows`) beside the published results.

    `pretrained_run` is a finished run from the official ImageNet weights, or None.
    """
    summary = seed_summary(runs)
    header = ["source", "model", "accuracy", "sensitivity", "specificity", "AUC", "protocol"]
    cells = []
    for recipe, title in rows.items():
        if recipe not in summary.index:
            continue
        row = summary.loc[recipe]
        recipe_runs = runs[runs["recipe"] == recipe]
        chosen = recipe_runs.iloc[0]
        # Each seed carves its own validation patients, so the training set size varies a little.
        train_sizes = "–".join(str(n) for n in sorted(set(recipe_runs["train_images"])))
        cells.append(
            [
                f"**ours**: {title}",
                f"ResNet-18 from scratch, {chosen['image_size']} px",
                *(row[label] for label in TEST_METRICS.values()),
                f"seeds {row['seeds']}; {row['changes']}; model and threshold chosen on "
                f"validation; {train_sizes} training images; "
                f"{chosen['hardware']}",
            ]
        )
    cells.append(_pretrained_row(pretrained_run))
    cells.append(
        [
            "our bar (scratch)",
            "ResNet-18 from scratch",
            f"≥ {BAR['accuracy']}",
            "",
            f"≥ {BAR['specificity']}",
            f"≥ {BAR['roc_auc']}",
            f"mean of {BAR_SEEDS} seeds, chosen on validation only",
        ]
    )
    for paper in PUBLISHED:
        cells.append(
            [
                paper.source,
                paper.model,
                paper.accuracy,
                paper.sensitivity,
                paper.specificity,
                paper.auc,
                paper.protocol,
            ]
        )
    return _markdown_table(header, cells)


def official_pretrained(finished: dict[str, Path]) -> Path | None:
    """Notebook 03's run if it started from the official ImageNet weights (never a stand-in)."""
    run = finished.get("pretrained")
    return run if run is not None and is_result(run) else None


def ablation_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Validation numbers of every run at the epoch it selected, and its late validation loss.

    Rows are grouped by seed: each seed carves its own validation patients, so runs compare
    within a seed. The selected epoch is the minimum of a noisy curve; the mean over the last
    epochs says whether a recipe ends lower, not just dips lower once.
    """
    table = runs.sort_values(["seed", "recipe"], kind="stable")
    columns = {
        "recipe": table["recipe"],
        "selected epoch": table["best_epoch"],
        **{label: table[key].map("{:.3f}".format) for key, label in VAL_METRICS.items()},
        f"val loss, mean of the last {LATE_EPOCHS} epochs": table["late_val_loss"].map(
            "{:.3f}".format
        ),
    }
    return pd.DataFrame(columns).set_index(table["seed"].rename("seed"))


def ablation_markdown(runs: pd.DataFrame) -> str:
    return _frame_markdown(ablation_table(runs))


def bar_markdown(runs: pd.DataFrame, recipe: str = IMPROVED) -> str:
    """How far `recipe` is from each target of our bar."""
    return _frame_markdown(bar_distance(runs, recipe))


def write_results_table(runs: pd.DataFrame, path: Path, pretrained_run: Path | None = None) -> Path:
    """figures/report_results.md: the tables the README shows."""
    text = (
        "# The report run beside published results (official 624-image test set)\n\n"
        "Our rows: mean ± sd over seeds (sd with ddof=1), best checkpoint and decision threshold "
        "chosen on validation only.\n\n"
        + results_markdown(runs, pretrained_run)
        + "\n## Validation at the selected epoch (the ablation)\n\n"
        + ablation_markdown(runs)
        + f"\n## Distance from our bar ({TABLE_ROWS[IMPROVED]}, test set)\n\n"
        + bar_markdown(runs)
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return path
