"""The report's figures: training curves, per-class curves, confusion matrices and ROC; the
shared style. The data's figures are in dataset.py, the robustness report's in robustness.py,
the results page's others (Grad-CAM, recipe comparisons) in evidence.py. Drawing only: inputs
are run folders' files or arrays computed elsewhere.

Every figure is sized for a printed report (7 in wide for two panels), uses seaborn's
colour-blind palette, and names what it shows. Runs trained on stand-in weights or in the
smoke profile say so in their titles.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import FuncFormatter, MaxNLocator
from sklearn.metrics import roc_curve

from pneumo_utils.runtime.errors import UserError
from pneumo_utils.splits import CURVE_SPLITS
from pneumo_utils.training.runs import open_run, read_metrics, read_predictions, training_curves

METRIC_LABELS = {"loss": "cross-entropy loss", "acc": "accuracy"}
# The curves' y-axes, with units. Loss is drawn on a log scale: a model that learnt a shortcut
# has a test loss tens of times its train and validation losses, and a linear axis sized to the
# test curve flattens those onto zero.
AXIS_LABELS = {
    "loss": "cross-entropy loss\n(nats, log scale)",
    "acc": "accuracy\n(fraction of images right)",
}
# How the curves' legends name each split. The train numbers are running averages over the
# epoch in training mode (dropout on, augmented images), not a pass over the training set.
SPLIT_LABELS = {
    "train": "train (running mean, training mode)",
    "val": "val",
    "stressed_val": "stressed val",
    "frame_val": "frame-stressed val",
    "reframed_val": "reframed val",
    "tighter_val": "val, tighter view",
    "band_val": "val, band in the body",
    "looser_val": "val, looser view",
    "far_tighter_val": "val, far tighter view",
    "test": "test",
}
# Each split differs from the others in colour (colour-blind safe: no two oranges) and in line
# style, so the curves read in grey print too.
PALETTE = dict(
    train="#0173B2", val="#DE8F05", stressed_val="#029E73", frame_val="#CC78BC",
    reframed_val="#949494", tighter_val="#6A3D9A", band_val="#56B4E9", looser_val="#E7298A",
    far_tighter_val="#8C564B", test="#000000",
)  # fmt: skip
DASHES = dict(
    train=(6, 1.5, 1, 1.5, 1, 1.5), val=(4, 2), stressed_val=(1, 1.5),
    frame_val=(5, 1.5, 1, 1.5), reframed_val=(2, 2), tighter_val=(6, 2, 1, 2), band_val=(3, 1),
    looser_val=(8, 3), far_tighter_val=(3, 1, 1, 1, 1, 1), test="",
)  # fmt: skip
# Lines of several runs in one panel: colour and style both differ, for up to eight runs
# (seaborn's colour-blind palette, then grey and black).
RUN_COLOURS = ["#0173B2", "#DE8F05", "#029E73", "#CC78BC", "#000000", "#949494", "#D55E00",
               "#56B4E9"]  # fmt: skip
RUN_STYLES = ["-", "--", "-.", (0, (1, 1)), (0, (5, 1)), (0, (3, 1, 1, 1)), (0, (8, 2)),
              (0, (4, 1, 1, 1, 1, 1))]  # fmt: skip


def use_figure_style() -> None:
    """Sizes and palette for figures in a printed report."""
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", font_scale=1.1)
    plt.rcParams.update({"figure.dpi": 110, "savefig.dpi": 200, "savefig.bbox": "tight"})


def run_label(run_dir: str | os.PathLike) -> str:
    """The run's folder name (recipe and seed) and model; on a second line why it is not a
    result (smoke run, stand-in weights)."""
    saved = open_run(run_dir)
    label = f"{Path(run_dir).name} ({saved.config.model})"
    return f"{label}\n({saved.not_a_result}: not a result)" if saved.not_a_result else label


def save_figure(fig: plt.Figure, name: str, figures_dir: str | os.PathLike) -> Path:
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    path = figures_dir / f"{name}.png"
    fig.savefig(path)
    return path


def _y_limits(metric: str, values: pd.Series) -> tuple[float, float]:
    """Room for every value of every panel (no peak clipped); a loss's limits are on a log
    axis, so they pad by a factor."""
    if metric == "acc":
        return 0.0, 1.02
    positive = values[values > 0]
    return float(positive.min()) / 1.5, float(positive.max()) * 1.5


def _curve_panel(ax, frame: pd.DataFrame, title: str, metric: str, ylim) -> None:
    """One panel of train/val/test curves in the fixed split colours."""
    splits = [split for split in CURVE_SPLITS if split in set(frame["split"])]
    sns.lineplot(
        frame,
        x="epoch",
        y="value",
        hue="split",
        hue_order=splits,
        palette=PALETTE,
        style="split",
        style_order=splits,
        dashes=DASHES,
        marker="o",
        markersize=3,
        ax=ax,
    )
    ax.set(
        title=title,
        xlabel="epoch",
        ylabel=AXIS_LABELS[metric],
        yscale="log" if metric == "loss" else "linear",
        ylim=ylim,
    )
    if metric == "loss":  # 0.01 and 1 read at a glance; 10^-2 and 10^0 do not
        ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))


def legend_below(fig: plt.Figure, handles, labels, columns: int = 3) -> None:
    """One legend for the whole figure, under its panels, where it covers no data."""
    fig.legend(handles, labels, loc="lower center", ncol=columns, frameon=False,
               fontsize="small")  # fmt: skip
    rows = -(-len(labels) // columns)
    inches = 0.22 * rows + 0.1  # a legend row is about this tall at this font size
    fig.tight_layout(rect=(0, inches / fig.get_figheight(), 1, 1))


def _finish_curve_axes(fig: plt.Figure, axes) -> None:
    """Whole-epoch ticks, and one legend under the panels for the whole figure: an entry for
    each split drawn in any panel (panels of different runs may have different splits), none
    for a split no panel has."""
    entries = {}
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
        if ax.get_legend():
            ax.get_legend().remove()
    labels = [split for split in CURVE_SPLITS if split in entries]
    handles = [entries[split] for split in labels]
    legend_below(fig, handles, [SPLIT_LABELS[split] for split in labels])


def plot_curves_side_by_side(runs: dict[str, Path], metric: str) -> plt.Figure:
    """One panel per model, train/val/test curves of `metric`, shared y-axis (Figures 1 and 2)."""
    curves = {name: training_curves(run) for name, run in runs.items()}
    overall = pd.concat([c[(c.metric == metric) & (c.cls == "overall")] for c in curves.values()])
    fig, axes = plt.subplots(
        1, len(runs), figsize=(3.6 * len(runs), 3.2), sharey=True, squeeze=False
    )
    for ax, (name, run) in zip(axes[0], runs.items(), strict=True):
        frame = curves[name]
        frame = frame[(frame.metric == metric) & (frame.cls == "overall")]
        _curve_panel(ax, frame, run_label(run), metric, _y_limits(metric, overall["value"]))
    fig.suptitle(f"{METRIC_LABELS[metric].capitalize()} per epoch")
    _finish_curve_axes(fig, list(axes[0]))
    return fig


def plot_per_class(run_dir: Path, metric: str) -> plt.Figure:
    """train/val/test curves of `metric` for each class of one model (Figures 3 to 6)."""
    frame = training_curves(run_dir)
    frame = frame[(frame.metric == metric) & (frame.cls != "overall")]
    class_names = open_run(run_dir).task.class_names
    fig, axes = plt.subplots(
        1, len(class_names), figsize=(3.6 * len(class_names), 3.2), sharey=True
    )
    for ax, class_name in zip(axes, class_names, strict=True):
        _curve_panel(
            ax,
            frame[frame.cls == class_name],
            class_name,
            metric,
            _y_limits(metric, frame["value"]),
        )
    fig.suptitle(f"{run_label(run_dir)}: {METRIC_LABELS[metric]} per class".replace("\n", " "))
    _finish_curve_axes(fig, list(axes))
    return fig


def plot_confusion_matrices(runs: dict[str, Path]) -> plt.Figure:
    fig, axes = plt.subplots(1, len(runs), figsize=(4.1 * len(runs), 3.0), squeeze=False)
    for ax, (_name, run) in zip(axes[0], runs.items(), strict=True):
        metrics = read_metrics(run)
        test, class_names = metrics["test"], open_run(run).task.class_names
        sns.heatmap(
            np.array(test["confusion_matrix"]),
            annot=True,
            fmt="d",
            cmap="Blues",
            cbar_kws={"label": "test images"},  # each panel's own scale
            xticklabels=class_names,
            yticklabels=class_names,
            ax=ax,
        )
        decided = (
            "most probable class"
            if test["threshold"] is None
            else f"threshold {test['threshold']:.2f} "
            f"(from {metrics['threshold_chosen_on'].split()[0]})"
        )
        ax.set(title=f"{run_label(run)}\n{decided}", xlabel="predicted", ylabel="true")
        ax.tick_params(axis="y", rotation=0)  # class names read across, even three of them
        if len(class_names) > 2:  # three names side by side would touch
            plt.setp(ax.get_xticklabels(), rotation=25, ha="right", rotation_mode="anchor")
    fig.suptitle("Confusion matrices on the test set")
    fig.tight_layout()
    return fig


def plot_roc_curves(runs: dict[str, Path]) -> plt.Figure:
    """ROC of P(class 1) for runs of two-class tasks (a three-class run has no single ROC)."""
    fig, ax = plt.subplots(figsize=(4.6, 4.8))
    styles = iter(list(zip(RUN_COLOURS, RUN_STYLES, strict=True)) * 3)
    for run in runs.values():
        task = open_run(run).task
        if not task.binary:
            raise UserError(f"{run} is a {task.name} run: an ROC needs a two-class task")
        predictions = read_predictions(run)
        fpr, tpr, _ = roc_curve(predictions["label"], predictions[task.probability_columns[0]])
        auc = read_metrics(run)["test"]["roc_auc"]
        colour, style = next(styles)
        ax.plot(fpr, tpr, color=colour, linestyle=style,
                label=f"{run_label(run)} (AUC {auc:.3f})".replace("\n", " "))  # fmt: skip
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    ax.set(
        xlabel="1 - specificity",
        ylabel="sensitivity",
        title="ROC on the test set",
        xlim=(0, 1),
        ylim=(0, 1.01),
        aspect="equal",
    )
    handles, labels = ax.get_legend_handles_labels()
    legend_below(fig, handles, labels, columns=1)
    return fig
