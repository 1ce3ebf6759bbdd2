"""The robustness report of a run: its best checkpoint on the test images changed the way other
hospitals' radiographs differ, occlusion of the lungs or of the frame, subgroups, calibration
and the worst mistakes, at the run's own threshold, with patient-grouped bootstrap intervals.

`python -m pneumo_utils robustness RUN_DIR` (and `finalize`, for every new run) writes
robustness.json (everything) and robustness.csv (the perturbation table). Perturbations act on
the decoded test image at the run's resolution, before the run's intensity normalisation,
so they reach the model the way a different acquisition would. The strengths are fixed here,
before any result was read; nothing is chosen from this report.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torchvision.transforms import v2
from tqdm.auto import tqdm

from . import runs
from .config import TrainConfig
from .dataset import CLASS_NAMES, EVALUATED_SPLITS, load_run_data, split_frame
from .device import autocast_dtype
from .errors import UserError
from .evaluate import (
    binary_metrics,
    bootstrap_intervals,
    positive_probability,
    predict_logits,
    prediction_patients,
)
from .fileio import atomic_write_text
from .loaders import XrayDataset, make_loader
from .models import load_trained_model
from .tasks import pneumonia_type
from .transforms import (
    add_noise,
    band_mask,
    blur,
    evaluation_transform,
    median_grey,
    recompress_jpeg,
    reframe,
    replace_border,
    set_levels,
)

JSON, CSV = "robustness.json", "robustness.csv"
REPORTED = ("accuracy", "sensitivity", "specificity", "roc_auc")
# How much of each side the occlusion pair and the border family treat as "the frame".
FRAME_BAND = 0.15
CALIBRATION_BINS = 15
# The two orders a report may use (its "perturbed" entry; docs/frame.md).
PERTURBED_BEFORE_CROP = (
    "as acquired (decoded, full frame), then the input pipeline: crop to the body, square"
)
PERTURBED_SQUARE = "the decoded square at the run's resolution (no crop)"
FAILURES = 12


@dataclass(frozen=True)
class Perturbation:
    """A family of changes at increasing strengths; `apply(image, strength, generator)`."""

    family: str
    kind: str  # natural (an acquisition change), anatomy (changes the anatomy), occlusion
    what: str
    unit: str
    strengths: tuple[float, ...]
    apply: Callable[[torch.Tensor, float, torch.Generator], torch.Tensor]

    @property
    def middle(self) -> float:
        return self.strengths[len(self.strengths) // 2]


def _translate(image: torch.Tensor, fraction: float) -> torch.Tensor:
    shift = round(fraction * image.shape[-1])
    return v2.functional.affine(image, angle=0.0, translate=[shift, shift], scale=1.0,
                                shear=[0.0, 0.0], fill=0)  # fmt: skip


def _cover_lungs(image: torch.Tensor, band: float) -> torch.Tensor:
    """Everything but the outer `band` of the frame painted the image's median grey."""
    out = image.clone()
    out[:, ~band_mask(image.shape[1], image.shape[2], band)] = round(median_grey(image))
    return out


def _blur(image, sigma, _):
    return blur(image, sigma * image.shape[-1] / 128)


SUITE: tuple[Perturbation, ...] = (
    Perturbation("zoom in", "natural", "field of view tighter: the central 1/s enlarged",
                 "s", (1.1, 1.25, 1.4), lambda x, s, _: reframe(x, s)),
    Perturbation("zoom out", "natural", "field of view wider: shrunk to s of the side, black "
                 "margin", "s", (0.9, 0.8, 0.7), lambda x, s, _: reframe(x, s, fill=0)),
    Perturbation("translation", "natural", "shifted right and down by s of the side, black "
                 "fill", "s", (0.04, 0.08, 0.12), lambda x, s, _: _translate(x, s)),
    Perturbation("border", "natural", "outer band of s of each side replaced by the median "
                 "grey", "s", (0.05, 0.1, 0.15),
                 lambda x, s, _: replace_border(x, s, median_grey(x))),
    Perturbation("gamma", "natural", "gamma s (darker mid-tones)", "gamma", (1.25, 1.5, 2.0),
                 lambda x, s, _: v2.functional.adjust_gamma(x, s)),
    Perturbation("contrast", "natural", "contrast scaled by s around the mean", "s",
                 (0.8, 0.6, 0.4), lambda x, s, _: v2.functional.adjust_contrast(x, s)),
    Perturbation("black/white points", "natural", "black lifted and white lowered by s of the "
                 "range (a washed-out window)", "s", (0.05, 0.1, 0.2),
                 lambda x, s, _: set_levels(x, -s, 1 + s)),
    Perturbation("blur", "natural", "Gaussian blur, sigma s px at 128 px", "sigma",
                 (0.5, 1.0, 2.0), _blur),
    Perturbation("noise", "natural", "Gaussian noise, sd s of the grey range", "sd",
                 (0.02, 0.04, 0.08), lambda x, s, g: add_noise(x, s, g)),
    Perturbation("jpeg", "natural", "re-encoded as JPEG at quality s", "quality",
                 (50, 30, 15), lambda x, s, _: recompress_jpeg(x, int(s))),
    Perturbation("rotation", "natural", "rotated by s degrees, black fill", "degrees",
                 (5, 10, 15), lambda x, s, _: v2.functional.rotate(x, s, fill=0)),
    Perturbation("horizontal flip", "anatomy", "mirrored left to right (the heart on the "
                 "right)", "", (1,), lambda x, s, _: v2.functional.horizontal_flip(x)),
    Perturbation("lungs covered", "occlusion", "only the outer band of s of each side kept, "
                 "the rest median grey", "s", (FRAME_BAND,), lambda x, s, _: _cover_lungs(x, s)),
    Perturbation("frame covered", "occlusion", "the outer band of s of each side median grey, "
                 "the lungs kept", "s", (FRAME_BAND,),
                 lambda x, s, _: replace_border(x, s, median_grey(x))),
)  # fmt: skip


def perturbed_copy(
    images, perturbation: Perturbation, strength: float, pipeline=None
) -> np.ndarray:
    """Every image changed by one family at one strength, then, with `pipeline`
    (XrayData.input_pipeline), made the model's input square; noise drawn per image index, so
    the copy depends on nothing but the images."""
    changed = []
    for i, image in enumerate(images):
        generator = torch.Generator().manual_seed(i)
        tensor = torch.from_numpy(np.array(image))[None]  # a copy: decoded files are read-only
        pixels = perturbation.apply(tensor, strength, generator)[0].numpy()
        changed.append(pipeline(pixels)[0] if pipeline is not None else pixels)
    return np.stack(changed)


# ----------------------------------------------------------------------------- metrics


def calibration(labels: np.ndarray, probs: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
    """Expected calibration error of P(pneumonia) over equal-width bins (the weighted mean gap
    between the share of PNEUMONIA and the mean probability in each bin), the Brier score, and
    the reliability diagram's bins."""
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(probs, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        inside = index == b
        if not inside.any():
            continue
        mean_p, share = float(probs[inside].mean()), float(labels[inside].mean())
        ece += inside.mean() * abs(share - mean_p)
        table.append(dict(low=edges[b], high=edges[b + 1], n=int(inside.sum()),
                          mean_probability=mean_p, share_pneumonia=share))  # fmt: skip
    brier = float(np.mean((probs - labels) ** 2))
    return dict(ece=float(ece), brier=brier, bins=table, n=int(len(labels)))


def _metric_row(labels, probs, threshold, groups, n_resamples, class_names) -> dict:
    intervals = bootstrap_intervals(labels, probs, threshold, groups=groups,
                                    n_resamples=n_resamples, class_names=class_names)  # fmt: skip
    row = dict(n=int(len(labels)))
    for metric in REPORTED:
        value, low, high = intervals.loc[metric, ["value", "low", "high"]]
        row.update({metric: value, f"{metric}_low": low, f"{metric}_high": high})
    return row


def subgroup(relpath: str, label: int) -> str:
    """The file family of a test image: IM-* or NORMAL2-* for NORMAL, bacteria or virus for
    PNEUMONIA (read from the file name)."""
    name = Path(relpath).name
    if label == 0:
        return "NORMAL2-*" if name.startswith("NORMAL2-") else "IM-*"
    return {"BACTERIAL": "bacteria", "VIRAL": "virus"}.get(pneumonia_type(name), "other")


def subgroup_rows(
    frame: pd.DataFrame, probs: np.ndarray, threshold: float, class_names=CLASS_NAMES
) -> list[dict]:
    """Specificity of each NORMAL file family, sensitivity of bacterial and viral pneumonia
    (bacterial-viral: the share of each called right, specificity for BACTERIAL)."""
    folders = frame["folder_label"] if "folder_label" in frame else frame["label"]
    groups = np.array([subgroup(r, y) for r, y in zip(frame["relpath"], folders,
                                                      strict=True)])  # fmt: skip
    rows = []
    for name in sorted(set(groups)):
        inside = groups == name
        label = int(frame["label"].to_numpy()[inside][0])
        metric = "specificity" if label == 0 else "sensitivity"
        correct = (probs[inside] >= threshold) == bool(label)
        rows.append(dict(subgroup=name, class_name=class_names[label], n=int(inside.sum()),
                         metric=metric, value=float(correct.mean())))  # fmt: skip
    return rows


def failures(
    frame: pd.DataFrame,
    probs: np.ndarray,
    threshold: float,
    n: int = FAILURES,
    class_names=CLASS_NAMES,
    column: str = "p_pneumonia",
):
    """The misclassified test images, the most confidently wrong first, with P(class 1) under
    the name of the predictions' column (p_pneumonia, p_viral)."""
    labels = frame["label"].to_numpy()
    wrong = (probs >= threshold) != labels.astype(bool)
    confidence = np.where(labels == 1, threshold - probs, probs - threshold)
    order = [i for i in np.argsort(-confidence, kind="stable") if wrong[i]][:n]
    return [{"relpath": frame["relpath"].iat[i], "label": int(labels[i]),
             "class_name": class_names[labels[i]], column: float(probs[i])}
            for i in order]  # fmt: skip


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

    def _predict(self, loader) -> tuple[np.ndarray, np.ndarray]:
        logits, labels = predict_logits(
            self.model, loader, self.device, self.amp_dtype, self.cfg.channels_last,
            self.cfg.max_batches,
        )  # fmt: skip
        return positive_probability(logits), labels

    def images(self, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """P(pneumonia) of decoded images."""
        dataset = XrayDataset(images, np.arange(len(images)), labels, self.normalize)
        return self._predict(torch.utils.data.DataLoader(dataset, batch_size=self.batch))[0]

    def split(self, data, split: str) -> tuple[np.ndarray, np.ndarray]:
        """P(pneumonia) and labels of a split as training scored it (make_loader knows the
        stressed copies)."""
        return self._predict(make_loader(data, split, self.batch, transform=self.normalize))


def robustness_report(
    run_dir: str | os.PathLike,
    data_dir: str | None = None,
    n_resamples: int = 1000,
    progress: bool = True,
    data=None,
    device: torch.device | None = None,
) -> dict:
    """Score a run's best checkpoint under the suite; write robustness.json and .csv."""
    started = time.perf_counter()
    run_dir = Path(run_dir)
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
    model, cfg, device = load_trained_model(run_dir, device)
    data = data or load_run_data(cfg, data_dir, progress=progress)
    scorer = _Scorer(model, cfg, device)
    metrics = runs.read_metrics(run_dir)
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
    scored.update({s: scorer.split(data, s) for s in EVALUATED_SPLITS if s != "test"})
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
        ),  # fmt: skip
        seconds=round(time.perf_counter() - started, 1),
    )
    write_report(run_dir, report, pd.DataFrame(rows))
    print(summary_line(report))
    return report


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


def read_report(run_dir: str | os.PathLike) -> dict:
    return json.loads((Path(run_dir) / JSON).read_text())


def write_report(run_dir: Path, report: dict, table: pd.DataFrame) -> None:
    atomic_write_text(run_dir / JSON, json.dumps(runs.json_safe(report), indent=1))
    atomic_write_text(run_dir / CSV, table.to_csv(index=False))
