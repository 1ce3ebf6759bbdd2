"""The results table: which runs it reports, and the tables and summaries made from them.

Two sources. The notebooks' runs (seed 0 of the scratch and pretrained recipes) give the
per-model table with bootstrap intervals (figures/results.md). The recipe × seed runs under
runs/results/<dataset>/<recipe>-seed<N> (REPORTED_RUNS) give the README's table: mean ± sd
over seeds beside published results, the validation ablation, and the distance from the bar.
Test numbers are only read here; every choice was made on validation.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from . import runs
from .cache import decode_xray
from .config import HEADLINE, PREVIOUS_HEADLINE, recipe_changes
from .dataset import CLASS_NAMES
from .errors import UserError
from .evaluate import BOOTSTRAP_METRICS, bootstrap_intervals, prediction_patients
from .fileio import atomic_write_text
from .settings import NOTEBOOK_RECIPES, PRETRAINED_RECIPES, Settings

# The shortcut screening: each lever against the improved recipe chosen on stressed validation.
SCREENING = ("improved-stressed-val", "shortcut-geometry", "shortcut-intensity",
             "shortcut-encoding", "shortcut-all")  # fmt: skip
# The frame screening (docs/frame.md): shortcut-all against each framing lever, seed 0.
FRAME_SCREENING = ("shortcut-all", "frame-counter", "frame-jitter", "frame-all")
# The frame rule's score: the lowest frame-stressed validation loss over the epochs, and its
# tie-breaker, the mean over the last FRAME_LATE epochs.
FRAME_LATE = 5
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
    PREVIOUS_HEADLINE: (0, 1, 2),
    **{recipe: (0,) for recipe in FRAME_SCREENING},
    HEADLINE: (0, 1, 2, 3, 4),
}
# The recipes of the README's results table, in order, with the name each row shows.
TABLE_ROWS = {
    "baseline-128px": "the course report's protocol",
    "baseline-224px": "the course report's protocol",
    "improved-128px": "improved recipe",
    PREVIOUS_HEADLINE: "shortcut-breaking recipe",
    HEADLINE: "counter-framing recipe (headline)",
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
# The screening as pairs for the ablation figure: each lever against the base.
SCREENING_PAIRS = {
    "geometry": ("improved-stressed-val", "shortcut-geometry"),
    "intensity": ("improved-stressed-val", "shortcut-intensity"),
    "encoding": ("improved-stressed-val", "shortcut-encoding"),
    "all three": ("improved-stressed-val", "shortcut-all"),
}
# The frame screening as pairs: each framing lever against shortcut-all.
FRAME_SCREENING_PAIRS = {
    "counter-framing": ("shortcut-all", "frame-counter"),
    "framing variety": ("shortcut-all", "frame-jitter"),
    "everything": ("shortcut-all", "frame-all"),
}
ABLATION_SEED = 0
# Grad-CAM figures of notebook 04: figure name -> the recipes it compares (seed 0).
GRADCAM_PAIRS = {
    "gradcam_baseline_224px": ("baseline-224px",),
    "gradcam_shortcut": ("improved-stressed-val", "shortcut-all"),
    "gradcam_frame": (PREVIOUS_HEADLINE, HEADLINE),
}
# The frame issue's bar for ResNet-18 from scratch (mean of 5 seeds, unperturbed test set), its
# aim, and Kermany et al.'s published numbers (their model chosen on the test set).
BAR = {"accuracy": 0.95, "roc_auc": 0.985, "specificity": 0.92}
AIM = {"accuracy": 0.96, "roc_auc": 0.99, "specificity": 0.94}
KERMANY = {"accuracy": 0.928, "sensitivity": 0.932, "specificity": 0.901, "roc_auc": 0.968}
BAR_SEEDS = 5
TEST_METRICS = {
    "accuracy": "accuracy",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "roc_auc": "AUC",
}
VAL_METRICS = {
    "val_loss": "val loss",
    "val_acc_NORMAL": "val NORMAL accuracy",
    "val_auc": "val AUC",
    "stressed_val_loss": "stressed val loss",
    "stressed_val_acc_NORMAL": "stressed val NORMAL accuracy",
    "stressed_val_auc": "stressed val AUC",
    "frame_val_loss": "frame val loss",
    "frame_val_acc_NORMAL": "frame val NORMAL accuracy",
    "frame_val_auc": "frame val AUC",
}
# The figures of docs/results.md, with their captions.
FIGURE_CAPTIONS = {
    "robustness": "Test specificity and AUC against perturbation strength, old and new headline",
    "frame_screening": "Frame-stressed validation loss per epoch: each framing lever",
    "failures": "The headline recipe's misclassified test images, worst first, with Grad-CAM",
    "reliability": "Reliability of the headline recipe's P(pneumonia), test and validation",
    "shortcut_screening": "Stressed validation loss per epoch: each lever against the base",
    "gradcam_shortcut": "Grad-CAM: improved recipe (top), shortcut-breaking recipe (bottom)",
    "gradcam_frame": "Grad-CAM: shortcut-breaking recipe (top), counter-framing headline (bottom)",
    "ablation": "The validation ablation of the improved recipe (clean validation)",
    "val_vs_test": "Validation against test accuracy per epoch, recipes of the table",
    "fig1_loss": "Report Figure 1: loss per epoch, the course report's protocol",
    "fig2_accuracy": "Report Figure 2: accuracy per epoch (threshold 0.5)",
    "fig3_loss_per_class": "Report Figure 3: loss per epoch and class",
    "fig4_accuracy_per_class": "Report Figure 4: accuracy per epoch and class",
    "confusion_matrices": "Confusion matrices on the test set (threshold chosen on validation)",
    "roc_curves": "ROC on the test set",
    "gradcam": "Grad-CAM of the notebook models",
    "data_shortcut_audit": "Properties that are not anatomy, per split and class",
    "data_stressed_validation": "Validation images and their stressed and frame-stressed copies",
    "data_class_counts": "Images per split and class",
}
# The validation set a run's checkpoint was chosen on, by the prefix of its select_metric.
SELECTION_NAMES = {
    "val": "validation",
    "stressed_val": "stressed validation",
    "frame_val": "frame-stressed validation",
}
NEEDS_WEIGHTS = "needs ImageNet weights: run notebooks/03 with internet access"


def markdown_table(frame: pd.DataFrame) -> str:
    """A table as GitHub Markdown, the index as its first column: the one writer of tables."""
    header = [frame.index.name or "", *map(str, frame.columns)]
    rows = [
        [str(name), *map(str, row)] for name, row in zip(frame.index, frame.to_numpy(), strict=True)
    ]
    lines = [header, ["---"] * len(header), *rows]
    return "".join("| " + " | ".join(cells) + " |\n" for cells in lines)


def published() -> pd.DataFrame:
    """Published results on the same 624 official test images (published.csv)."""
    with resources.files("pneumo_utils").joinpath("published.csv").open() as handle:
        return pd.read_csv(handle, dtype=str, keep_default_na=False)


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


def with_checkpoints(finished: dict[str, Path]) -> dict[str, Path]:
    """The runs whose best.pt is on this machine (checkpoints are not committed)."""
    return {role: run for role, run in finished.items() if (run / runs.BEST).exists()}


def metrics_table(run: Path) -> pd.DataFrame:
    """A run's test metrics at its chosen threshold and at 0.5, from metrics.json."""
    metrics = runs.read_metrics(run)
    print(
        f"best epoch {metrics['best_epoch']} (on {metrics['selected_on']}), threshold "
        f"{metrics['test']['threshold']:.3f} (on {metrics['threshold_chosen_on']})"
    )
    shown = ["n", "accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc"]
    return pd.DataFrame(
        {"at the chosen threshold": metrics["test"], "at 0.5": metrics["test_at_0_5"]}
    ).loc[shown]


def show(markdown: str):
    """Markdown (a table) rendered in a notebook, or printed elsewhere."""
    try:
        from IPython.display import Markdown, display
    except ImportError:
        print(markdown)
        return
    display(Markdown(markdown))


def results_table(
    finished: dict[str, Path], missing: dict[str, str], n_resamples: int = 1000
) -> pd.DataFrame:
    """Test metrics with 95% bootstrap intervals, one column per model (missing ones say why)."""
    columns = {}
    for run in finished.values():
        predictions = runs.read_predictions(run)
        table = bootstrap_intervals(
            predictions["label"].to_numpy(),
            predictions["p_pneumonia"].to_numpy(),
            runs.run_threshold(run),
            groups=prediction_patients(predictions),
            n_resamples=n_resamples,
        )
        columns[runs.open_run(run).title] = [
            f"{r.value:.3f} [{r.low:.3f}, {r.high:.3f}]" for r in table.itertuples()
        ]
    for model, reason in missing.items():
        columns[model] = [reason] + [""] * (len(BOOTSTRAP_METRICS) - 1)
    return pd.DataFrame(columns, index=pd.Index(BOOTSTRAP_METRICS, name="test metric"))


def runs_with_checkpoints(recipes: Iterable[str], results_dir: Path) -> dict:
    """Seed 0 of each recipe, finished and with its best.pt on this machine (checkpoints are
    not committed)."""
    found = {recipe: results_dir / runs.run_name(recipe, 0) for recipe in recipes}
    return with_checkpoints({recipe: run for recipe, run in found.items() if runs.is_finished(run)})


def gradcam_examples(run: Path, per_class: int = 3) -> tuple[list[np.ndarray], list[int]]:
    """The first `per_class` test images of each class, decoded as the run saw them."""
    saved = runs.open_run(run)
    root, config = Path(saved.data["root"]), saved.config
    predictions = runs.read_predictions(run)
    images, labels = [], []
    for label in range(len(CLASS_NAMES)):
        for relpath in predictions[predictions["label"] == label]["relpath"][:per_class]:
            images.append(decode_xray(root / relpath, config.image_size, config.resize))
            labels.append(label)
    return images, labels


# ----------------------------------------------------------------------------- recipe × seed runs


def late_epochs(epochs: int) -> int:
    """The window of the ablation's second reading: the last quarter of a run's epochs."""
    return max(1, epochs // 4)


def collect_runs(results_dir: str | Path, include_smoke: bool = False) -> pd.DataFrame:
    """One row per finished run in `results_dir` (runs/results/<dataset>): recipe, seed, what
    it changes, its test and validation numbers. Smoke runs only with `include_smoke` (and
    then flagged in `title`); pretrained starts are not part of the scratch table. A run
    trained on another dataset than the folder's is refused: one page, one dataset."""
    results_dir = Path(results_dir)
    rows = []
    for run in sorted(results_dir.glob("*-seed*")):
        match = runs.RUN_NAME.match(run.name)
        if not match or not runs.is_finished(run):
            continue
        saved, metrics = runs.open_run(run), runs.read_metrics(run)
        if saved.weights or (saved.config.max_batches and not include_smoke):
            continue
        dataset = Path(saved.data["root"]).name
        if dataset != results_dir.name:
            raise UserError(
                f"{run} was trained on {dataset}, not {results_dir.name}: a results page shows "
                f"one dataset's runs; move it to {results_dir.parent / dataset}"
            )
        history = runs.completed_epochs(run).set_index("epoch")
        selected = history.loc[metrics["best_epoch"]]
        late = history.tail(late_epochs(saved.config.epochs))
        rows.append(
            {
                "recipe": match["recipe"],
                "seed": int(match["seed"]),
                "dataset": dataset,
                "not_a_result": saved.not_a_result,
                "changes": recipe_changes(saved.config),
                "image_size": saved.config.image_size,
                "best_epoch": metrics["best_epoch"],
                "selected_on": metrics["selected_on"],
                "train_images": saved.data["splits"]["train"],
                "test_images": metrics["test"]["n"],
                "hardware": saved.hardware,
                **{key: metrics["test"][key] for key in TEST_METRICS},
                **{key: float(selected.get(key, np.nan)) for key in VAL_METRICS},
                "late_val_loss": float(late["val_loss"].mean()),
                # Runs from before the stressed validation set have no such column.
                "late_stressed_val_loss": float(np.mean(late.get("stressed_val_loss", np.nan))),
                "run": run,
            }
        )
    if not rows:
        raise UserError(
            f"no finished runs in {results_dir}: train them with `python -m pneumo_utils "
            "reproduce` (or `train --recipe NAME --seed N --out <that folder>/NAME-seedN`)"
        )
    return pd.DataFrame(rows)


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


def _mean_sd(values: pd.Series, digits: int = 3) -> str:
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
        summary[label] = grouped[key].apply(_mean_sd)
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


def _pretrained_row(run: Path | None) -> list[str]:
    """Our pretrained model, only from a run that started from the official ImageNet weights."""
    if run is None:
        return ["**ours**: pretrained", "ResNet-18 ImageNet", NEEDS_WEIGHTS, "", "", "", ""]
    saved, test = runs.open_run(run), runs.read_metrics(run)["test"]
    config = saved.config
    return [
        "**ours**: pretrained",
        f"ResNet-18 ImageNet, frozen below {config.freeze}, {config.image_size} px",
        *(f"{test[key]:.3f} (1 seed)" for key in TEST_METRICS),
        f"seed {config.seed}; {recipe_changes(config)}; model and threshold chosen on "
        f"validation; {saved.hardware}",
    ]


def results_markdown(
    table: pd.DataFrame, pretrained_run: Path | None = None, rows: dict[str, str] = TABLE_ROWS
) -> str:
    """The README's results table: our recipes (named in `rows`) beside the published results.

    `pretrained_run` is a finished run from the official ImageNet weights, or None.
    """
    summary = seed_summary(table)
    cells = []
    for recipe, title in rows.items():
        if recipe not in summary.index:
            continue
        row = summary.loc[recipe]
        recipe_runs = table[table["recipe"] == recipe]
        chosen = recipe_runs.iloc[0]
        # Each seed carves its own validation patients, so the training set size varies a little.
        train_sizes = "–".join(str(n) for n in sorted(set(recipe_runs["train_images"])))
        selection = SELECTION_NAMES[chosen["selected_on"].rsplit("_", 1)[0]]
        seeds = "seeds" if len(recipe_runs) > 1 else "seed"
        flag = f" ({chosen['not_a_result']}: not a result)" if chosen["not_a_result"] else ""
        cells.append(
            [
                f"**ours**: {title}{flag}",
                f"ResNet-18 from scratch, {chosen['image_size']} px",
                *(row[label] for label in TEST_METRICS.values()),
                f"`{recipe}`, {seeds} {row['seeds']}; model and threshold chosen on {selection}; "
                f"trained on `{chosen['dataset']}`, {train_sizes} training images; "
                f"{chosen['hardware']}",
            ]
        )
    cells.append(_pretrained_row(pretrained_run))
    cells.append(
        ["our bar (scratch)", "ResNet-18 from scratch", f"≥ {BAR['accuracy']}", "",
         f"≥ {BAR['specificity']}", f"≥ {BAR['roc_auc']}",
         f"mean of {BAR_SEEDS} seeds, chosen on validation only"]
    )  # fmt: skip
    cells.extend(published().to_numpy().tolist())
    header = ["source", "model", "accuracy", "sensitivity", "specificity", "AUC", "protocol"]
    return markdown_table(pd.DataFrame(cells, columns=header).set_index("source"))


def official_pretrained(finished: dict[str, Path]) -> Path | None:
    """Notebook 03's run if it started from the official ImageNet weights (never a stand-in)."""
    run = finished.get("pretrained")
    return run if run is not None and runs.open_run(run).is_result else None


def _number(value: float) -> str:
    return "–" if np.isnan(value) else f"{value:.3f}"


def ablation_table(
    table: pd.DataFrame,
    recipes: Iterable[str] | None = None,
    order: tuple[str, ...] = ("seed", "recipe"),
) -> pd.DataFrame:
    """Validation numbers of every run at the epoch it selected, and late validation losses.

    Rows are grouped by seed: each seed carves its own validation patients, so runs compare
    within a seed. The selected epoch is the minimum of a noisy curve; the mean over the last
    quarter of the epochs says whether a recipe ends lower, not just dips lower once. Runs from
    before the stressed validation set have no stressed numbers (–).
    """
    if recipes is not None:
        table = table[table["recipe"].isin(list(recipes))]
    table = table.sort_values(list(order), kind="stable")
    columns = {
        "recipe": table["recipe"],
        "selected on": table["selected_on"].str.replace("_", " "),
        "selected epoch": table["best_epoch"],
        **{label: table[key].map(_number) for key, label in VAL_METRICS.items()},
        "val loss, last quarter": table["late_val_loss"].map(_number),
        "stressed val loss, last quarter": table["late_stressed_val_loss"].map(_number),
    }
    return pd.DataFrame(columns).set_index(table["seed"].rename("seed"))


def screening_table(table: pd.DataFrame) -> pd.DataFrame:
    """The shortcut screening at seed 0, best first: the rule's score, then its tie-breaker."""
    screening = table[table["seed"] == ABLATION_SEED]
    ranked = ablation_table(
        screening, SCREENING, order=("stressed_val_loss", "late_stressed_val_loss")
    )
    # The shortcut screening came before the frame-stressed set: its columns are left out.
    frame_columns = [VAL_METRICS[k] for k in VAL_METRICS if k.startswith("frame_")]
    return ranked.drop(columns=["val loss, last quarter", *frame_columns])


def frame_screening_table(table: pd.DataFrame) -> pd.DataFrame:
    """The frame screening at seed 0, ranked by the rule of docs/frame.md: the lowest
    frame-stressed validation loss over the epochs, then its mean over the last epochs."""
    screening = table[(table["seed"] == ABLATION_SEED) & table["recipe"].isin(FRAME_SCREENING)]
    rows = []
    for run in screening.itertuples():
        history = runs.completed_epochs(run.run).set_index("epoch")
        if "frame_val_loss" not in history:
            continue
        epoch = int(history["frame_val_loss"].idxmin())
        at = history.loc[epoch]
        rows.append(
            {
                "recipe": run.recipe,
                "score: lowest frame val loss": round(float(at["frame_val_loss"]), 4),
                "at epoch": epoch,
                f"frame val loss, last {FRAME_LATE}": round(
                    float(history["frame_val_loss"].tail(FRAME_LATE).mean()), 4
                ),
                "frame val NORMAL accuracy": _number(at["frame_val_acc_NORMAL"]),
                "frame val AUC": _number(at["frame_val_auc"]),
                "val loss": _number(at["val_loss"]),
                "stressed val loss": _number(at["stressed_val_loss"]),
            }
        )
    if not rows:
        return pd.DataFrame(columns=["recipe"]).set_index("recipe")
    ranked = pd.DataFrame(rows).sort_values(
        ["score: lowest frame val loss", f"frame val loss, last {FRAME_LATE}"]
    )
    return ranked.set_index("recipe")


def write_results_page(
    table: pd.DataFrame,
    figures: Path,
    path: Path,
    notebook_runs: dict[str, Path] | None = None,
    n_resamples: int = 1000,
) -> Path:
    """docs/results.md, the one results page: every table and figure of the results, for a
    reader on GitHub, written by notebook 04 (`reproduce` refreshes it). Figures are linked
    from `figures`; a table or figure whose runs are not there is left out."""
    link = Path(os.path.relpath(figures, path.parent)).as_posix()
    dataset = dataset_of(table)

    def figure(name: str) -> str:
        caption = FIGURE_CAPTIONS[name]
        if not (figures / f"{name}.png").exists():
            return ""
        return f"![{caption}]({link}/{name}.png)\n\n*{caption}*\n"

    notebook_runs = notebook_runs or {}
    pretrained_run = official_pretrained(notebook_runs)
    sections = [
        f"""# Results

Generated by `notebooks/04_compare.ipynb` from the runs in `runs/results/{dataset}/` (every
table and figure below: that dataset only); `python -m pneumo_utils reproduce` refreshes it.
Do not edit by hand. Every number was computed on the official 624-image test set *after* the
model, its epoch and its threshold were chosen on validation; the test set chose nothing.
Intervals are 95% bootstrap intervals over test *patients* (all images of one patient together).

## Our runs beside published results

Mean ± sd over seeds (sd with ddof=1).

{results_markdown(table, pretrained_run)}"""
    ]
    headline = table[table["recipe"] == HEADLINE]
    if not headline.empty:
        sections.append(
            f"""### Distance of the headline recipe from the bar (points; mean of its seeds)

{markdown_table(bar_distance(table, HEADLINE))}
### From the aim

{markdown_table(bar_distance(table, HEADLINE, AIM))}
### From Kermany et al. 2018

{markdown_table(bar_distance(table, HEADLINE, KERMANY))}"""
        )
    reports = {r: robustness_reports(table, r) for r in (PREVIOUS_HEADLINE, HEADLINE)}
    for recipe, found in reports.items():
        if found:
            sections.append(
                f"""## Robustness of `{recipe}` ({len(found)} seeds' robustness.json)

Each perturbation family of the test images at its middle strength, at each run's own
threshold, mean over the seeds (`docs/frame.md` lists the strengths).

{markdown_table(robustness_table(found))}
Subgroups and calibration:

{markdown_table(subgroup_table(found))}
Against the frame issue's bar and aim:

{markdown_table(robustness_distance(found))}"""
            )
    sections.append("\n".join(figure(name) for name in ("robustness", "reliability", "failures")))
    frame = frame_screening_table(table)
    if not frame.empty:
        sections.append(
            f"""## The frame screening (seed 0, chosen on the frame-stressed validation set)

{markdown_table(frame)}
{figure("frame_screening")}"""
        )
    sections.append(
        f"""## The shortcut screening (seed 0, chosen on the stressed validation set)

{markdown_table(screening_table(table))}
{figure("shortcut_screening")}
{figure("gradcam_shortcut")}
{figure("gradcam_frame")}
## Validation at the selected epoch, every run

{markdown_table(ablation_table(table))}
{figure("ablation")}
{figure("val_vs_test")}"""
    )
    if notebook_runs:
        intervals = results_table(notebook_runs, {}, n_resamples)
        sections.append(
            f"""## The notebook runs (seed 0 of each notebook recipe)

{markdown_table(intervals)}
{figure("fig1_loss")}
{figure("fig2_accuracy")}
{figure("fig3_loss_per_class")}
{figure("fig4_accuracy_per_class")}
{figure("confusion_matrices")}
{figure("roc_curves")}
{figure("gradcam")}"""
        )
    sections.append(
        f"""## The data and its shortcuts (notebook 01)

{figure("data_shortcut_audit")}
{figure("data_stressed_validation")}
{figure("data_class_counts")}"""
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(sections))
    return path


# ----------------------------------------------------------------------------- robustness


def robustness_reports(table: pd.DataFrame, recipe: str) -> list[dict]:
    """The robustness report of each seed of `recipe` that has one."""
    from .robustness import JSON, read_report

    chosen = table[table["recipe"] == recipe].sort_values("seed")
    return [read_report(run) for run in chosen["run"] if (Path(run) / JSON).exists()]


def failure_examples(run: Path) -> tuple[list[np.ndarray], list[dict]]:
    """The misclassified test images of a run's robustness report, worst first, decoded as the
    run saw them, and their rows (label, P(pneumonia))."""
    from .robustness import read_report

    saved, failures = runs.open_run(run), read_report(run)["failures"]
    root, config = Path(saved.data["root"]), saved.config
    images = [decode_xray(root / f["relpath"], config.image_size, config.resize) for f in failures]
    return images, failures


def robustness_table(reports: list[dict]) -> pd.DataFrame:
    """Each perturbation family at its middle strength (and the anatomy and occlusion tests),
    mean over the seeds' reports: sensitivity, specificity and AUC, and their changes from the
    unperturbed test set in points."""
    frames = [pd.DataFrame(report["perturbations"]) for report in reports]
    every = pd.concat([f.assign(seed=i) for i, f in enumerate(frames)], ignore_index=True)
    shown = every[every["middle"] | (every["kind"] != "natural")]
    grouped = shown.groupby(["family", "kind"], sort=False)
    rows = []
    for (family, kind), group in grouped:
        row = {"change": family, "kind": kind,
               "strength": "" if kind == "clean" else f"{group['strength'].iloc[0]:g}"}  # fmt: skip
        for metric, label in (("sensitivity", "sensitivity"), ("specificity", "specificity"),
                              ("roc_auc", "AUC")):  # fmt: skip
            row[label] = _mean_sd(group[metric])
            if kind != "clean":
                row[f"Δ {label} (points)"] = f"{100 * group[f'delta_{metric}'].mean():+.1f}"
        rows.append(row)
    return pd.DataFrame(rows).set_index("change").fillna("")


def subgroup_table(reports: list[dict]) -> pd.DataFrame:
    """Specificity of each NORMAL file family and sensitivity of bacterial and viral
    pneumonia, mean ± sd over the seeds' reports; ECE and Brier on test and validation."""
    rows = pd.DataFrame([g for report in reports for g in report["subgroups"]])
    table = rows.groupby(["subgroup", "class_name", "metric", "n"], sort=True)["value"].apply(
        _mean_sd
    )
    calibration = []
    for split in ("test", "val"):
        for key in ("ece", "brier"):
            values = pd.Series([r["calibration"][split][key] for r in reports])
            calibration.append(dict(subgroup=f"all {split}", class_name="both",
                                    metric=key.upper() if key == "ece" else "Brier",
                                    n=reports[0]["calibration"][split]["n"],
                                    value=_mean_sd(values)))  # fmt: skip
    return pd.concat([table.reset_index(), pd.DataFrame(calibration)]).set_index("subgroup")


# The frame issue's bar and aim on the perturbed test set (mean of the seeds' reports).
ROBUSTNESS_BAR = dict(points=5.0, auc_points=1.0, subgroup_specificity=0.90, ece=0.05)
ROBUSTNESS_AIM = dict(points=3.0, auc_points=1.0, lungs_covered_auc=0.65)


def robustness_distance(reports: list[dict]) -> pd.DataFrame:
    """For every natural family at middle strength, the worst of the seeds' mean changes, and
    whether the bar (sensitivity and specificity within 5 points, AUC within 1) and the aim
    (within 3 points) hold; then the subgroups, the ECE and the lungs-covered AUC."""
    frames = pd.concat([pd.DataFrame(r["perturbations"]) for r in reports], ignore_index=True)
    natural = frames[(frames["kind"] == "natural") & frames["middle"]]
    means = (
        natural.groupby("family", sort=False)[
            ["delta_sensitivity", "delta_specificity", "delta_roc_auc"]
        ].mean()
        * 100
    )
    rows = []
    for family, change in means.iterrows():
        worst_rate = max(abs(change["delta_sensitivity"]), abs(change["delta_specificity"]))
        auc = abs(change["delta_roc_auc"])
        rows.append(
            {
                "check": f"{family}: worst Δ sensitivity or specificity; Δ AUC",
                "value": f"{worst_rate:.1f}, {auc:.1f} points",
                "bar": bool(
                    worst_rate <= ROBUSTNESS_BAR["points"] and auc <= ROBUSTNESS_BAR["auc_points"]
                ),  # fmt: skip
                "aim": bool(
                    worst_rate <= ROBUSTNESS_AIM["points"] and auc <= ROBUSTNESS_AIM["auc_points"]
                ),  # fmt: skip
            }
        )
    groups = pd.DataFrame([g for r in reports for g in r["subgroups"]])
    for name, group in groups[groups["class_name"] == "NORMAL"].groupby("subgroup"):
        value = group["value"].mean()
        rows.append(dict(check=f"specificity of the {name} NORMAL files", value=f"{value:.3f}",
                         bar=bool(value >= ROBUSTNESS_BAR["subgroup_specificity"]),
                         aim=""))  # fmt: skip
    ece = np.mean([r["calibration"]["test"]["ece"] for r in reports])
    rows.append(dict(check="ECE on test", value=f"{ece:.3f}",
                     bar=bool(ece <= ROBUSTNESS_BAR["ece"]), aim=""))  # fmt: skip
    lungs = frames[frames["family"] == "lungs covered"]["roc_auc"].mean()
    rows.append(dict(check="AUC with the lungs covered", value=f"{lungs:.3f}", bar="",
                     aim=bool(lungs < ROBUSTNESS_AIM["lungs_covered_auc"])))  # fmt: skip
    table = pd.DataFrame(rows).set_index("check")
    table["seeds"] = len(reports)
    return table
