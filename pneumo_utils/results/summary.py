"""The results table across recipes, mean ± sd over seeds beside published results on the
same test images, and the README's shorter one; Markdown's one table writer."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from pneumo_utils.data.pneumoniamnist import NO_PATIENT_IDS
from pneumo_utils.recipes import FORMER_HEADLINES, HEADLINE, NEEDS_WEIGHTS, recipe_changes, titled
from pneumo_utils.results.robustness_tables import ROBUSTNESS_BAR, robustness_reports
from pneumo_utils.results.tables import (
    BAR,
    BAR_SEEDS,
    KERMANY,
    MEDMNIST_ROWS,
    TABLE_ROWS,
    TASK_ROWS,
    TEST_METRICS,
    seed_summary,
)
from pneumo_utils.training import runs

# What the protocol column adds to each task's row.
TASK_NOTES = {
    **dict.fromkeys(("bacterial-viral", "bacterial-viral-crop", "bacterial-viral-view"),
                    "; scored on the {test_images} PNEUMONIA test images"),
    **dict.fromkeys(("three-class", "three-class-view"), "; macro F1 {macro_f1}"),
}  # fmt: skip

# The validation set a run's checkpoint was chosen on, by the prefix of its select_metric.
SELECTION_NAMES = {
    "val": "validation",
    "stressed_val": "stressed validation",
    "frame_val": "frame-stressed validation",
    "pooled_val": "the clean, stressed and reframed validation sets",
    "reframed_val": "reframed validation",
    "worst_block": "the worst of the clean, stressed and view validation blocks",
    "worst_family_block": "the worst of the clean, stressed and view validation blocks, each "
    "split by NORMAL file family",
    "far_family_block": "the worst of the clean, stressed, view and far tighter validation "
    "blocks, each split by NORMAL file family",
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
README_ROWS = titled(("baseline-128px", *FORMER_HEADLINES, HEADLINE, "bacterial-viral-view"))


def readme_table(table: pd.DataFrame) -> str:
    """The README's results table (at most 9 rows): mean ± sd over seeds on the official test
    set, the AUC with the lungs covered (the frame alone: 0.5 is chance), where each was
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
                 "AUC, lungs covered": f"≤ {ROBUSTNESS_BAR['lungs_covered_auc']:.2f}"})  # fmt: skip
    return markdown_table(pd.DataFrame(rows).set_index("recipe").fillna(""))
