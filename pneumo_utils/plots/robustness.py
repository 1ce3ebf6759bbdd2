"""The figures of the robustness report: metrics against perturbation strength, reliability
diagrams, and the misclassified images with their Grad-CAM maps."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from pneumo_utils.plots.evidence import GRADCAM_ALPHA, GRADCAM_CMAP, gradcam_colour_bar
from pneumo_utils.plots.report import PALETTE, RUN_COLOURS, legend_below
from pneumo_utils.tasks import FOLDER_CLASSES


def plot_robustness(
    reports: dict[str, list[dict]], strength_labels: dict[str, str] | None = None
) -> plt.Figure:
    """Specificity (solid) and AUC (dashed) against the strength of each natural perturbation
    family, mean over each recipe's seeds; strength 0 is the unperturbed test set. The last
    panel holds the occlusion pair's AUCs."""
    frames = []
    for recipe, recipe_reports in reports.items():
        for report in recipe_reports:
            frames.append(pd.DataFrame(report["perturbations"]).assign(recipe=recipe))
    table = pd.concat(frames, ignore_index=True)
    clean = table[table["kind"] == "clean"]
    natural = table[table["kind"] == "natural"]
    families = list(dict.fromkeys(natural["family"]))
    n_cols = 4
    n_rows = -(-(len(families) + 1) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(7.2, 2.2 * n_rows + 0.6), sharey=True,
                             squeeze=False)  # fmt: skip
    # Recipes differ in colour and in marker; the metric in line style.
    colours = dict(zip(reports, RUN_COLOURS, strict=False))
    markers = dict(zip(reports, itertools.cycle("osD^vPX")))  # a new headline never runs out
    for ax, family in zip(axes.flat, families, strict=False):
        rows = natural[natural["family"] == family]
        strengths = list(rows["strength"].drop_duplicates())  # the suite's order: mild first
        for recipe in reports:
            for metric, style in (("specificity", "-"), ("roc_auc", "--")):
                values = [clean[clean["recipe"] == recipe][metric].mean()] + [
                    rows[(rows["recipe"] == recipe) & (rows["strength"] == s)][metric].mean()
                    for s in strengths
                ]
                ax.plot(range(len(values)), values, style, marker=markers[recipe], markersize=3,
                        color=colours[recipe])  # fmt: skip
        ax.set_xticks(range(len(strengths) + 1), ["0", *(f"{s:g}" for s in strengths)])
        ax.set_title(family, fontsize="small")
        ax.set_xlabel((strength_labels or {}).get(family, "strength"), fontsize="x-small")
        ax.tick_params(labelsize="x-small")
    occlusion_ax = axes.flat[len(families)]
    occlusion = table[table["kind"] == "occlusion"]
    sns.barplot(occlusion, x="family", y="roc_auc", hue="recipe", palette=colours,
                errorbar=None, ax=occlusion_ax, legend=False)  # fmt: skip
    occlusion_ax.axhline(0.5, color="grey", linewidth=0.8)
    occlusion_ax.set(xlabel="", ylabel="")
    occlusion_ax.set_title("occlusion (AUC; line: chance)", fontsize="small")
    occlusion_ax.set_xticks(occlusion_ax.get_xticks(), [
        label.get_text().replace(" ", "\n") for label in occlusion_ax.get_xticklabels()
    ])  # fmt: skip
    occlusion_ax.tick_params(labelsize="x-small")
    for ax in axes.flat[len(families) + 1 :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("specificity / AUC", fontsize="small")
    handles = [
        plt.Line2D([], [], color=c, marker=markers[r], label=r) for r, c in colours.items()
    ] + [  # fmt: skip
        plt.Line2D([], [], color="black", linestyle="-", label="specificity"),
        plt.Line2D([], [], color="black", linestyle="--", label="AUC"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize="small",
               bbox_to_anchor=(0.5, -0.02))  # fmt: skip
    fig.suptitle("Test specificity and AUC against perturbation strength (0: as they are)")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


# The bin sizes the reliability diagram's legend shows as dots.
DOT_SIZE_KEY = (10, 100, 300)


def _dot_area(n_images):
    """A reliability bin's dot area (points²) for its number of images."""
    return 8 + np.asarray(n_images) / 4


def plot_reliability(report: dict) -> plt.Figure:
    """Reliability diagrams of P(pneumonia) on test and validation, with ECE and Brier."""
    fig, axes = plt.subplots(1, 2, figsize=(7.2, 3.3), sharey=True)
    for ax, split in zip(axes, ("test", "val"), strict=True):
        calibration = report["calibration"][split]
        bins = pd.DataFrame(calibration["bins"])
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1.0)
        ax.scatter(bins["mean_probability"], bins["share_pneumonia"], s=_dot_area(bins["n"]),
                   color=PALETTE[split])  # fmt: skip
        ax.plot(bins["mean_probability"], bins["share_pneumonia"], color=PALETTE[split])
        ax.set(
            xlim=(-0.02, 1.02),  # bins at 0 and 1 show whole dots
            ylim=(-0.02, 1.02),
            xlabel="mean P(pneumonia) in bin",
            title=f"{split}: ECE {calibration['ece']:.3f}, Brier {calibration['brier']:.3f}",
        )
    axes[0].set_ylabel("share of the bin's images\nthat are PNEUMONIA")
    # The key of the dot sizes: markersize is a diameter in points, a scatter's s an area.
    sizes = [plt.Line2D([], [], linestyle="", marker="o", color="grey",
                        markersize=float(np.sqrt(_dot_area(n)))) for n in DOT_SIZE_KEY]  # fmt: skip
    lines = [
        plt.Line2D([], [], color="grey", linestyle=":", linewidth=1.0),
        *(plt.Line2D([], [], color=PALETTE[split], marker="o") for split in ("test", "val")),
    ]
    labels = ["perfect calibration", "test", "val"]
    fig.suptitle(f"Reliability of {report['run']} (15 bins; dot size: images in the bin)")
    # The legend fills column by column: the lines on its first row, the sizes on its second.
    handles = [h for pair in zip(lines, sizes, strict=True) for h in pair]
    labels = [t for pair in zip(labels, (f"{n} images" for n in DOT_SIZE_KEY), strict=True)
              for t in pair]  # fmt: skip
    legend_below(fig, handles, labels, columns=3)
    return fig


def plot_failures(images: list[np.ndarray], heat: np.ndarray, failures: list[dict],
                  threshold: float, run: str = "") -> plt.Figure:  # fmt: skip
    """The misclassified test images, most confidently wrong first, over their Grad-CAM maps."""
    n_cols = min(6, len(images))
    n_rows = -(-len(images) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.2 * n_cols + 0.9, 1.5 * n_rows + 0.8),
                             squeeze=False, layout="constrained")  # fmt: skip
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, cam, failure in zip(axes.flat, images, heat, failures, strict=False):
        ax.imshow(image, cmap="gray")
        ax.imshow(cam, cmap=GRADCAM_CMAP, alpha=GRADCAM_ALPHA, vmin=0, vmax=1)
        truth = failure.get("class_name", FOLDER_CLASSES[failure["label"]])
        probability = next(v for k, v in failure.items() if k.startswith("p_"))
        ax.set_title(f"true {truth}\nP = {probability:.2f}", fontsize="x-small")
    gradcam_colour_bar(fig, axes)
    # The probability's name from its column (p_pneumonia, p_viral), so that "P" is defined.
    positive = next(k for k in failures[0] if k.startswith("p_"))[2:]
    of = f" of {run}" if run else ""
    fig.suptitle(f"Misclassified test images{of}, worst first\nP = the model's "
                 f"P({positive}); threshold {threshold:.3f}", fontsize="small")  # fmt: skip
    return fig
