"""The figures of the data (notebook 01): class counts, the shortcut audit, sample images and
the stressed validation copies. Style and palette as in report.py."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from pneumo_utils.plots.report import RUN_COLOURS, RUN_STYLES, legend_below
from pneumo_utils.splits import SPLITS
from pneumo_utils.tasks import FOLDER_CLASSES

# The groups of the shortcut audit's figure: the confound shows as train NORMAL apart from
# train PNEUMONIA, and test NORMAL sitting with train PNEUMONIA.
AUDIT_GROUPS = ("train NORMAL", "train PNEUMONIA", "test NORMAL", "test PNEUMONIA")


def plot_class_counts(records: pd.DataFrame) -> plt.Figure:
    """Images per official split and class."""
    fig, ax = plt.subplots(figsize=(4.5, 3.0))
    sns.countplot(
        records,
        x="split",
        hue="class_name",
        hue_order=FOLDER_CLASSES,
        order=[s for s in SPLITS if s in set(records["split"])],
        ax=ax,
    )
    for container in ax.containers:
        ax.bar_label(container, fontsize="small")
    ax.set(title="Images per split and class", xlabel="official split", ylabel="images")
    ax.legend(title=None)
    fig.tight_layout()
    return fig


def plot_audit(
    properties: pd.DataFrame, columns: list[str], units: dict[str, str] | None = None
) -> plt.Figure:
    """Distributions of properties that are not anatomy, for each official split and class.

    Properties with one value in the whole dataset (JPEG quality of a re-saved copy, say) are
    named in the title instead of drawn."""
    constant = [c for c in columns if properties[c].nunique() <= 1]
    columns = [c for c in columns if c not in constant]
    group = properties["split"].replace({"val": "train"}) + " " + properties["class_name"]
    order = [g for g in AUDIT_GROUPS if g in set(group)]
    # Each group its own colour and line style: step outlines of four groups overlap.
    styles = dict(zip(AUDIT_GROUPS, zip(RUN_COLOURS, RUN_STYLES, strict=False), strict=False))
    n_cols = min(3, len(columns))
    n_rows = -(-len(columns) // n_cols)
    # Height for the two-line title and the legend below, as well as the panels.
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(3.4 * n_cols, 2.6 * n_rows + 1.0), squeeze=False
    )
    for ax, column in zip(axes.flat, columns, strict=False):
        edges = np.histogram_bin_edges(properties[column].dropna(), bins=30)  # shared by groups
        for name in order:
            colour, style = styles[name]
            ax.hist(properties.loc[group == name, column].dropna(), bins=edges, density=True,
                    histtype="step", color=colour, linestyle=style, linewidth=1.3)  # fmt: skip
        ax.set(title=column.replace("_", " "), xlabel=(units or {}).get(column))
    for ax in axes[:, 0]:
        ax.set_ylabel("density\n(each group's area 1)")
    for ax in axes.flat[len(columns) :]:
        ax.set_visible(False)
    title = "Properties that are not anatomy: train (incl. official val) and test, per class"
    if constant:
        title += (
            f"\n(the same for every file here: {', '.join(c.replace('_', ' ') for c in constant)})"
        )
    fig.suptitle(title)
    handles = [
        plt.Line2D([], [], color=styles[name][0], linestyle=styles[name][1], linewidth=1.3)
        for name in order
    ]
    legend_below(fig, handles, order, columns=len(order))
    return fig


def plot_sample_grid(
    records: pd.DataFrame, images: np.ndarray, per_class: int = 4, seed: int = 0
) -> plt.Figure:
    """A few random training images of each class, as the models see them (grayscale)."""
    fig, axes = plt.subplots(len(FOLDER_CLASSES), per_class, figsize=(1.8 * per_class, 4.0))
    for row, class_name in enumerate(FOLDER_CLASSES):
        pool = records[(records["class_name"] == class_name) & (records["split"] == "train")]
        chosen = pool.sample(min(per_class, len(pool)), random_state=seed)
        for col, record in enumerate(chosen.itertuples()):
            axes[row, col].imshow(images[record.cache_row], cmap="gray")
            axes[row, col].set_title(record.patient, fontsize="x-small")
            axes[row, col].axis("off")
        axes[row, 0].text(
            -0.1,
            0.5,
            class_name,
            transform=axes[row, 0].transAxes,
            rotation=90,
            va="center",
            ha="right",
        )
    fig.suptitle("Sample training images")
    fig.tight_layout()
    return fig


def plot_stressed_examples(
    val: pd.DataFrame, clean: np.ndarray, copies: dict[str, np.ndarray], per_class: int = 2
) -> plt.Figure:
    """Validation images (rows of `val`, pixels in `clean`) above their stressed copies, one
    row per copy (name -> pixels in the same order)."""
    chosen = [i for label in (0, 1) for i in np.flatnonzero(val["label"].to_numpy() == label)[
        :per_class]]  # fmt: skip
    rows = [("validation", clean), *copies.items()]
    fig, axes = plt.subplots(len(rows), len(chosen), figsize=(1.8 * len(chosen), 2.0 * len(rows)
                                                              + 0.3), squeeze=False)  # fmt: skip
    for col, i in enumerate(chosen):
        for row, (name, images) in enumerate(rows):
            axes[row, col].imshow(images[i], cmap="gray", vmin=0, vmax=255)
            axes[row, col].set_xticks([])
            axes[row, col].set_yticks([])
            axes[row, 0].set_ylabel(name)
        axes[0, col].set_title(val["class_name"].iat[i], fontsize="small")
    fig.suptitle(
        "The validation copies: stressed and frame-stressed, each class given the other's\n"
        "look and frame; the view blocks, the same change whatever the class"
    )
    fig.tight_layout()
    return fig
