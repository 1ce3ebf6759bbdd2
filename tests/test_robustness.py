"""The robustness report: every perturbation family, calibration, subgroups and failures, on
tiny generated images, and the report of a finished tiny run."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from pneumo_utils.analysis import robustness
from pneumo_utils.analysis.calibration import calibration, failures, subgroup, subgroup_rows
from pneumo_utils.analysis.perturbations import SUITE, perturbed_copy
from pneumo_utils.data.transforms import band_mask
from pneumo_utils.splits import EVALUATED_SPLITS
from pneumo_utils.tasks import FOLDER_CLASSES
from pneumo_utils.training import runs

FAMILIES = {p.family: p for p in SUITE}


def _chest(size: int = 64) -> np.ndarray:
    """A bright body (with a darker 'lung' inside and a texture) in a black frame."""
    rng = np.random.default_rng(0)
    image = np.zeros((size, size), dtype=np.uint8)
    image[6:58, 8:56] = 170
    image[16:48, 16:30] = 90
    image[16:48, 34:48] = 90
    image[6:58, 8:56] += rng.integers(0, 30, (52, 48)).astype(np.uint8)
    return image


def _apply(family: str, strength: float | None = None) -> np.ndarray:
    perturbation = FAMILIES[family]
    strength = perturbation.middle if strength is None else strength
    return perturbed_copy(_chest()[None], perturbation, strength)[0]


def _body_width(image: np.ndarray) -> int:
    return int((image > 60).any(axis=0).sum())


def test_the_suite_has_every_family_the_issue_names_at_two_or_three_strengths():
    natural = {p.family for p in SUITE if p.kind == "natural"}
    assert natural == {"zoom in", "zoom out", "translation", "border", "gamma", "contrast",
                       "black/white points", "blur", "noise", "jpeg", "rotation"}  # fmt: skip
    assert all(2 <= len(p.strengths) <= 3 for p in SUITE if p.kind == "natural")
    assert {p.family for p in SUITE if p.kind != "natural"} == {
        "horizontal flip", "lungs covered", "frame covered"
    }  # fmt: skip


@pytest.mark.parametrize("perturbation", SUITE, ids=lambda p: p.family)
def test_every_family_changes_the_image_and_keeps_its_shape(perturbation):
    image = np.kron(_chest(), np.ones((2, 2), dtype=np.uint8))  # 128 px, the recipes' size
    for strength in perturbation.strengths:
        out = perturbed_copy(image[None], perturbation, strength)[0]
        assert out.shape == image.shape and out.dtype == np.uint8
        assert not np.array_equal(out, image)


def test_geometric_families_move_the_body():
    image = _chest()
    assert _body_width(_apply("zoom in")) > _body_width(image) * 1.15
    zoomed_out = _apply("zoom out")
    assert _body_width(zoomed_out) < _body_width(image) * 0.85
    shifted = _apply("translation")
    columns = np.flatnonzero((shifted > 60).any(axis=0))
    assert columns[0] > 8  # moved right
    rotated = _apply("rotation", 15)
    assert abs(_body_width(rotated) - _body_width(image)) > 2
    flipped = _apply("horizontal flip")
    assert np.array_equal(flipped, image[:, ::-1])


def test_frame_families_and_the_occlusion_pair():
    image = _chest()
    band = band_mask(64, 64, 0.15).numpy()
    median = np.median(image)
    border = _apply("border", 0.15)
    assert (np.abs(border[band].astype(int) - median) <= 1).all()
    assert np.array_equal(border[~band], image[~band])
    frame_covered, lungs_covered = _apply("frame covered"), _apply("lungs covered")
    assert np.array_equal(frame_covered, border)
    assert np.array_equal(lungs_covered[band], image[band])
    assert (np.abs(lungs_covered[~band].astype(int) - median) <= 1).all()


def test_exposure_families():
    image = _chest()
    body = image > 60
    assert _apply("gamma")[body].mean() < image[body].mean() - 10  # darker mid-tones
    assert _apply("contrast").std() < 0.8 * image.std()
    washed = _apply("black/white points", 0.2)
    assert washed.min() > 20 and washed.max() < image.max() - 15


def test_sharpness_noise_and_encoding_families():
    image = _chest()
    edges = lambda x: np.abs(np.diff(x.astype(int), axis=1)).mean()  # noqa: E731
    assert edges(_apply("blur")) < 0.8 * edges(image)
    flat = np.full((1, 64, 64), 128, dtype=np.uint8)
    noisy = perturbed_copy(flat, FAMILIES["noise"], 0.04)[0]
    assert 5 < noisy.std() < 15
    assert np.array_equal(noisy, perturbed_copy(flat, FAMILIES["noise"], 0.04)[0])  # seeded
    jpeg = _apply("jpeg", 15)
    assert 0 < np.abs(jpeg.astype(int) - image).mean() < 30


def test_calibration_error_and_brier_score():
    rng = np.random.default_rng(0)
    probs = rng.uniform(0, 1, 20_000)
    calibrated = (rng.uniform(0, 1, probs.shape) < probs).astype(int)
    good = calibration(calibrated, probs)
    assert good["ece"] < 0.02
    overconfident = calibration(calibrated, np.where(probs > 0.5, 1.0, 0.0))
    assert overconfident["ece"] > 0.2
    assert calibration(np.array([0, 1]), np.array([0.25, 0.5]))["brier"] == pytest.approx(
        (0.25**2 + 0.5**2) / 2
    )
    assert sum(b["n"] for b in good["bins"]) == len(probs) and len(good["bins"]) == 15


def test_calibration_error_matches_torchmetrics():
    """The ECE of the report is torchmetrics' BinaryCalibrationError (L1, equal-width bins)."""
    from torchmetrics.classification import BinaryCalibrationError

    rng = np.random.default_rng(1)
    probs = rng.beta(2, 5, 3_000)
    labels = (rng.uniform(0, 1, probs.shape) < probs**0.7).astype(int)
    ours = calibration(labels, probs)["ece"]
    theirs = BinaryCalibrationError(n_bins=15, norm="l1")(
        torch.as_tensor(probs, dtype=torch.float64), torch.as_tensor(labels)
    )
    assert ours == pytest.approx(float(theirs), abs=1e-6)


def test_subgroups_from_file_names():
    assert subgroup("test/NORMAL/NORMAL2-IM-0030-0001.jpeg", 0) == "NORMAL2-*"
    assert subgroup("test/NORMAL/IM-0001-0001.jpeg", 0) == "IM-*"
    assert subgroup("test/PNEUMONIA/person1_virus_6.jpeg", 1) == "virus"
    assert subgroup("test/PNEUMONIA/person1_bacteria_1.jpeg", 1) == "bacteria"
    frame = pd.DataFrame(
        dict(
            relpath=["IM-1-1.jpeg", "NORMAL2-IM-1-1.jpeg", "p1_virus_1.jpeg", "p2_bacteria_1.jpeg"],
            label=[0, 0, 1, 1],
        )
    )
    rows = {
        r["subgroup"]: r
        for r in subgroup_rows(frame, np.array([0.1, 0.9, 0.9, 0.2]), 0.5, FOLDER_CLASSES)
    }
    assert rows["IM-*"]["value"] == 1.0 and rows["NORMAL2-*"]["value"] == 0.0
    assert rows["virus"]["metric"] == "sensitivity" and rows["virus"]["value"] == 1.0
    assert rows["bacteria"]["value"] == 0.0


def test_failures_are_the_wrong_ones_most_confident_first():
    frame = pd.DataFrame(dict(relpath=list("abcde"), label=[0, 0, 1, 1, 0]))
    worst = failures(
        frame,
        np.array([0.6, 0.99, 0.05, 0.9, 0.1]),
        0.5,
        class_names=FOLDER_CLASSES,
        column="p_pneumonia",
    )
    assert [f["relpath"] for f in worst] == ["b", "c", "a"]


def test_report_of_a_finished_run(finished_run, tmp_path):
    import shutil

    run = shutil.copytree(finished_run, tmp_path / "run")
    report = robustness.robustness_report(run, n_resamples=50, progress=False)
    assert (run / robustness.ROBUSTNESS_JSON).exists() and (
        run / robustness.ROBUSTNESS_CSV
    ).exists()
    saved = json.loads((run / robustness.ROBUSTNESS_JSON).read_text())
    table = pd.read_csv(run / robustness.ROBUSTNESS_CSV)
    assert len(table) == 1 + sum(len(p.strengths) for p in SUITE)
    clean = table[table["kind"] == "clean"].iloc[0]
    test = runs.read_metrics(run)["test"]
    for metric in ("accuracy", "sensitivity", "specificity"):
        assert clean[metric] == pytest.approx(test[metric])
        assert clean[f"{metric}_low"] <= clean[metric] <= clean[f"{metric}_high"]
    assert [s["split"] for s in saved["splits"]] == list(EVALUATED_SPLITS)
    assert set(saved["calibration"]) == {"test", "val"}
    assert {g["subgroup"] for g in saved["subgroups"]} == {"IM-*", "bacteria"}
    assert saved["threshold"] == report["threshold"] == test["threshold"]


def test_report_refuses_an_unfinished_run(tmp_path):
    from pneumo_utils.runtime.errors import UserError

    with pytest.raises(UserError, match="is not a run folder"):
        robustness.robustness_report(tmp_path)
    (tmp_path / runs.CONFIG).write_text("{}")
    with pytest.raises(UserError, match="has not finished"):
        robustness.robustness_report(tmp_path)


def test_perturbations_are_torch_free_of_global_randomness():
    torch.manual_seed(0)
    first = perturbed_copy(_chest()[None], FAMILIES["noise"], 0.08)
    torch.manual_seed(1)
    assert np.array_equal(first, perturbed_copy(_chest()[None], FAMILIES["noise"], 0.08))
