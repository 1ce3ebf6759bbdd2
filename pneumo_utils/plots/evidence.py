"""The results page's figures beyond the report's: Grad-CAM rows of several runs, validation
against test per epoch for every recipe, and the screenings' and ablation's curves."""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from pneumo_utils.tasks import FOLDER_CLASSES


def plot_gradcam(maps: dict[str, tuple], labels: list[int]) -> plt.Figure:
    """Grad-CAM rows (analysis/gradcam.py's gradcam_rows: heat maps, P(pneumonia) and the
    images as that run saw them), one row per model, one column per image."""
    n_images = len(labels)
    fig, axes = plt.subplots(
        len(maps), n_images, squeeze=False, figsize=(1.8 * n_images, 2.0 * len(maps) + 0.4)
    )
    for row, (name, (heat, probs, images)) in enumerate(maps.items()):
        for col, image in enumerate(images):
            ax = axes[row, col]
            ax.imshow(image, cmap="gray")
            ax.imshow(heat[col], cmap="inferno", alpha=0.45)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(
                f"{FOLDER_CLASSES[labels[col]]}\nP(pneumonia) {probs[col]:.2f}", fontsize="small"
            )
        axes[row, 0].set_ylabel(name, fontsize="small")
    fig.suptitle("Grad-CAM for the PNEUMONIA output (bright = drives the prediction)")
    fig.tight_layout()
    return fig


def plot_recipe_curves(curves: pd.DataFrame) -> plt.Figure:
    """Validation against test accuracy per epoch for each recipe of the results table.

    `curves` is tables.histories(): lines are the mean over seeds, bands ± 1 sd.
    The bottom row follows NORMAL, the class the published models get wrong.
    """
    frame = pd.concat(
        [
            curves[["epoch", "recipe"]].assign(
                accuracy=curves[column], split=split, class_name=class_name
            )
            for split in ("val", "test")
            for class_name, column in (
                ("all images", f"{split}_acc"),
                ("NORMAL", f"{split}_acc_NORMAL"),
            )
        ],
        ignore_index=True,
    )
    recipes = list(dict.fromkeys(curves["recipe"]))
    seeds = curves.groupby("recipe")["seed"].nunique()
    fig, axes = plt.subplots(2, 2, figsize=(7.2, 5.6), sharex=True, sharey=True)
    for row, class_name in enumerate(("all images", "NORMAL")):
        for col, split in enumerate(("val", "test")):
            ax = axes[row, col]
            sns.lineplot(
                frame[(frame["split"] == split) & (frame["class_name"] == class_name)],
                x="epoch",
                y="accuracy",
                hue="recipe",
                hue_order=recipes,
                errorbar="sd",
                ax=ax,
            )
            split_name = "validation" if split == "val" else "test"
            ax.set(title=f"{split_name}, {class_name}", ylim=(0.0, 1.02))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if ax.get_legend():
                ax.get_legend().remove()
    handles, _ = axes[0, 0].get_legend_handles_labels()
    labels = [
        f"{recipe} ({seeds[recipe]} seed{'s' if seeds[recipe] > 1 else ''})" for recipe in recipes
    ]
    fig.legend(
        handles,
        labels,
        loc="lower center",
        ncol=min(len(recipes), 3),
        fontsize="small",
        frameon=False,
    )
    fig.suptitle("Accuracy per epoch: validation against test (mean ± sd over seeds)")
    fig.tight_layout(rect=(0, 0.07 + 0.03 * ((len(recipes) - 1) // 3), 1, 1))
    return fig


def plot_ablation_curves(
    curves: pd.DataFrame,
    ablations: dict[str, tuple[str, str]],
    seed: int,
    metric: str = "val_loss",
    title: str = "The validation ablation",
    columns: int = 3,
) -> plt.Figure:
    """A validation loss (`metric`) per epoch of each change against the recipe it was made
    to, at one seed.

    `curves` is tables.histories(); a dot marks the epoch each run selected. Only validation
    is drawn: it is what the ablation may use to choose.
    """
    curves = curves[curves["seed"] == seed]
    rows = -(-len(ablations) // columns)
    fig, axes = plt.subplots(
        rows, columns, figsize=(7.2, 2.9 * rows + 0.3), sharex=True, sharey=True, squeeze=False
    )
    colours = sns.color_palette("colorblind", 2)
    for ax, (panel, pair) in zip(axes.flat, ablations.items(), strict=False):
        for recipe, colour in zip(pair, colours, strict=True):
            run = curves[curves["recipe"] == recipe]
            if run.empty:
                ax.plot([], [], color=colour, label=f"{recipe} (not run)")
                continue
            ax.plot(run["epoch"], run[metric], color=colour, lw=1.2, label=recipe)
            selected = run[run["selected"]]
            ax.plot(selected["epoch"], selected[metric], "o", color=colour, ms=5)
        ax.set(title=panel, yscale="log")
        ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.12))
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    for ax in axes.flat[len(ablations) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{metric.replace('_', ' ')} (log)")
    fig.supxlabel("epoch")
    fig.suptitle(f"{title}, seed {seed} (dot: the epoch each run selected)")
    fig.tight_layout()
    return fig
