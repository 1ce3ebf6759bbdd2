"""The robustness report of a run: its best checkpoint on the test images changed the way other
hospitals' radiographs differ, occlusion of the lungs or of the frame, subgroups, calibration
and the worst mistakes, at the run's own threshold, with patient-grouped bootstrap intervals.

`python -m pneumo_utils robustness RUN_DIR` (and `train`, for every new run) writes
robustness.json (everything) and robustness.csv (the perturbation table). Perturbations act on
the decoded test image at the run's resolution, before the run's intensity normalisation,
so they reach the model the way a different acquisition would. The strengths are fixed in
perturbations.py, before any result was read; nothing is chosen from this report.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from pneumo_utils.analysis.bootstrap import bootstrap_intervals, prediction_patients
from pneumo_utils.analysis.calibration import calibration, failures, subgroup_rows
from pneumo_utils.analysis.perturbations import SUITE, perturbed_copy
from pneumo_utils.config import TrainConfig
from pneumo_utils.data.batches import hold, hold_images
from pneumo_utils.data.dataset import load_run_data, split_frame
from pneumo_utils.data.transforms import evaluation_transform
from pneumo_utils.runtime.device import autocast_dtype
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.runtime.fileio import atomic_write_text
from pneumo_utils.splits import EVALUATED_SPLITS
from pneumo_utils.training import runs
from pneumo_utils.training.metrics import binary_metrics, positive_probability, predict_logits
from pneumo_utils.training.runs import load_trained_model

REPORTED = ("accuracy", "sensitivity", "specificity", "roc_auc")
# The report's files in the run folder: everything, and the perturbation table.
ROBUSTNESS_JSON, ROBUSTNESS_CSV = "robustness.json", "robustness.csv"
# The two orders a report may use (its "perturbed" entry; docs/frame.md).
PERTURBED_BEFORE_CROP = (
    "as acquired (decoded, full frame), then the input pipeline: crop to the body, square"
)
PERTURBED_SQUARE = "the decoded square at the run's resolution (no crop)"


# ----------------------------------------------------------------------------- metrics


def _metric_row(labels, probs, threshold, groups, n_resamples, class_names) -> dict:
    intervals = bootstrap_intervals(labels, probs, threshold, groups=groups,
                                    n_resamples=n_resamples, class_names=class_names)  # fmt: skip
    row = dict(n=int(len(labels)))
    for metric in REPORTED:
        value, low, high = intervals.loc[metric, ["value", "low", "high"]]
        row.update({metric: value, f"{metric}_low": low, f"{metric}_high": high})
    return row


# ----------------------------------------------------------------------------- the report


@dataclass
class _Scorer:
    """A run's best checkpoint as the run scores images: its normalisation, batch and precision."""

    model: torch.nn.Module
    cfg: TrainConfig
    device: torch.device

    def __post_init__(self):
        self.amp_dtype = autocast_dtype(self.device, self.cfg.amp)
        self.normalize = evaluation_transform(self.cfg)
        self.batch = 2 * self.cfg.batch_size

    def _predict(self, held) -> tuple[np.ndarray, np.ndarray]:
        logits, labels = predict_logits(
            self.model, held.in_order(self.batch), self.device, self.amp_dtype,
            self.cfg.channels_last, self.cfg.max_batches,
        )  # fmt: skip
        return positive_probability(logits), labels

    def images(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """P(pneumonia) of decoded images."""
        return self._predict(hold_images(images, labels, self.device, self.normalize))[0]

    def split(self, data, split: str) -> tuple[np.ndarray, np.ndarray]:
        """P(pneumonia) and labels of a split (or validation copy) as training scored it."""
        return self._predict(hold(data, split, self.device, self.normalize))


def robustness_report(
    run_dir: str | os.PathLike,
    data_dir: str | None = None,
    n_resamples: int = 1000,
    progress: bool = True,
) -> dict:
    """Score a finished run folder's best checkpoint under the suite (a later process than
    its training: config.json, best.pt and metrics.json are read); write robustness.json and
    .csv."""
    run_dir = Path(run_dir)
    _check_scorable(run_dir)
    model, cfg, device = load_trained_model(run_dir)
    data = load_run_data(cfg, data_dir, progress=progress)
    metrics = runs.read_metrics(run_dir)
    return score_robustness(run_dir, model, cfg, data, metrics, device, n_resamples, progress)


def score_robustness(
    run_dir: Path,
    model: torch.nn.Module,
    cfg: TrainConfig,
    data,
    metrics: dict,
    device: torch.device,
    n_resamples: int = 1000,
    progress: bool = True,
    predictions: dict | None = None,
) -> dict:
    """The robustness report of a two-class run's best model, at the threshold of its
    `metrics`; written into `run_dir`. Its callers refuse other tasks before any work
    (robustness_report in one line, finalize by skipping the report). `predictions` (split ->
    (labels, logits), as training scored them) spares predicting the unperturbed splits again."""
    started = time.perf_counter()
    task = data.task
    scorer = _Scorer(model, cfg, device)
    threshold = metrics["test"]["threshold"]
    test = split_frame(data, "test")
    if cfg.max_batches:  # smoke runs score what they were evaluated on
        test = test.iloc[: cfg.max_batches * scorer.batch]
    labels = test["label"].to_numpy()
    clean = scorer.images(np.asarray(data.images[test["cache_row"].to_numpy()]), labels)
    perturb, order = _perturbation_order(data, test)
    rows = _perturbation_rows(
        scorer, perturb, clean, test, threshold, n_resamples, progress, task.class_names
    )
    scored = {"test": (clean, labels)}
    for split in (s for s in EVALUATED_SPLITS if s != "test"):
        if predictions is None:
            scored[split] = scorer.split(data, split)
        else:  # (labels, logits) as training scored the split: P(pneumonia) and labels
            labels_, logits = predictions[split]
            scored[split] = positive_probability(logits), labels_
    report = dict(
        run=run_dir.name,
        threshold=threshold,
        threshold_chosen_on=metrics["threshold_chosen_on"],
        best_epoch=metrics["best_epoch"],
        image_size=cfg.image_size,
        perturbed=order,
        n_test=int(len(labels)),
        bootstrap=f"{n_resamples} resamples of the test patients (all images of each)",
        perturbations=rows,
        **_clean_sections(test, scored, threshold, task),
        seconds=round(time.perf_counter() - started, 1),
    )
    write_report(run_dir, report, pd.DataFrame(rows))
    print(summary_line(report))
    return report


def _check_scorable(run_dir: Path) -> None:
    """A finished two-class run passes; anything else is refused in one line."""
    if not (run_dir / runs.CONFIG).exists():
        raise UserError(
            f"{run_dir} is not a run folder (no {runs.CONFIG}): pass the --out of a training"
        )
    if not runs.is_finished(run_dir):
        raise UserError(
            f"{run_dir} has not finished (no {runs.METRICS}): let its training end first"
        )
    task = runs.open_run(run_dir).task
    if not task.binary:
        raise UserError(
            f"{run_dir} is a {task.name} run: the robustness report scores a decision at a "
            "threshold, which needs a two-class task (pneumonia or bacterial-viral)"
        )


def _clean_sections(test: pd.DataFrame, scored: dict, threshold: float, task) -> dict:
    """The report's unperturbed sections: subgroups, every split, calibration, failures."""
    clean, labels = scored["test"]
    return dict(
        subgroups=subgroup_rows(test, clean, threshold, task.class_names),
        splits=[
            dict(
                split=split,
                **binary_metrics(scored[split][1], scored[split][0], threshold, task.class_names),
            )
            for split in EVALUATED_SPLITS
        ],
        calibration=dict(
            test=calibration(labels, clean), val=calibration(scored["val"][1], scored["val"][0])
        ),
        failures=failures(
            test,
            clean,
            threshold,
            class_names=task.class_names,
            column=task.probability_columns[0],
        ),
    )


def _perturbation_order(data, test: pd.DataFrame):
    """How the suite changes the test images, and the words for it: a run that crops to the
    body has each image changed as acquired (decoded, full frame) and then the whole input
    pipeline, crop included, as an image from another hospital would be; a run without the
    crop has its decoded squares changed, as every report before the crop was made."""
    if data.crop_to_body:
        acquired = data.acquired(test)
        return (
            lambda perturbation, strength: perturbed_copy(
                acquired, perturbation, strength, data.input_pipeline
            ),
            PERTURBED_BEFORE_CROP,
        )
    squares = np.asarray(data.images[test["cache_row"].to_numpy()])
    return (
        lambda perturbation, strength: perturbed_copy(squares, perturbation, strength),
        PERTURBED_SQUARE,
    )


def _perturbation_rows(scorer, perturb, clean, test, threshold, n_resamples, progress, class_names):
    """The unperturbed test set, then every family at every strength, with its change."""
    labels, patients = test["label"].to_numpy(), prediction_patients(test)
    reference = _metric_row(labels, clean, threshold, patients, n_resamples, class_names)
    rows = [dict(family="none", kind="clean", strength=None, middle=True, what="as they are",
                 **reference)]  # fmt: skip
    variants = [(p, s) for p in SUITE for s in p.strengths]
    for perturbation, strength in tqdm(variants, desc="robustness", disable=not progress):
        probs = scorer.images(perturb(perturbation, strength), labels)
        row = _metric_row(labels, probs, threshold, patients, n_resamples, class_names)
        rows.append(
            dict(
                family=perturbation.family,
                kind=perturbation.kind,
                strength=strength,
                middle=strength == perturbation.middle,
                what=perturbation.what,
                **row,
                **{f"delta_{m}": row[m] - reference[m] for m in REPORTED},
            )
        )
    return rows


def read_report(run_dir: str | os.PathLike) -> dict:
    """A run's robustness.json."""
    return json.loads((Path(run_dir) / ROBUSTNESS_JSON).read_text())


def write_report(run_dir: Path, report: dict, table: pd.DataFrame) -> None:
    atomic_write_text(run_dir / ROBUSTNESS_JSON, json.dumps(runs.json_safe(report), indent=1))
    atomic_write_text(run_dir / ROBUSTNESS_CSV, table.to_csv(index=False))


def perturbation_table(report: dict) -> pd.DataFrame:
    return pd.DataFrame(report["perturbations"])


def summary_line(report: dict) -> str:
    table = perturbation_table(report)
    natural = table[(table["kind"] == "natural") & table["middle"]]
    worst = natural.loc[natural["delta_specificity"].idxmin()]
    occlusion = table[table["kind"] == "occlusion"].set_index("family")["roc_auc"]
    return (
        f"robustness of {report['run']} ({report['n_test']} test images, {report['seconds']} s): "
        f"worst middle-strength specificity change {100 * worst['delta_specificity']:+.1f} "
        f"points ({worst['family']}); AUC lungs covered {occlusion['lungs covered']:.3f}, frame "
        f"covered {occlusion['frame covered']:.3f}; ECE on test "
        f"{report['calibration']['test']['ece']:.3f}"
    )
