"""`python -m pneumo_utils results`: every table and figure across the runs on one dataset,
written to the results page (docs/results.md; smoke profile: beside the smoke figures) and
figures/. `reproduce` runs it after its trainings; notebook 04 runs it and shows the page."""

from __future__ import annotations

from pathlib import Path

from pneumo_utils.analysis.gradcam import failure_examples, gradcam, gradcam_rows
from pneumo_utils.analysis.perturbations import STRENGTH_UNITS
from pneumo_utils.app.settings import Settings, finished_runs, repo_root
from pneumo_utils.plots.evidence import plot_ablation_curves, plot_gradcam, plot_recipe_curves
from pneumo_utils.plots.report import (
    plot_confusion_matrices,
    plot_curves_side_by_side,
    plot_per_class,
    run_label,
    save_figure,
    use_figure_style,
)
from pneumo_utils.plots.robustness import plot_failures, plot_reliability, plot_robustness
from pneumo_utils.recipes import FORMER_HEADLINES, HEADLINE, RECIPES, TASK_RECIPES
from pneumo_utils.results import screening, tables
from pneumo_utils.results.page import write_results_page
from pneumo_utils.results.robustness_tables import robustness_reports
from pneumo_utils.training.runs import with_checkpoints


def render_results(settings: Settings) -> Path:
    """Render every figure the runs on `settings.data` allow, then the results page; a figure
    whose runs (or, for Grad-CAM, checkpoints) are not here is left as it was. Returns the page."""
    use_figure_style()
    notebook_runs, _ = finished_runs(settings)
    table = tables.collect_runs(settings.results_dir, include_smoke=settings.is_smoke)
    medmnist = tables.medmnist_runs(settings.results_dir.parent, include_smoke=settings.is_smoke)
    figures = settings.figures
    _notebook_gradcam(notebook_runs, figures)
    if medmnist is not None:
        seed0 = {r.recipe: r.run for r in medmnist[medmnist["seed"] == 0].itertuples()}
        save_figure(plot_curves_side_by_side(seed0, "acc"), "medmnist_curves", figures)
        save_figure(plot_confusion_matrices(seed0), "medmnist_confusion", figures)
    _task_figures(table, figures)
    _screening_figures(table, figures)
    for name, pair in tables.GRADCAM_PAIRS.items():
        with_weights = tables.runs_with_checkpoints(pair, settings.results_dir)
        if len(with_weights) == len(pair):
            save_figure(plot_gradcam(*gradcam_rows(with_weights)), name, figures)
        else:
            print(f"{name}: no checkpoints of {', '.join(pair)} here")
    _robustness_figures(table, settings)
    page = write_results_page(
        table, figures, settings.results_page, notebook_runs, medmnist=medmnist
    )
    print(f"wrote {page}")
    return page


def results_page(settings: Settings) -> Path:
    """The results page of the runs the notebooks show: rendered now where the dataset is here
    (or in the smoke profile); without it, the committed page, which the committed runs wrote."""
    if settings.has_data or settings.is_smoke:
        return render_results(settings)
    print(f"no dataset here: the committed results page (docs/{settings.results_page.name})")
    return repo_root() / "docs" / settings.results_page.name


def _notebook_gradcam(notebook_runs: dict[str, Path], figures: Path) -> None:
    with_weights = with_checkpoints(notebook_runs)
    if not with_weights:
        print("no checkpoints here: figures/gradcam.png is the one rendered where they were")
        return
    named = {run_label(run): run for run in with_weights.values()}
    save_figure(plot_gradcam(*gradcam_rows(named)), "gradcam", figures)


def _task_figures(table, figures: Path) -> None:
    """Bacterial vs viral and three classes: seed 0's curves and confusion matrices, and the
    per-class curves of notebook 02's three-class recipe."""
    found = table[table["recipe"].isin(list(tables.TASK_ROWS))]
    if found.empty:
        print("no bacterial-viral or three-class runs here: run notebook 02 to its end")
        return
    found = found[found["seed"] == 0].set_index("recipe")["run"]
    seed0 = {recipe: found[recipe] for recipe in tables.TASK_ROWS if recipe in found}  # in order
    save_figure(plot_curves_side_by_side(seed0, "acc"), "task_curves", figures)
    three_class = next(r for r in TASK_RECIPES if RECIPES[r]["task"] == "three-class")
    if three_class in seed0:
        save_figure(plot_per_class(seed0[three_class], "acc"), "task_per_class", figures)
    save_figure(plot_confusion_matrices(seed0), "task_confusion", figures)


def _screening_figures(table, figures: Path) -> None:
    """The validation evidence behind each choice, and validation against test per epoch."""
    curves = tables.histories(table)
    screenings = (
        ("frame_screening", screening.FRAME_SCREENING_PAIRS, "frame_val_loss",
         "The frame screening"),
        ("shortcut_screening", screening.SCREENING_PAIRS, "stressed_val_loss",
         "The shortcut screening"),
    )  # fmt: skip
    for name, pairs, metric, title in screenings:
        fig = plot_ablation_curves(
            curves, pairs, screening.ABLATION_SEED, metric, title=title, columns=2
        )
        save_figure(fig, name, figures)
    fig = plot_ablation_curves(curves, screening.ABLATIONS, screening.ABLATION_SEED)
    save_figure(fig, "ablation", figures)
    fig = plot_recipe_curves(tables.histories(table, tables.TABLE_ROWS))
    save_figure(fig, "val_vs_test", figures)


def _robustness_figures(table, settings: Settings) -> None:
    """The headline against the former ones under perturbation; seed 0's calibration and
    mistakes (with Grad-CAM where its checkpoint is here)."""
    reports = {
        recipe: robustness_reports(table, recipe) for recipe in (*FORMER_HEADLINES, HEADLINE)
    }
    reports = {recipe: found for recipe, found in reports.items() if found}
    if not reports:
        return
    save_figure(plot_robustness(reports, STRENGTH_UNITS), "robustness", settings.figures)
    if HEADLINE not in reports:
        return
    save_figure(plot_reliability(reports[HEADLINE][0]), "reliability", settings.figures)
    with_weights = tables.runs_with_checkpoints([HEADLINE], settings.results_dir)
    if with_weights:
        headline_run = with_weights[HEADLINE]
        images, failures = failure_examples(headline_run)
        heat, _ = gradcam(headline_run, images)
        threshold = reports[HEADLINE][0]["threshold"]
        fig = plot_failures(images, heat, failures, threshold, headline_run.name)
        save_figure(fig, "failures", settings.figures)
