"""The family round's rule (docs/frame.md, round 5): the worst-block rule with each validation
block split by NORMAL file family, so that a family that lags is scored on its own; on tiny
generated predictions and a tiny generated dataset."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from pneumo_utils.data.dataset import block_families, load_run_data
from pneumo_utils.data.files import normal_family
from pneumo_utils.results.summary import SELECTION_NAMES
from pneumo_utils.splits import EVALUATED_SPLITS, FAR_RULE_BLOCKS, SELECT_METRICS, WORST_BLOCKS
from pneumo_utils.training import runs
from pneumo_utils.training.metrics import (
    family_blocks,
    worst_block_scores,
    worst_block_threshold,
)
from pneumo_utils.training.setup import selection_scores


@pytest.mark.parametrize(
    "name, family",
    [
        ("NORMAL2-IM-0030-0001.jpeg", "NORMAL2-*"),
        ("test/NORMAL/NORMAL2-IM-1427-0001.jpeg", "NORMAL2-*"),
        ("IM-0117-0001.jpeg", "IM-*"),
        ("train/NORMAL/IM-0001-0001.jpeg", "IM-*"),
    ],
)
def test_the_family_of_a_normal_file_is_read_from_its_name(name, family):
    assert normal_family(name) == family


def test_a_block_is_split_by_family_and_every_other_image_is_in_each_part():
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    families = np.array(["IM-*", "NORMAL2-*", "IM-*", "", ""])
    parts = family_blocks([(labels, scores)], [families])
    assert [p[1].tolist() for p in parts] == [[0.1, 0.3, 0.8, 0.9], [0.2, 0.8, 0.9]]
    assert [p[0].tolist() for p in parts] == [[0, 0, 1, 1], [0, 1, 1]]


def test_a_block_of_one_family_or_none_stays_as_it_is():
    labels, scores = np.array([0, 1, 1]), np.array([0.2, 0.7, 0.9])
    for families in (np.array(["IM-*", "", ""]), np.array(["", "", ""])):
        (part,) = family_blocks([(labels, scores)], [families])
        assert part[0].tolist() == labels.tolist() and part[1].tolist() == scores.tolist()


def _lagging_family_block():
    """100 IM-* NORMAL images scored low, 20 NORMAL2-* ones spread over 0.3-0.6, and 100
    PNEUMONIA images spread over 0.3-1.0: a family that lags, and that is one in six NORMAL
    images of its block."""
    im, normal2 = np.full(100, 0.05), np.linspace(0.3, 0.6, 20)
    pneumonia = np.linspace(0.3, 1.0, 100)
    labels = np.repeat([0, 0, 1], [100, 20, 100])
    families = np.repeat(["IM-*", "NORMAL2-*", ""], [100, 20, 100])
    return labels, np.concatenate([im, normal2, pneumonia]), families


def test_a_lagging_family_decides_the_threshold_where_its_block_hid_it():
    """The round's reason (docs/frame.md, round 5): in a whole block, calling the lagging
    family's images NORMAL costs more sensitivity than the block's specificity gains, so the
    worst-block rule gives the family up; split by family, its block is the worst one, and the
    threshold moves to where that family is called right."""
    labels, scores, families = _lagging_family_block()
    whole_threshold, whole_worst = worst_block_threshold([(labels, scores)])
    family_threshold, family_worst = worst_block_threshold(
        family_blocks([(labels, scores)], [families])
    )
    normal2 = scores[families == "NORMAL2-*"]
    assert np.mean(normal2 < whole_threshold) <= 0.2
    assert np.mean(normal2 < family_threshold) >= 0.9
    assert family_threshold > whole_threshold + 0.2
    assert family_worst < whole_worst


def _logits(probs: np.ndarray) -> np.ndarray:
    probs = np.clip(probs, 0.01, 0.99)  # finite logits
    return np.stack([np.zeros_like(probs), np.log(probs / (1 - probs))], axis=1)


def test_a_training_scores_every_epoch_by_every_block_rule():
    """The selection scores of an epoch (training/setup.py): the family rule's numbers beside
    the worst-block rule's, from the same predictions split by the families it is given; the
    far rule's from those blocks and the far tighter view."""
    labels, scores, families = _lagging_family_block()
    predictions = {split: (labels, _logits(scores)) for split in WORST_BLOCKS}
    # The far view moves every NORMAL image up: only the far rule sees it.
    predictions["far_tighter_val"] = (labels, _logits(np.where(labels == 0, scores + 0.3, scores)))
    row = {f"{split}_loss": 0.0 for split in EVALUATED_SPLITS}
    scores_of = selection_scores(row, predictions, dict.fromkeys(FAR_RULE_BLOCKS, families))
    assert scores_of["worst_family_block_bacc"] < scores_of["worst_block_bacc"] - 0.05
    assert scores_of["worst_family_block_threshold"] > scores_of["worst_block_threshold"] + 0.2
    assert scores_of["far_family_block_bacc"] < scores_of["worst_family_block_bacc"] - 0.05
    assert scores_of["far_family_block_threshold"] > scores_of["worst_family_block_threshold"]


@pytest.mark.parametrize("seed", range(3))
def test_the_family_score_is_never_above_the_whole_blocks(seed):
    """A property, not a check of the split (any split of the NORMAL images keeps it): a
    block's specificity is a weighted mean of its families', so at every threshold the worst
    family part is no better than its block, and the family rule's score is at most the
    worst-block rule's."""
    rng = np.random.default_rng(seed)
    blocks, families = [], []
    for _ in range(3):
        labels = rng.integers(0, 2, 80)
        family = np.where(labels == 0, rng.choice(["IM-*", "NORMAL2-*"], 80), "")
        logits = np.stack([np.zeros(80), 1.5 * labels + rng.normal(0, 1, 80)], axis=1)
        blocks.append((labels, logits))
        families.append(family)
    whole = worst_block_scores(blocks)["worst_block_bacc"]
    split = worst_block_scores(family_blocks(blocks, families), "worst_family_block")
    assert split["worst_family_block_bacc"] <= whole + 1e-12


def test_every_selection_rule_is_named_where_the_results_say_what_chose():
    assert all(metric.rsplit("_", 1)[0] in SELECTION_NAMES for metric in SELECT_METRICS)


@pytest.fixture
def two_family_data(tiny_copy):
    """The tiny dataset with every other NORMAL patient's files renamed NORMAL2-IM-*."""
    for path in sorted(tiny_copy.glob("*/NORMAL/IM-*.jpeg")):
        if int(path.name.split("-")[1]) % 2:
            path.rename(path.with_name(f"NORMAL2-{path.name}"))
    return tiny_copy


@pytest.mark.parametrize(
    "rule, blocks_of_rule",
    [("worst_family_block", WORST_BLOCKS), ("far_family_block", FAR_RULE_BLOCKS)],
)
def test_a_run_selects_and_thresholds_by_its_family_rule(
    tiny_config, two_family_data, tmp_path, rule, blocks_of_rule
):
    """The history records each family rule's numbers every epoch beside the worst-block
    rule's (a rule with more blocks never scores higher); best.pt is the epoch of the highest
    score of the run's rule, and the run's threshold is that rule's on that epoch's validation
    blocks, as their prediction files give them."""
    from pneumo_utils.analysis.scoring import finalize
    from pneumo_utils.training.fit import train

    config = replace(
        tiny_config,
        data=str(two_family_data),
        epochs=4,
        val_fraction=0.5,
        select_metric=f"{rule}_bacc",
        threshold_on=rule,
    )
    out = train(config, tmp_path / "run", progress=False,
                then=lambda run: finalize(run, robustness=False))  # fmt: skip
    history = runs.read_history(out)
    assert (history["worst_family_block_bacc"] <= history["worst_block_bacc"] + 1e-9).all()
    assert (history["far_family_block_bacc"] <= history["worst_family_block_bacc"] + 1e-9).all()
    best = history.loc[history[f"{rule}_bacc"].idxmax()]
    metrics = runs.read_metrics(out)
    assert metrics["best_epoch"] == int(best["epoch"])
    threshold = metrics["test"]["threshold"]
    assert threshold == pytest.approx(best[f"{rule}_threshold"], abs=1e-6)
    assert metrics["threshold_chosen_on"].startswith(rule)

    blocks, families = [], []
    for split in blocks_of_rule:
        saved = pd.read_csv(out / f"{split}_predictions.csv")
        blocks.append((saved["label"].to_numpy(), saved["p_pneumonia"].to_numpy()))
        families.append(np.where(saved["label"] == 0, saved["relpath"].map(normal_family), ""))
    parts = family_blocks(blocks, families)
    assert len(parts) == 2 * len(blocks_of_rule)  # the carve kept both families in every block
    recomputed, worst = worst_block_threshold(parts)
    assert recomputed == pytest.approx(threshold)
    assert worst == pytest.approx(best[f"{rule}_bacc"], abs=1e-6)

    data = load_run_data(config)
    by_block = block_families(data)
    assert [by_block[split].tolist() for split in blocks_of_rule] == [f.tolist() for f in families]


def _screening_arm(finished_run, folder, first: dict, later: dict):
    """A copy of `finished_run` at `folder` (a screening arm) with six epochs in its history:
    the columns of `first` at epoch 1, those of `later` at epochs 2-6."""
    import shutil

    from pneumo_utils.runtime.fileio import atomic_write_csv
    from pneumo_utils.training.epoch_log import HISTORY

    shutil.copytree(finished_run, folder, ignore=shutil.ignore_patterns("*.pt"))
    epoch_one = runs.read_history(folder).iloc[:1]
    rows = [epoch_one.assign(epoch=epoch, **(first if epoch == 1 else later))
            for epoch in range(1, 7)]  # fmt: skip
    atomic_write_csv(folder / HISTORY, pd.concat(rows).to_dict("records"))
    return folder


def test_the_family_screening_ranks_by_the_family_score_not_the_whole_blocks(
    finished_run, tmp_path
):
    """Each arm's history as the rule sees it: `family-sensor` has the best worst-block score
    and the worst family score, so the family screening ranks it last; within 0.005 of the best
    family score, the higher mean over the last 5 epochs goes first."""

    from pneumo_utils.results import screening

    scores = {  # (worst-block, family) score at epoch 1, then five late epochs
        "family-control": (0.90, 0.880, 0.80),
        "family-view-wide": (0.90, 0.877, 0.86),
        "family-sensor": (0.99, 0.700, 0.70),
        "family-centre-norm": (0.90, 0.850, 0.80),
    }
    for recipe, (whole, family, late) in scores.items():
        _screening_arm(
            finished_run,
            tmp_path / f"{recipe}-seed0",
            first=dict(worst_block_bacc=whole, worst_family_block_bacc=family,
                       worst_family_block_threshold=0.31),
            later=dict(worst_block_bacc=late, worst_family_block_bacc=late - 0.01,
                       worst_family_block_threshold=0.4),
        )  # fmt: skip
    table = screening.family_screening_table(tmp_path)
    assert list(table.index) == [
        "family-view-wide", "family-control", "family-centre-norm", "family-sensor"
    ]  # fmt: skip
    assert table.loc["family-control", "threshold"] == pytest.approx(0.31)
    assert "worst family-block" in table.columns[1]


def test_each_family_is_read_at_the_runs_threshold_in_every_block(finished_run, tmp_path):
    """The family table counts each NORMAL family of each block on its own: a block whose
    NORMAL2-* images all score above the threshold reads 0 for that family and its IM-* images'
    own specificity beside it."""
    import json
    import shutil

    from pneumo_utils.results import screening
    from pneumo_utils.runtime.fileio import atomic_write_csv

    for recipe in screening.FAMILY_SCREENING:
        shutil.copytree(
            finished_run, tmp_path / f"{recipe}-seed0", ignore=shutil.ignore_patterns("*.pt")
        )
    arm = tmp_path / "family-sensor-seed0"
    metrics = json.loads((arm / "metrics.json").read_text())
    metrics["test"]["threshold"] = threshold = 0.2  # a threshold of its own, not 0.5
    (arm / "metrics.json").write_text(json.dumps(metrics))
    tighter = runs.read_predictions(arm, "tighter_val")
    normal = tighter.index[tighter["label"] == 0]
    tighter.loc[normal, "p_pneumonia"] = np.linspace(0.05, 0.45, len(normal))
    lagging = normal[::2]  # every other NORMAL image becomes a NORMAL2-* file called ill
    tighter.loc[lagging, "relpath"] = (
        "train/NORMAL/NORMAL2-" + tighter.loc[lagging, "relpath"].str.rsplit("/", n=1).str[-1]
    )
    tighter.loc[lagging, "p_pneumonia"] = min(1.0, threshold + 0.01)
    atomic_write_csv(arm / "tighter_val_predictions.csv", tighter.to_dict("records"))

    table = screening.family_blocks_table(tmp_path)
    assert list(table.columns) == list(screening.FAMILY_SCREENING)  # no view-variety run here
    assert table.loc["tighter val: NORMAL2-*", "family-sensor"] == 0.0
    others = tighter.loc[normal.difference(lagging), "p_pneumonia"]
    specificity = float((others < threshold).mean())
    assert 0 < specificity < 1  # read at 0.5 it would be 1
    assert table.loc["tighter val: IM-*", "family-sensor"] == round(specificity, 3)
    assert pd.isna(table.loc["tighter val: NORMAL2-*", "family-control"])  # one family there
    assert {f"{split.replace('_', ' ')}: IM-*" for split in WORST_BLOCKS} <= set(table.index)
    shutil.copytree(finished_run, tmp_path / "view-variety-seed0")  # round 4's, as reference
    assert screening.family_blocks_table(tmp_path).columns[0] == "view-variety"


def test_the_logit_shift_pairs_each_stressed_normal_image_with_its_clean_self(
    finished_run, tmp_path
):
    """A tighter block whose NORMAL images sit 1 or 3 log-odds units above their clean selves
    (a quarter of them 3) reads a median shift of 1, in whatever order the file lists them; the
    margin is the clean NORMAL images' 10th percentile below the run's threshold; a block that
    lacks a clean NORMAL image is refused, not read without it."""
    import json
    import shutil

    from pneumo_utils.results import screening
    from pneumo_utils.runtime.fileio import atomic_write_csv

    arm = tmp_path / "family-control-seed0"
    shutil.copytree(finished_run, arm, ignore=shutil.ignore_patterns("*.pt"))
    metrics = json.loads((arm / "metrics.json").read_text())
    metrics["test"]["threshold"] = 0.2  # a threshold of its own, not 0.5
    (arm / "metrics.json").write_text(json.dumps(metrics))
    val = runs.read_predictions(arm, "val").set_index("relpath")
    normal = val.index[val["label"] == 0]
    clean = pd.Series(np.linspace(0.01, 0.3, len(normal)), index=normal)
    val.loc[normal, "p_pneumonia"] = clean
    atomic_write_csv(arm / "val_predictions.csv", val.reset_index().to_dict("records"))
    tighter = runs.read_predictions(arm, "tighter_val").set_index("relpath")
    moved = pd.Series(1.0, index=normal)
    moved.iloc[::4] = 3.0
    odds = np.exp(moved) * clean / (1 - clean)
    tighter.loc[normal, "p_pneumonia"] = odds / (1 + odds)
    tighter = tighter.sample(frac=1.0, random_state=7).reset_index()  # another order
    atomic_write_csv(arm / "tighter_val_predictions.csv", tighter.to_dict("records"))

    shifts = screening.logit_shift_table(tmp_path, ["family-control"])["family-control"]
    assert shifts["tighter val: median shift"] == pytest.approx(1.0, abs=0.01)
    margin = np.log(0.2 / 0.8) - np.log(clean / (1 - clean))
    assert shifts.iloc[0] == pytest.approx(margin.quantile(0.1), abs=0.01)

    lacking = tighter[tighter["relpath"] != normal[0]]
    atomic_write_csv(arm / "tighter_val_predictions.csv", lacking.to_dict("records"))
    with pytest.raises(ValueError, match="lacks 1 clean NORMAL image"):
        screening.normal_logit_shifts(arm)


def test_the_consistency_screening_breaks_ties_by_the_smaller_shift_over_margin(
    finished_run, tmp_path
):
    """Round 6's rule (docs/frame.md): the family score first; within 0.005 of the best, the
    smaller worst shift ratio goes first, even against a better last-5 mean; the ratio is the
    largest median NORMAL shift over the stressed blocks divided by the clean margin, so an arm
    whose log odds are all halved, shifts and margin alike, keeps its ratio."""
    import json

    from pneumo_utils.results import screening
    from pneumo_utils.runtime.fileio import atomic_write_csv
    from pneumo_utils.splits import WORST_BLOCKS

    def log_odds_to_p(log_odds):
        return 1 / (1 + np.exp(-log_odds))

    # (family score at epoch 1, late epochs' score, tighter block's shift)
    arms = {
        screening.CONSISTENCY_SCREENING[0]: (0.900, 0.89, 2.0),  # ties, late best, big shift
        "consistency-1": (0.897, 0.80, 1.0),  # ties, small shift
        "consistency-4": (0.850, 0.80, 0.2),  # outside the band: last however small
    }
    ratios = {}
    for recipe, (family, late, shift) in arms.items():
        folder = _screening_arm(
            finished_run,
            tmp_path / f"{recipe}-seed0",
            first=dict(worst_family_block_bacc=family, worst_family_block_threshold=0.5),
            later=dict(worst_family_block_bacc=late, worst_family_block_threshold=0.5),
        )
        metrics = json.loads((folder / "metrics.json").read_text())
        metrics["test"]["threshold"] = 0.5  # log odds 0: the margin is minus the clean log odds
        (folder / "metrics.json").write_text(json.dumps(metrics))
        val = runs.read_predictions(folder, "val").set_index("relpath")
        normal = val.index[val["label"] == 0]
        clean = pd.Series(-np.linspace(3.0, 5.0, len(normal)), index=normal)
        val.loc[normal, "p_pneumonia"] = log_odds_to_p(clean)
        atomic_write_csv(folder / "val_predictions.csv", val.reset_index().to_dict("records"))
        for split in WORST_BLOCKS[1:]:
            block = runs.read_predictions(folder, split).set_index("relpath")
            moved = shift if split == "tighter_val" else 0.1
            block.loc[normal, "p_pneumonia"] = log_odds_to_p(clean + moved)
            atomic_write_csv(folder / f"{split}_predictions.csv",
                             block.reset_index().to_dict("records"))  # fmt: skip
        ratios[recipe] = screening.worst_shift_ratio(folder)
        margin = float((-clean).quantile(0.1))
        assert ratios[recipe] == pytest.approx(shift / margin, rel=1e-3)

    table = screening.consistency_screening_table(tmp_path)
    assert list(table.index) == [
        "consistency-1", screening.CONSISTENCY_SCREENING[0], "consistency-4"
    ]  # fmt: skip
    assert table.loc["consistency-1", screening.SHIFT_RATIO] == round(ratios["consistency-1"], 3)

    halved = tmp_path / "consistency-1-seed0"
    for split in WORST_BLOCKS:
        saved = runs.read_predictions(halved, split)
        log_odds = np.log(saved["p_pneumonia"]) - np.log1p(-saved["p_pneumonia"])
        saved["p_pneumonia"] = log_odds_to_p(log_odds / 2)
        atomic_write_csv(halved / f"{split}_predictions.csv", saved.to_dict("records"))
    assert screening.worst_shift_ratio(halved) == pytest.approx(ratios["consistency-1"], rel=1e-3)

    ill = runs.read_predictions(halved, "val")  # every clean NORMAL image above the threshold
    ill.loc[ill["label"] == 0, "p_pneumonia"] = 0.6
    atomic_write_csv(halved / "val_predictions.csv", ill.to_dict("records"))
    assert screening.worst_shift_ratio(halved) == float("inf")
    table = screening.consistency_screening_table(tmp_path)
    assert list(table.index)[:2] == [screening.CONSISTENCY_SCREENING[0], "consistency-1"]


def test_the_averaging_screening_ranks_by_the_last_epochs_not_one_lucky_epoch(
    finished_run, tmp_path
):
    """Round 7's rule (docs/frame.md): the family score's mean over the last 5 epochs ranks the
    arms, so the control's one high epoch does not carry it; within 0.005 of the best mean, the
    higher best epoch goes first. The spread of the thresholds over those epochs is shown."""
    from pneumo_utils.results import screening

    scores = {  # family score at epoch 1, then at the five late epochs
        screening.AVERAGING_SCREENING[0]: (0.950, 0.900),  # the best epoch, a poor late mean
        "ema-short": (0.800, 0.930),  # the best late mean
        "ema-long": (0.960, 0.927),  # within 0.005 of it, with the higher best epoch
    }
    for recipe, (first, late) in scores.items():
        _screening_arm(
            finished_run,
            tmp_path / f"{recipe}-seed0",
            first=dict(worst_family_block_bacc=first, worst_family_block_threshold=0.31),
            later=dict(worst_family_block_bacc=late, worst_family_block_threshold=0.4),
        )
    table = screening.averaging_screening_table(tmp_path)
    assert list(table.index) == ["ema-long", "ema-short", screening.AVERAGING_SCREENING[0]]
    score = next(column for column in table.columns if column.startswith("score:"))
    assert "mean of the last 5" in score
    assert table[score].to_dict() == {
        "ema-long": 0.927, "ema-short": 0.93, screening.AVERAGING_SCREENING[0]: 0.9
    }  # fmt: skip
    assert table.loc["ema-long", "at epoch"] == 1  # the run itself still selects its best epoch
    assert table.loc["ema-short", "thresholds, last 5"] == "0.400-0.400"
    assert table["tied with the best"].tolist() == [True, True, False]


def test_the_far_screening_ranks_by_the_far_rule_and_shows_what_each_block_costs(
    finished_run, tmp_path
):
    """Round 8's rule (docs/frame.md): the far rule's score (not the family rule's) averaged
    over the last 5 epochs ranks the arms, ties by the best epoch; its table shows the far
    block beside the others, and each arm's blocks at its threshold."""
    from pneumo_utils.results import page, screening, tables

    results_dir = tmp_path / "chest_xray"  # a results page's folder is its dataset's name
    scores = {  # family score; far score at epoch 1, then at the five late epochs
        "far-control": (0.97, 0.95, 0.80),  # the best family score and one lucky far epoch
        "far-view-wide": (0.93, 0.89, 0.90),
        "far-consistency": (0.90, 0.91, 0.897),  # within 0.005, with the higher best epoch
    }
    for recipe, (family, first, late) in scores.items():
        _screening_arm(
            finished_run,
            results_dir / f"{recipe}-seed0",
            first=dict(worst_family_block_bacc=family, far_family_block_bacc=first,
                       far_family_block_threshold=0.3),
            later=dict(worst_family_block_bacc=family, far_family_block_bacc=late,
                       far_family_block_threshold=0.3),
        )  # fmt: skip
    table = screening.far_screening_table(results_dir)
    assert list(table.index) == ["far-consistency", "far-view-wide", "far-control"]
    assert "far tighter val loss / AUC" in table.columns
    assert table["tied with the best"].tolist() == [True, True, False]

    blocks = screening.far_blocks_table(results_dir)
    assert list(blocks.columns) == list(screening.FAR_SCREENING)
    assert "far tighter val" in blocks.index
    specificity, sensitivity = blocks.loc["far tighter val", "far-control"].split(" / ")
    assert 0 <= float(specificity) <= 1 and 0 <= float(sensitivity) <= 1

    families = screening.far_family_table(results_dir)  # the far block split by NORMAL file family
    assert list(families.columns) == list(screening.FAR_SCREENING)
    far_rows = [row for row in families.index if row.startswith("far tighter val: ")]
    assert far_rows and families.loc[far_rows].stack().between(0, 1).all()

    runs_table = tables.collect_runs(results_dir)
    far_section = page._screening_sections(runs_table, figure=str)[0]
    assert far_section.startswith("## The far screening")
    assert "The rule\npicks `far-consistency`" in far_section
    assert "far tighter val: " in far_section  # the family table is on the page

    (results_dir / "far-consistency-seed0" / "metrics.json").unlink()  # not finished
    sections = page._screening_sections(tables.collect_runs(results_dir), figure=str)
    assert not any(section.startswith("## The far screening") for section in sections)
    with pytest.raises(screening.UnfinishedArm, match="far screening needs every arm"):
        screening.far_blocks_table(results_dir)
    with pytest.raises(screening.UnfinishedArm, match="far screening needs every arm"):
        screening.far_family_table(results_dir)


def test_the_far_control_is_round_7s_pick_under_the_far_rule():
    """Round 8's reference trains what `ema-short` trains (the same weights at a seed and thread
    count); only the rule that chooses its epoch and threshold differs (docs/frame.md, round 8)."""
    from dataclasses import asdict

    from pneumo_utils.recipes import recipe_config

    far, picked = asdict(recipe_config("far-control")), asdict(recipe_config("ema-short"))
    assert {name for name in far if far[name] != picked[name]} == {"select_metric", "threshold_on"}
    assert far["select_metric"] == "far_family_block_bacc"
    assert far["threshold_on"] == "far_family_block"
