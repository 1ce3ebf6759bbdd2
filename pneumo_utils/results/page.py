"""The one results page, docs/results.md, and the README's results table: Markdown made from
the tables of results.py and robustness_tables.py, for a reader on GitHub."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from pneumo_utils.data.pneumoniamnist import NO_PATIENT_IDS
from pneumo_utils.recipes import FORMER_HEADLINES, HEADLINE, NEEDS_WEIGHTS, recipe_changes
from pneumo_utils.results.robustness_tables import (
    robustness_distance,
    robustness_reports,
    robustness_table,
    subgroup_table,
)
from pneumo_utils.results.screening import (
    ablation_table,
    crop_screening_table,
    frame_screening_table,
    screening_table,
)
from pneumo_utils.results.tables import (
    AIM,
    BAR,
    BAR_SEEDS,
    KERMANY,
    MEDMNIST_ROWS,
    TABLE_ROWS,
    TASK_METRICS,
    TASK_ROWS,
    TEST_METRICS,
    bar_distance,
    dataset_of,
    official_pretrained,
    results_table,
    seed_summary,
)
from pneumo_utils.runtime.fileio import atomic_write_text
from pneumo_utils.training import runs

# The figures of docs/results.md, with their captions.
FIGURE_CAPTIONS = {
    "robustness": "Test specificity and AUC against perturbation strength, the former headlines "
    "and the headline (a run that crops is perturbed as acquired, then cropped)",
    "frame_screening": "Frame-stressed validation loss per epoch: each framing lever",
    "failures": "The headline recipe's misclassified test images, worst first, with Grad-CAM",
    "reliability": "Reliability of the headline recipe's P(pneumonia), test and validation",
    "shortcut_screening": "Stressed validation loss per epoch: each lever against the base",
    "gradcam_shortcut": "Grad-CAM: improved recipe (top), shortcut-breaking recipe (bottom)",
    "gradcam_frame": "Grad-CAM: shortcut-breaking recipe, counter-framing, cropped to the body "
    "(top to bottom)",
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
    "medmnist_curves": "PneumoniaMNIST: accuracy per epoch, seed 0 of each recipe",
    "medmnist_confusion": "PneumoniaMNIST: confusion matrices on its test set, seed 0",
    "task_curves": "Bacterial vs viral and three classes: accuracy per epoch, seed 0",
    "task_per_class": "Three classes: accuracy per epoch and class, seed 0",
    "task_confusion": "Bacterial vs viral and three classes: test confusion matrices, seed 0",
}


# What the protocol column adds to each task's row.
TASK_NOTES = {
    "bacterial-viral": "; scored on the {test_images} PNEUMONIA test images",
    "bacterial-viral-crop": "; scored on the {test_images} PNEUMONIA test images",
    "three-class": "; macro F1 {macro_f1}",
}

# The validation set a run's checkpoint was chosen on, by the prefix of its select_metric.
SELECTION_NAMES = {
    "val": "validation",
    "stressed_val": "stressed validation",
    "frame_val": "frame-stressed validation",
    "pooled_val": "the clean, stressed and reframed validation sets",
    "reframed_val": "reframed validation",
}


def markdown_table(frame: pd.DataFrame) -> str:
    """A table as GitHub Markdown, the index as its first column: the one writer of tables."""
    header = [frame.index.name or "", *map(str, frame.columns)]
    rows = [
        [str(name), *map(str, row)] for name, row in zip(frame.index, frame.to_numpy(), strict=True)
    ]
    lines = [header, ["---"] * len(header), *rows]
    return "".join("| " + " | ".join(cells) + " |\n" for cells in lines)


def show(markdown: str):
    """Markdown (a table) rendered in a notebook, or printed elsewhere."""
    try:
        from IPython.display import Markdown, display
    except ImportError:
        print(markdown)
        return
    display(Markdown(markdown))


def published() -> pd.DataFrame:
    """Published results on the same 624 official test images (published.csv)."""
    with resources.files("pneumo_utils.results").joinpath("published.csv").open() as handle:
        return pd.read_csv(handle, dtype=str, keep_default_na=False)


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


def _our_rows(table: pd.DataFrame, rows: dict[str, str], note: str = "") -> list[list[str]]:
    """One row per recipe of `rows` that has runs in `table`: mean ± sd over its seeds."""
    summary = seed_summary(table)
    extras = seed_summary(table, {"accuracy_at_0_5": "at 0.5", "macro_f1": "macro F1"})
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
        extra = note.format(
            accuracy_at_0_5=extras.loc[recipe, "at 0.5"],
            macro_f1=extras.loc[recipe, "macro F1"],
            test_images=chosen["test_images"],
        )
        decided = (
            f"model and threshold chosen on {selection}"
            if chosen["task"] != "three-class"
            else f"model chosen on {selection}, most probable class"
        )
        cells.append(
            [
                f"**ours**: {title}{flag}",
                f"ResNet-18 from scratch, {chosen['image_size']} px",
                *(row[label] for label in TEST_METRICS.values()),
                f"`{recipe}`, {seeds} {row['seeds']}; {decided}; "
                f"trained on `{chosen['dataset']}`, {train_sizes} training images{extra}; "
                f"{chosen['hardware']}",
            ]
        )
    return cells


def results_markdown(
    table: pd.DataFrame,
    pretrained_run: Path | None = None,
    rows: dict[str, str] = TABLE_ROWS,
    medmnist: pd.DataFrame | None = None,
) -> str:
    """The README's results table: our recipes (named in `rows`) beside the published results,
    and our PneumoniaMNIST runs (`medmnist`, from collect_runs) beside MedMNIST's.

    `pretrained_run` is a finished run from the official ImageNet weights, or None.
    """
    cells = _our_rows(table, rows)
    for recipe, title in TASK_ROWS.items():
        cells.extend(_our_rows(table, {recipe: title}, TASK_NOTES[recipe]))
    if medmnist is not None:
        note = f"; accuracy at 0.5 (MedMNIST's ACC) {{accuracy_at_0_5}}; {NO_PATIENT_IDS}"
        cells.extend(_our_rows(medmnist, MEDMNIST_ROWS, note))
    cells.append(_pretrained_row(pretrained_run))
    cells.append(
        ["our bar (scratch)", "ResNet-18 from scratch", f"≥ {BAR['accuracy']}", "",
         f"≥ {BAR['specificity']}", f"≥ {BAR['roc_auc']}",
         f"mean of {BAR_SEEDS} seeds, chosen on validation only"]
    )  # fmt: skip
    cells.extend(published().to_numpy().tolist())
    header = ["source", "model", "accuracy", "sensitivity", "specificity", "AUC", "protocol"]
    return markdown_table(pd.DataFrame(cells, columns=header).set_index("source"))


# The README's short table: its rows, and the published and target rows beside them.
README_ROWS = {
    "baseline-128px": "the course report's protocol",
    "shortcut-all": "acquisition shortcuts broken",
    "frame-counter": "counter-framing",
    HEADLINE: "cropped to the body (headline)",
    "bacterial-viral-crop": "bacterial vs viral, cropped",
}


def readme_table(table: pd.DataFrame) -> str:
    """The README's results table (at most 8 rows): mean ± sd over seeds on the official test
    set, the AUC with the lungs covered (the frame alone: 0.5 is the aim), where each was
    trained; Kermany et al.'s published model and the bar beside them."""
    summary = seed_summary(table)
    rows = []
    for recipe, title in README_ROWS.items():
        if recipe not in summary.index:
            continue
        chosen = table[table["recipe"] == recipe]
        covered = [
            row["roc_auc"]
            for report in robustness_reports(table, recipe)
            for row in report["perturbations"]
            if row["family"] == "lungs covered"
        ]
        rows.append(
            {
                "recipe": f"`{recipe}`: {title}",
                "seeds": summary.loc[recipe, "seeds"],
                **{
                    label: summary.loc[recipe, label].replace(" (1 seed)", "")
                    for label in TEST_METRICS.values()
                },  # fmt: skip
                "AUC, lungs covered": f"{np.mean(covered):.3f}" if covered else "–",
                "trained on": " and ".join(sorted(set(chosen["hardware"]))),
            }
        )
    kermany = {TEST_METRICS[key]: f"{value:.3f}" for key, value in KERMANY.items()}
    bar = {TEST_METRICS[key]: f"≥ {value}" for key, value in BAR.items()}
    rows.append({"recipe": "Kermany et al. 2018, Inception-V3 from ImageNet, chosen on test",
                 **kermany})  # fmt: skip
    rows.append({"recipe": "the bar (5 seeds, chosen on validation only)", **bar,
                 "AUC, lungs covered": "≤ 0.60"})  # fmt: skip
    return markdown_table(pd.DataFrame(rows).set_index("recipe").fillna(""))


def write_results_page(
    table: pd.DataFrame,
    figures: Path,
    path: Path,
    notebook_runs: dict[str, Path] | None = None,
    n_resamples: int = 1000,
    medmnist: pd.DataFrame | None = None,
) -> Path:
    """docs/results.md, the one results page: every table and figure of the results, for a
    reader on GitHub, written by notebook 04 (`reproduce` refreshes it). Figures are linked
    from `figures`; a table or figure whose runs are not there is left out."""
    link = Path(os.path.relpath(figures, path.parent)).as_posix()

    def figure(name: str) -> str:
        caption = FIGURE_CAPTIONS[name]
        if not (figures / f"{name}.png").exists():
            return ""
        return f"![{caption}]({link}/{name}.png)\n\n*{caption}*\n"

    notebook_runs = notebook_runs or {}
    sections = [
        _summary_section(table, official_pretrained(notebook_runs), medmnist),
        *_robustness_sections(table),
        "\n".join(figure(name) for name in ("robustness", "reliability", "failures")),
        *_screening_sections(table, figure),
    ]
    tasks = table[table["recipe"].isin(list(TASK_ROWS))]
    if not tasks.empty:
        sections.append(
            f"""## Bacterial vs viral pneumonia, and three classes (docs/tasks.md)

Kermany et al.'s second result is bacterial vs viral on the 390 PNEUMONIA test images: accuracy
0.907, sensitivity 0.886, specificity 0.909, AUC 0.940 (chosen on the test set). Ours, mean ±
sd over seeds; for three classes sensitivity and specificity are NORMAL against the rest:

{markdown_table(seed_summary(tasks, TASK_METRICS))}
{_task_robustness(tasks)}
{figure("task_curves")}
{figure("task_per_class")}
{figure("task_confusion")}"""
        )
    if medmnist is not None:
        sections.append(
            f"""## PneumoniaMNIST (MedMNIST's split, 28 px; docs/medmnist.md)

{markdown_table(seed_summary(medmnist, {**TEST_METRICS, "accuracy_at_0_5": "accuracy at 0.5"}))}
{figure("medmnist_curves")}
{figure("medmnist_confusion")}"""
        )
    if notebook_runs:
        sections.append(_notebook_section(notebook_runs, n_resamples, figure))
    sections.append(
        f"""## The data and its shortcuts (notebook 01)

{figure("data_shortcut_audit")}
{figure("data_stressed_validation")}
{figure("data_class_counts")}"""
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, "\n".join(sections))
    return path


def _summary_section(
    table: pd.DataFrame, pretrained_run: Path | None, medmnist: pd.DataFrame | None
) -> str:
    """The results table beside published results, and the headline's distance from the bar,
    the aim and Kermany et al."""
    dataset = dataset_of(table)
    section = f"""# Results

Generated by `notebooks/04_compare.ipynb` from the runs in `runs/results/{dataset}/` (every
table and figure below: that dataset only); `python -m pneumo_utils reproduce` refreshes it.
Do not edit by hand. Every number was computed on the official 624-image test set *after* the
model, its epoch and its threshold were chosen on validation; the test set chose nothing.
Intervals are 95% bootstrap intervals over test *patients* (all images of one patient together).

## Our runs beside published results

Mean ± sd over seeds (sd with ddof=1).

{results_markdown(table, pretrained_run, medmnist=medmnist)}"""
    if table[table["recipe"] == HEADLINE].empty:
        return section
    return f"""{section}
### Distance of the headline recipe from the bar (points; mean of its seeds)

{markdown_table(bar_distance(table, HEADLINE))}
### From the aim

{markdown_table(bar_distance(table, HEADLINE, AIM))}
### From Kermany et al. 2018

{markdown_table(bar_distance(table, HEADLINE, KERMANY))}"""


def _task_robustness(tasks: pd.DataFrame) -> str:
    """The bacterial-viral runs' robustness reports (three classes have none), or nothing."""
    found = robustness_reports(tasks, "bacterial-viral")
    if not found:
        return ""
    return f"""Robustness of `bacterial-viral` ({len(found)} seeds' robustness.json): each family at
its middle strength, at each run's own threshold (sensitivity: VIRAL, specificity: BACTERIAL):

{markdown_table(robustness_table(found))}"""


def _robustness_sections(table: pd.DataFrame) -> list[str]:
    """The robustness table, subgroups and distance from the bar, old and new headlines."""
    sections = []
    for recipe in (*FORMER_HEADLINES, HEADLINE):
        if found := robustness_reports(table, recipe):
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
    return sections


def _screening_sections(table: pd.DataFrame, figure) -> list[str]:
    """The frame and shortcut screenings, and validation at the selected epoch of every run."""
    sections = []
    try:
        crop = crop_screening_table(Path(table["run"].iloc[0]).parent)
    except ValueError:  # not every arm is among these runs: the screening is left out
        crop = None
    if crop is not None:
        sections.append(
            f"""## The crop screening (seed 0, chosen on the pooled validation sets)

The rule (docs/frame.md): the lowest pooled validation loss (the mean of the clean, stressed
and reframed validation losses) over the epochs; arms within 0.005 of the best are decided by
the mean over the last 5 epochs. Validation numbers only.

{markdown_table(crop)}"""
        )
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
    return sections


def _notebook_section(notebook_runs: dict[str, Path], n_resamples: int, figure) -> str:
    """The notebook runs with bootstrap intervals, and the course report's Figures 1-4."""
    intervals = results_table(notebook_runs, {}, n_resamples)
    return f"""## The notebook runs (seed 0 of each notebook recipe)

{markdown_table(intervals)}
{figure("fig1_loss")}
{figure("fig2_accuracy")}
{figure("fig3_loss_per_class")}
{figure("fig4_accuracy_per_class")}
{figure("confusion_matrices")}
{figure("roc_curves")}
{figure("gradcam")}"""
