"""The one results page, docs/results.md: every table (summary.py, tables.py, screening.py,
robustness_tables.py) and figure across the runs, as Markdown for a reader on GitHub."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from pneumo_utils.recipes import FORMER_HEADLINES, HEADLINE
from pneumo_utils.results.comparison import results_table
from pneumo_utils.results.robustness_tables import (
    robustness_distance,
    robustness_reports,
    robustness_table,
    subgroup_table,
)
from pneumo_utils.results.screening import (
    CONSISTENCY_SCREENING,
    UnfinishedArm,
    ablation_table,
    averaging_screening_table,
    consistency_screening_table,
    crop_screening_table,
    family_arms_and_reference,
    family_blocks_table,
    family_screening_table,
    far_blocks_table,
    far_family_table,
    far_screening_table,
    frame_screening_table,
    logit_shift_table,
    screening_table,
    view_blocks_table,
    view_screening_table,
)
from pneumo_utils.results.summary import markdown_table, results_markdown
from pneumo_utils.results.tables import (
    AIM,
    KERMANY,
    TASK_METRICS,
    TASK_ROWS,
    TEST_METRICS,
    bar_distance,
    dataset_of,
    official_pretrained,
    seed_summary,
)
from pneumo_utils.runtime.fileio import atomic_write_text

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


def write_results_page(
    table: pd.DataFrame,
    figures: Path,
    path: Path,
    notebook_runs: dict[str, Path] | None = None,
    n_resamples: int = 1000,
    medmnist: pd.DataFrame | None = None,
) -> Path:
    """docs/results.md, the one results page: every table and figure of the results, for a
    reader on GitHub, written by `python -m pneumo_utils results` (reproduce and notebook 04
    run it). Figures are linked from `figures`; a table or figure whose runs are not there is
    left out."""
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
        sections.append(_task_section(tasks, figure))
    if medmnist is not None:
        sections.append(_medmnist_section(medmnist, figure))
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


def _task_section(tasks: pd.DataFrame, figure) -> str:
    """Bacterial vs viral and three classes, beside Kermany et al.'s second result."""
    return f"""## Bacterial vs viral pneumonia, and three classes (docs/tasks.md)

Kermany et al.'s second result is bacterial vs viral on the 390 PNEUMONIA test images: accuracy
0.907, sensitivity 0.886, specificity 0.909, AUC 0.940 (chosen on the test set). Ours, mean ±
sd over seeds; for three classes sensitivity and specificity are NORMAL against the rest:

{markdown_table(seed_summary(tasks, TASK_METRICS))}
{_task_robustness(tasks)}
{figure("task_curves")}
{figure("task_per_class")}
{figure("task_confusion")}"""


def _medmnist_section(medmnist: pd.DataFrame, figure) -> str:
    return f"""## PneumoniaMNIST (MedMNIST's split, 28 px; docs/medmnist.md)

{markdown_table(seed_summary(medmnist, {**TEST_METRICS, "accuracy_at_0_5": "accuracy at 0.5"}))}
{figure("medmnist_curves")}
{figure("medmnist_confusion")}"""


def _summary_section(
    table: pd.DataFrame, pretrained_run: Path | None, medmnist: pd.DataFrame | None
) -> str:
    """The results table beside published results, and the headline's distance from the bar,
    the aim and Kermany et al."""
    dataset = dataset_of(table)
    section = f"""# Results

Generated by `python -m pneumo_utils results` from the runs in `runs/results/{dataset}/` (every
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
    """Each bacterial-viral recipe's robustness reports (three classes have none)."""
    sections = []
    for recipe in (r for r in TASK_ROWS if r in set(tasks["recipe"])):
        if found := robustness_reports(tasks, recipe):
            seeds = f"{len(found)} seeds" if len(found) > 1 else "1 seed"
            sections.append(
                f"Robustness of `{recipe}` (robustness.json of {seeds}): each family at its "
                "middle strength, at each run's own threshold (sensitivity: VIRAL, "
                f"specificity: BACTERIAL):\n\n{markdown_table(robustness_table(found))}"
            )
    return "\n".join(sections)


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
Against the view round's bar and aim (docs/frame.md, round 4):

{markdown_table(robustness_distance(found))}"""
            )
    return sections


def _every_arm_finished(screening_table, results_dir: Path) -> pd.DataFrame | None:
    """A screening's table, or None when not every arm is among these runs (it is left out)."""
    try:
        return screening_table(results_dir)
    except UnfinishedArm:
        return None


def _screening_sections(table: pd.DataFrame, figure) -> list[str]:
    """The frame and shortcut screenings, and validation at the selected epoch of every run."""
    sections = []
    results_dir = Path(table["run"].iloc[0]).parent
    far = _every_arm_finished(far_screening_table, results_dir)
    if far is not None:
        sections.append(
            f"""## The far screening (seed 0, the far tighter view among the blocks)

The rule (docs/frame.md, round 8): the family rule with the far tighter view (1.5-2.0 times
into the body's box, past the control's framing variety) among its blocks, for each arm's
epoch and threshold; the arms ranked by the mean of that score over their last 5 epochs,
those within 0.005 of the best by their best epoch's score. Validation numbers only. The rule
picks `{far.index[0]}`.

{markdown_table(far)}

What holding the far block costs the others, at each arm's threshold (validation):

{markdown_table(far_blocks_table(results_dir))}

Specificity of each NORMAL file family in each of the far rule's blocks, at each arm's
threshold (validation):

{markdown_table(far_family_table(results_dir))}"""
        )
    averaging = _every_arm_finished(averaging_screening_table, results_dir)
    if averaging is not None:
        sections.append(
            f"""## The averaging screening (seed 0, the family score over the last epochs)

The rule (docs/frame.md, round 7): round 5's family rule for each arm's epoch and threshold;
the arms ranked by the mean of the family score over their last 5 epochs, those within 0.005
of the best by their best epoch's score. Validation numbers only. The rule picks
`{averaging.index[0]}`.

{markdown_table(averaging)}"""
        )
    consistency = _every_arm_finished(consistency_screening_table, results_dir)
    if consistency is not None:
        sections.append(
            f"""## The consistency screening (seed 0, at the same compute)

The rule (docs/frame.md, round 6): round 5's family rule for each arm's epoch and threshold;
arms within 0.005 of the best family score are decided by the smaller worst shift ratio (the
largest median shift of the NORMAL images over the stressed blocks, over the clean NORMAL
images' margin below the threshold). Validation numbers only. The rule picks
`{consistency.index[0]}`.

{markdown_table(consistency)}

{markdown_table(logit_shift_table(results_dir, CONSISTENCY_SCREENING))}"""
        )
    family = _every_arm_finished(family_screening_table, results_dir)
    if family is not None:
        sections.append(
            f"""## The family screening (seed 0, chosen by the worst family block)

The rule (docs/frame.md, round 5): the view screening's, with each validation block split by
NORMAL file family (`NORMAL2-*` and `IM-*`, each with all the block's other images).
Validation numbers only. The rule picks `{family.index[0]}`.

{markdown_table(family)}

Specificity of each NORMAL file family in each validation block at each run's own threshold
(`view-variety` seed 0: the control's settings under round 4's rule):

{markdown_table(family_blocks_table(results_dir))}

How far each stress moves the NORMAL images in log odds, against how far below the threshold
they lie (a block's specificity moves only where a shift crosses that margin):

{markdown_table(logit_shift_table(results_dir, family_arms_and_reference(results_dir)))}"""
        )
    view = _every_arm_finished(view_screening_table, results_dir)
    if view is not None:
        sections.append(
            f"""## The view screening (seed 0, chosen by the worst validation block)

The rule (docs/frame.md, round 4): the highest balanced accuracy of the worst of the clean,
stressed, tighter, band and looser validation blocks, at the threshold whose worst block is
best, over the epochs; arms within 0.005 of the best are decided by the mean over the last 5
epochs. Validation numbers only. The rule picks `{view.index[0]}`.

{markdown_table(view)}

Specificity of each validation block at each arm's own threshold (the old reframed set's
blocks beside the view blocks):

{markdown_table(view_blocks_table(results_dir))}"""
        )
    crop = _every_arm_finished(crop_screening_table, results_dir)
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
