"""The results page's figures beyond the report's: Grad-CAM rows of several runs, validation
against test per epoch for every recipe, and the screenings' and ablation's curves."""

from __future__ import annotations

from itertools import cycle

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.ticker import MaxNLocator

from pneumo_utils.plots.report import RUN_COLOURS, RUN_STYLES, legend_below
from pneumo_utils.tasks import FOLDER_CLASSES

# Grad-CAM overlays (here and in robustness.py's failures): a perceptually even colour map,
# half transparent over the X-ray.
GRADCAM_CMAP = "inferno"
GRADCAM_ALPHA = 0.45


def plot_gradcam(maps: dict[str, tuple], labels: list[int]) -> plt.Figure:
    """Grad-CAM rows (analysis/gradcam.py's gradcam_rows: heat maps, P(pneumonia) and the
    images as that run saw them), one row per model, one column per image."""
    n_images = len(labels)
    # Constrained layout keeps each row's titles clear of the images above them and makes
    # room for the colour bar.
    fig, axes = plt.subplots(
        len(maps),
        n_images,
        squeeze=False,
        figsize=(1.8 * n_images + 0.9, 2.1 * len(maps) + 0.7),
        layout="constrained",
    )
    for row, (name, (heat, probs, images)) in enumerate(maps.items()):
        for col, image in enumerate(images):
            ax = axes[row, col]
            ax.imshow(image, cmap="gray")
            ax.imshow(heat[col], cmap=GRADCAM_CMAP, alpha=GRADCAM_ALPHA, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            # Every row shows the same test files: the true class heads the column once.
            header = f"true {FOLDER_CLASSES[labels[col]]}\n" if row == 0 else ""
            ax.set_title(f"{header}P = {probs[col]:.2f}", fontsize="small")
        axes[row, 0].set_ylabel(name, fontsize="small")
    gradcam_colour_bar(fig, axes)
    fig.suptitle(
        "Grad-CAM for the PNEUMONIA output (bright = drives the prediction)\n"
        "P = the model's P(pneumonia)",
        fontsize="medium",
    )
    return fig


def gradcam_colour_bar(fig: plt.Figure, axes) -> None:
    """The colour bar of Grad-CAM overlays: pytorch-grad-cam scales each map to 0 to 1."""
    fig.colorbar(
        ScalarMappable(Normalize(0, 1), cmap=GRADCAM_CMAP),
        ax=axes,
        shrink=0.8,
        aspect=30,
        label="Grad-CAM\n(each map scaled to its maximum)",
    )


def plot_recipe_curves(curves: pd.DataFrame) -> plt.Figure:
    """Validation against test accuracy per epoch for each recipe of the results table.

    `curves` is tables.histories(): lines are the mean over seeds, bands ± 1 sd.
    The bottom row follows NORMAL, the class the published models get wrong.
    """
    recipes = list(dict.fromkeys(curves["recipe"]))
    seeds = curves.groupby("recipe")["seed"].nunique()
    # Each recipe its own colour and line style (report.py's run styles), the same in every
    # panel: six recipes overlap near the top of the axes and must still be told apart.
    styles = dict(zip(recipes, cycle(zip(RUN_COLOURS, RUN_STYLES, strict=True)), strict=False))
    fig, axes = plt.subplots(2, 2, figsize=(7.2, 5.6), sharex=True, sharey=True)
    for row, class_name in enumerate(("all images", "NORMAL")):
        for col, split in enumerate(("val", "test")):
            ax = axes[row, col]
            column = f"{split}_acc" if class_name == "all images" else f"{split}_acc_NORMAL"
            for recipe in recipes:
                per_epoch = curves[curves["recipe"] == recipe].groupby("epoch")[column]
                mean, sd = per_epoch.mean(), per_epoch.std().fillna(0.0)  # one seed: no band
                colour, style = styles[recipe]
                ax.fill_between(mean.index, mean - sd, mean + sd, color=colour, alpha=0.15,
                                linewidth=0)  # fmt: skip
                ax.plot(mean.index, mean, color=colour, linestyle=style, linewidth=1.3)
            split_name = "validation" if split == "val" else "test"
            ax.set(title=f"{split_name}, {class_name}", ylim=(0.0, 1.02))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[row, 0].set_ylabel("accuracy\n(fraction of images right)")
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    handles = [
        plt.Line2D([], [], color=styles[recipe][0], linestyle=styles[recipe][1], linewidth=1.3)
        for recipe in recipes
    ]
    labels = [
        f"{recipe} ({seeds[recipe]} seed{'s' if seeds[recipe] > 1 else ''})" for recipe in recipes
    ]
    fig.suptitle("Accuracy per epoch: validation against test (mean ± sd over seeds)")
    legend_below(fig, handles, labels, columns=min(len(recipes), 3))
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
    # Constrained layout keeps each panel's legend, under its axis, clear of the next row.
    fig, axes = plt.subplots(
        rows, columns, figsize=(7.2, 3.3 * rows + 0.3), sharey=True, squeeze=False,
        layout="constrained",
    )  # fmt: skip
    for ax, (panel, pair) in zip(axes.flat, ablations.items(), strict=False):
        not_run = []
        for recipe, colour, style in zip(pair, RUN_COLOURS, RUN_STYLES, strict=False):
            run = curves[curves["recipe"] == recipe]
            if run.empty:  # said in the title: no legend entry without a line
                not_run.append(recipe)
                continue
            ax.plot(run["epoch"], run[metric], color=colour, ls=style, lw=1.2, label=recipe)
            selected = run[run["selected"]]
            ax.plot(selected["epoch"], selected[metric], "o", color=colour, ms=5)
        title = f"{panel}\n(not run: {', '.join(not_run)})" if not_run else panel
        ax.set(title=title, yscale="log", xlabel="epoch")
        if len(not_run) < len(pair):
            ax.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.25))
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    for ax in axes.flat[len(ablations) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"{metric.replace('_', ' ')}\n(nats, log scale)")
    fig.suptitle(f"{title}, seed {seed} (dot: the epoch each run selected)")
    return fig
