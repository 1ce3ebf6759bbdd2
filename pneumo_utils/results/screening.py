"""The validation evidence behind each choice: the shortcut and frame screenings, ranked by
the rule written down before their runs (docs/shortcuts.md, docs/frame.md), and the validation
ablation of the improved recipe. Only validation numbers: the test set chose nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from pneumo_utils.data.files import normal_family
from pneumo_utils.results.folders import run_name
from pneumo_utils.splits import (
    BLOCKS_OF_RULE,
    FAR_FAMILY_BLOCK,
    FAR_RULE_BLOCKS,
    FAR_TIGHTER_VAL,
    VIEW_VAL,
    WORST_BLOCK,
    WORST_BLOCKS,
    WORST_FAMILY_BLOCK,
)
from pneumo_utils.training import runs

# The shortcut screening: each lever against the improved recipe chosen on stressed validation.
SCREENING = ("improved-stressed-val", "shortcut-geometry", "shortcut-intensity",
             "shortcut-encoding", "shortcut-all")  # fmt: skip
# The frame screening (docs/frame.md): shortcut-all against each framing lever, seed 0.
FRAME_SCREENING = ("shortcut-all", "frame-counter", "frame-jitter", "frame-all")
# The frame rule's score: the lowest frame-stressed validation loss over the epochs, and its
# tie-breaker, the mean over the last FRAME_LATE epochs.
FRAME_LATE = 5
# The crop screening (docs/frame.md): the arms, seed 0; the score is the lowest pooled
# validation loss over the epochs; arms within POOLED_TIE of the best are decided by the mean
# over the last FRAME_LATE epochs.
CROP_SCREENING = ("crop-only", "crop-jitter", "crop-jitter-sensor", "crop-jitter-40ep",
                  "crop-jitter-wide", "nocrop-jitter")  # fmt: skip
POOLED_TIE = 0.005
# The view screening (docs/frame.md, round 4): the arms, seed 0; the score is the highest
# worst-block balanced accuracy over the epochs; arms within VIEW_TIE of the best are decided by
# the higher mean over the last FRAME_LATE epochs.
VIEW_SCREENING = ("view-control", "view-variety", "view-centre-norm", "view-thorax")
VIEW_TIE = 0.005
# The family screening (docs/frame.md, round 5): the arms, seed 0, ranked as the view screening,
# by the family rule's score (the worst block, each block split by NORMAL file family).
FAMILY_SCREENING = ("family-control", "family-view-wide", "family-sensor", "family-centre-norm")
# The consistency screening (docs/frame.md, round 6): round 5's winner at seed 0 against the
# consistency term at two weights, at the same compute, by the family rule; arms within
# VIEW_TIE of the best are decided by the smaller worst_shift_ratio.
CONSISTENCY_SCREENING = ("family-control", "consistency-1", "consistency-4")
# The far screening (docs/frame.md, round 8): round 7's pick, the view varied up to 2 times
# tighter, and the consistency term at a quarter, all chosen by the far rule (the family rule
# with the far tighter view among its blocks) and ranked as round 7 ranked its arms.
FAR_SCREENING = ("far-control", "far-view-wide", "far-consistency")
# The consistency round's tie-break column (worst_shift_ratio), lower is better.
SHIFT_RATIO = "worst shift / margin"
# The averaging screening (docs/frame.md, round 7): round 5's winner at seed 0 against an
# average of its weights over about 100 and 1,000 steps, ranked by the family score's mean over
# the last FRAME_LATE epochs; arms within VIEW_TIE of the best by their best epoch's score.
AVERAGING_SCREENING = ("family-control", "ema-short", "ema-long")
# What each worst-block rule's score is called in a screening table.
BLOCK_SCORES = {
    WORST_BLOCK: "worst-block balanced accuracy",
    WORST_FAMILY_BLOCK: "worst family-block balanced accuracy",
    FAR_FAMILY_BLOCK: "worst family-block balanced accuracy, far view included",
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


def late_epochs(epochs: int) -> int:
    """The window of the ablation's second reading: the last quarter of a run's epochs."""
    return max(1, epochs // 4)


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
    # The other tasks' validation numbers are of other classes: they have their own section.
    table = table[table["task"] == "pneumonia"] if "task" in table else table
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


def crop_screening_table(results_dir) -> pd.DataFrame:
    """The crop screening at seed 0, ranked by the rule of docs/frame.md: the lowest pooled
    validation loss over the epochs, and where arms are within POOLED_TIE of the best, the
    lower mean over the last FRAME_LATE epochs first. Every arm must have finished as a result
    (not a smoke run): the rule chooses among all of them or not at all."""
    rows = []
    for recipe in CROP_SCREENING:
        _, history = _finished_arm(results_dir, recipe, "crop")
        epoch = int(history["pooled_val_loss"].idxmin())
        at = history.loc[epoch]
        rows.append(
            {
                "recipe": recipe,
                "epochs": len(history),
                "score": float(at["pooled_val_loss"]),
                "at epoch": epoch,
                "late": float(history["pooled_val_loss"].tail(FRAME_LATE).mean()),
                **{
                    f"{split.replace('_', ' ')} loss": _number(at[f"{split}_loss"])
                    for split in ("val", "stressed_val", "reframed_val")
                },
                "reframed val AUC": _number(at["reframed_val_auc"]),
            }
        )
    names = {"score": "score: lowest pooled val loss",
             "late": f"pooled val loss, last {FRAME_LATE}"}  # fmt: skip
    return _ranked(pd.DataFrame(rows), POOLED_TIE, higher_is_better=False, names=names)


def _ranked(
    table: pd.DataFrame,
    tie: float,
    higher_is_better: bool,
    names: dict,
    tie_break: tuple[str, bool] | None = None,
) -> pd.DataFrame:
    """Screening arms best first by "score"; those within `tie` of the best are ranked among
    themselves by `tie_break` first: a column and whether higher is better in it (by default
    "late", the mean over the last epochs, better the same way as the score)."""
    column, higher_breaks = tie_break or ("late", higher_is_better)
    best = table["score"].max() if higher_is_better else table["score"].min()
    tied = (table["score"] - best).abs() <= tie + 1e-9  # a difference of exactly `tie` ties
    table = table.assign(**{"tied with the best": tied})
    ascending = not higher_is_better
    ranked = pd.concat([
        table[tied].sort_values([column, "score"], ascending=[not higher_breaks, ascending],
                                kind="stable"),
        table[~tied].sort_values("score", ascending=ascending, kind="stable"),
    ])  # fmt: skip
    rounded = ranked.round({"score": 4, "late": 4, "best": 4, SHIFT_RATIO: 3})
    return rounded.rename(columns=names).set_index("recipe")


class UnfinishedArm(ValueError):
    """A screening's rule was asked to choose before every one of its arms had finished."""


def _finished_arm(results_dir, recipe: str, screening: str) -> tuple[Path, pd.DataFrame]:
    """The run folder and completed epochs of a screening arm at seed 0, which must have
    finished as a result (not a smoke run): a rule chooses among all of its arms or not at
    all."""
    run_dir = Path(results_dir) / run_name(recipe, ABLATION_SEED)
    if not runs.is_finished(run_dir) or not runs.open_run(run_dir).is_result:
        raise UnfinishedArm(
            f"the {screening} screening needs every arm finished: {run_dir} is not (train it "
            f"with `python -m pneumo_utils train --recipe {recipe} --seed {ABLATION_SEED}`)"
        )
    return run_dir, runs.completed_epochs(run_dir).set_index("epoch")


def view_screening_table(results_dir) -> pd.DataFrame:
    """The view screening (docs/frame.md, round 4), ranked by the worst-block rule."""
    return block_screening_table(results_dir, VIEW_SCREENING, WORST_BLOCK, "view")


def family_screening_table(results_dir) -> pd.DataFrame:
    """The family screening (docs/frame.md, round 5), ranked by the family rule."""
    return block_screening_table(results_dir, FAMILY_SCREENING, WORST_FAMILY_BLOCK, "family")


def consistency_screening_table(results_dir) -> pd.DataFrame:
    """The consistency screening (docs/frame.md, round 6): the family rule, ties decided by the
    smaller worst shift ratio."""
    return block_screening_table(
        results_dir, CONSISTENCY_SCREENING, WORST_FAMILY_BLOCK, "consistency", ranking="shift"
    )


def averaging_screening_table(results_dir) -> pd.DataFrame:
    """The averaging screening (docs/frame.md, round 7): the family rule's score averaged over
    each arm's last epochs, which one lucky epoch cannot lift."""
    return block_screening_table(
        results_dir, AVERAGING_SCREENING, WORST_FAMILY_BLOCK, "averaging", ranking="late"
    )


def far_screening_table(results_dir) -> pd.DataFrame:
    """The far screening (docs/frame.md, round 8): the far rule's score averaged over each
    arm's last epochs, ties by the best epoch's."""
    return block_screening_table(
        results_dir, FAR_SCREENING, FAR_FAMILY_BLOCK, "far", ranking="late"
    )


def far_blocks_table(results_dir) -> pd.DataFrame:
    """Specificity and sensitivity of every validation block of each far-screening arm at the
    arm's own threshold (validation_blocks): what holding the far block costs the others.
    Validation only."""
    blocks = _far_arm_columns(
        results_dir,
        lambda run_dir: (
            validation_blocks(run_dir)
            .astype(str)
            .agg(lambda row: f"{row['specificity']} / {row['sensitivity']}", axis=1)
        ),
    )
    return blocks.rename_axis(
        "specificity / sensitivity at the run's threshold (the reframed blocks are not the rule's)"
    )


def far_family_table(results_dir) -> pd.DataFrame:
    """family_specificity of each far-screening arm in each of the far rule's blocks: which
    NORMAL file family the far block is worst for, as the rule scores it. Validation only."""
    specificity = _far_arm_columns(
        results_dir, lambda run_dir: family_specificity(run_dir, FAR_RULE_BLOCKS)
    )
    return specificity.rename_axis("specificity at the run's threshold")


def _far_arm_columns(results_dir, read) -> pd.DataFrame:
    """`read` of each far-screening arm (a column each), refused until every arm has finished:
    the far tables explain a decision that needs them all."""
    for recipe in FAR_SCREENING:
        _finished_arm(results_dir, recipe, "far")
    return _seed0_columns(results_dir, FAR_SCREENING, read)


def block_screening_table(
    results_dir, arms, rule: str, screening: str, ranking: str = "best"
) -> pd.DataFrame:
    """A screening at seed 0 ranked by a worst-block rule (`rule`, a key of BLOCK_SCORES). By
    `ranking`: "best", the highest score over the epochs (the epoch the run selected), arms
    within VIEW_TIE of the best by the higher mean over the last FRAME_LATE epochs; "shift",
    the same with ties by the smaller worst_shift_ratio; "late", that mean, ties by the highest
    score (with the spread of the thresholds over those epochs). Beside the score: the selected
    epoch's threshold, and each block's loss and AUC at that epoch."""
    if ranking not in ("best", "shift", "late"):
        raise ValueError(f"unknown ranking {ranking!r}: best, shift or late")
    rows = []
    for recipe in arms:
        run_dir, history = _finished_arm(results_dir, recipe, screening)
        scores, thresholds = history[f"{rule}_bacc"], history[f"{rule}_threshold"]
        epoch = int(scores.idxmax())
        at = history.loc[epoch]
        best, late = float(scores.max()), float(scores.tail(FRAME_LATE).mean())
        if ranking == "late":
            late_thresholds = thresholds.tail(FRAME_LATE)
            spread = f"{late_thresholds.min():.3f}-{late_thresholds.max():.3f}"
            beside = {"best": best, "thresholds, last": spread}
        elif ranking == "shift":
            beside = {SHIFT_RATIO: worst_shift_ratio(run_dir)}
        else:
            beside = {"late": late}
        rows.append(
            {
                "recipe": recipe,
                "epochs": len(history),
                "score": late if ranking == "late" else best,
                "at epoch": epoch,
                **beside,
                "threshold": round(float(at[f"{rule}_threshold"]), 4),
                **{
                    f"{split.replace('_', ' ')} loss / AUC": (
                        f"{_number(at[f'{split}_loss'])} / {_number(at[f'{split}_auc'])}"
                    )
                    for split in BLOCKS_OF_RULE[rule]
                },
            }
        )
    late_name = f"{BLOCK_SCORES[rule]}, mean of the last {FRAME_LATE}"
    names = {
        "score": f"score: {late_name if ranking == 'late' else BLOCK_SCORES[rule]}",
        "late": f"{BLOCK_SCORES[rule]}, last {FRAME_LATE}",
        "best": f"{BLOCK_SCORES[rule]}, best epoch",
        "thresholds, last": f"thresholds, last {FRAME_LATE}",
    }
    tie_break = {"shift": (SHIFT_RATIO, False), "late": ("best", True)}.get(ranking)
    return _ranked(pd.DataFrame(rows), VIEW_TIE, True, names, tie_break=tie_break)


def _operating_point(run_dir) -> tuple[float, str]:
    """A finished two-class run's threshold and the predictions' column it applies to."""
    task = runs.open_run(run_dir).task
    if not task.binary:
        raise ValueError(f"{run_dir} has no threshold to read its blocks at: a {task.name} run")
    return runs.run_threshold(run_dir), task.probability_columns[0]


def _seed0_columns(results_dir, recipes: Iterable[str], read) -> pd.DataFrame:
    """`read` of each recipe's seed-0 run (a Series), a column each."""
    return pd.DataFrame(
        {recipe: read(Path(results_dir) / run_name(recipe, ABLATION_SEED)) for recipe in recipes}
    )


def validation_blocks(run_dir) -> pd.DataFrame:
    """Each validation block of a finished run at the run's own threshold: specificity,
    sensitivity, and the mean P(positive) of the negative images; the old reframed set's
    blocks apart (a block per reframing) beside the view blocks that replace them. Validation
    only: it shows what a block lets the rule see (docs/frame.md, round 4)."""
    threshold, column = _operating_point(run_dir)
    rows = {}
    for split in ("val", "stressed_val", "reframed_val", *VIEW_VAL, FAR_TIGHTER_VAL):
        path = Path(run_dir) / f"{split}_predictions.csv"
        if not path.exists():
            continue
        predictions = runs.read_predictions(run_dir, split)
        parts = (
            predictions.groupby("reframing", sort=False)
            if "reframing" in predictions
            else [(None, predictions)]
        )
        for reframing, block in parts:
            name = split if reframing is None else f"{split}: {reframing.replace('_', ' ')}"
            negative, positive = block[block["label"] == 0], block[block["label"] == 1]
            rows[name.replace("_", " ")] = {
                "specificity": round(float((negative[column] < threshold).mean()), 3),
                "sensitivity": round(float((positive[column] >= threshold).mean()), 3),
                "mean P, negative images": round(float(negative[column].mean()), 3),
            }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(
        f"block (threshold {threshold:.4f})"
    )


def view_blocks_table(results_dir) -> pd.DataFrame:
    """Specificity of every validation block of each view-screening arm at the arm's own
    threshold (validation_blocks): where the old reframed blocks hid a drop, the view blocks
    show it. Validation only."""
    specificity = _seed0_columns(
        results_dir, VIEW_SCREENING, lambda run_dir: validation_blocks(run_dir)["specificity"]
    )
    return specificity.T.rename_axis("specificity at the run's threshold")


def family_specificity(run_dir, blocks: tuple[str, ...] = WORST_BLOCKS) -> pd.Series:
    """Specificity of each NORMAL file family (files.normal_family) in each validation block
    (by default the worst-block rule's), at the run's own threshold: what the family rule sees
    that the whole blocks average away (docs/frame.md, round 5). Validation only."""
    threshold, column = _operating_point(run_dir)
    specificity = {}
    for split in blocks:
        predictions = runs.read_predictions(run_dir, split)
        negative = predictions[predictions["label"] == 0]
        for family, images in negative.groupby(negative["relpath"].map(normal_family)):
            specificity[f"{split.replace('_', ' ')}: {family}"] = round(
                float((images[column] < threshold).mean()), 3
            )
    return pd.Series(specificity)


def family_blocks_table(results_dir) -> pd.DataFrame:
    """family_specificity of each family_arms_and_reference (a column each). Validation
    only."""
    arms = family_arms_and_reference(results_dir)
    specificity = _seed0_columns(results_dir, arms, family_specificity)
    return specificity.rename_axis("specificity at the run's threshold")


def family_arms_and_reference(results_dir) -> tuple[str, ...]:
    """The family screening's arms, after round 4's headline at seed 0 where it has finished
    (the control's settings under the worst-block rule; a separate run, so seed-to-seed
    variation is in the difference)."""
    reference = Path(results_dir) / run_name("view-variety", ABLATION_SEED)
    return ("view-variety", *FAMILY_SCREENING) if runs.is_finished(reference) else FAMILY_SCREENING


def _logit(probability):
    """log odds, from probabilities (a number or a Series) clipped where float32 saturates."""
    p = np.clip(probability, 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def normal_logit_shifts(run_dir) -> pd.Series:
    """How far each validation stress moves the NORMAL images towards PNEUMONIA, in log odds
    (the median over the images, each stressed copy against the same clean image), beside how
    far the clean NORMAL images lie below the run's threshold (their 10th percentile). The
    specificity of a block only moves when a shift crosses that margin, so where the margin is
    wide the blocks' specificity hides a shift that a nearer population would feel. Validation
    only (docs/frame.md, round 5)."""
    threshold, column = _operating_point(run_dir)
    val = runs.read_predictions(run_dir, "val").set_index("relpath")
    clean = _logit(val.loc[val["label"] == 0, column])
    margin = float(_logit(threshold)) - clean
    shifts = {"clean val: margin below the threshold, 10th percentile": margin.quantile(0.1)}
    for split in WORST_BLOCKS[1:]:
        stressed = runs.read_predictions(run_dir, split).set_index("relpath")[column]
        missing = clean.index.difference(stressed.index)
        if len(missing):
            raise ValueError(f"{run_dir}: {split} lacks {len(missing)} clean NORMAL images")
        shift = _logit(stressed[clean.index]) - clean
        shifts[f"{split.replace('_', ' ')}: median shift"] = shift.median()
    return pd.Series(shifts)


def worst_shift_ratio(run_dir) -> float:
    """The largest median shift of normal_logit_shifts over the stressed blocks, as a share of
    the clean NORMAL images' margin below the threshold (its 10th percentile): the
    consistency round's tie-break (docs/frame.md, round 6). A share, so that a model whose
    log odds are all smaller, shifts and margin alike, gains nothing by it."""
    shifts = normal_logit_shifts(run_dir)
    margin = shifts.iloc[0]
    if margin <= 0:  # a tenth of the clean NORMAL images already called ill: no margin to keep
        return float("inf")
    return float(shifts.iloc[1:].max() / margin)


def logit_shift_table(results_dir, recipes: Iterable[str]) -> pd.DataFrame:
    """normal_logit_shifts of each recipe's seed-0 run, a column each. Validation only."""
    shifts = _seed0_columns(results_dir, recipes, normal_logit_shifts)
    return shifts.round(2).rename_axis("NORMAL images, log odds")


def crop_screening_winner(results_dir) -> str:
    """The recipe the crop screening's rule picks (the first row of crop_screening_table)."""
    return str(crop_screening_table(results_dir).index[0])
