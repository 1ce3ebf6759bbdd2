import numpy as np
import pytest

from pneumo_utils.analysis.bootstrap import BOOTSTRAP_METRICS, bootstrap_intervals, weighted_metrics
from pneumo_utils.results.summary import markdown_table
from pneumo_utils.tasks import TASKS
from pneumo_utils.training.metrics import (
    binary_metrics,
    choose_threshold,
    epoch_stats,
    threshold_warning,
)

NAMES = TASKS["pneumonia"].class_names


def test_binary_metrics_on_a_hand_checked_example():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    probs = np.array([0.1, 0.2, 0.7, 0.3, 0.9, 0.8, 0.4, 0.6, 0.95, 0.85])
    metrics = binary_metrics(labels, probs, 0.5, NAMES)
    assert metrics["confusion_matrix"] == [[3, 1], [1, 5]]
    assert metrics["accuracy"] == pytest.approx(0.8)
    assert metrics["sensitivity"] == pytest.approx(5 / 6) == metrics["acc_PNEUMONIA"]
    assert metrics["specificity"] == pytest.approx(3 / 4) == metrics["acc_NORMAL"]
    assert metrics["precision"] == pytest.approx(5 / 6)
    assert metrics["f1"] == pytest.approx(5 / 6)
    assert metrics["roc_auc"] == pytest.approx(22 / 24)


def test_threshold_maximises_youden_on_validation():
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array([0.80, 0.85, 0.88, 0.90, 0.95, 0.97])
    threshold = choose_threshold(labels, probs)
    assert 0.88 < threshold <= 0.90
    assert binary_metrics(labels, probs, threshold, NAMES)["accuracy"] == 1.0
    assert choose_threshold(np.array([1, 1]), np.array([0.2, 0.9])) == 0.5


def test_epoch_stats_per_class():
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]], dtype=np.float32)
    labels = np.array([0, 1, 1])
    stats = epoch_stats(logits, labels, "val", NAMES)
    assert stats["val_acc"] == pytest.approx(2 / 3)
    assert stats["val_acc_NORMAL"] == 1.0 and stats["val_acc_PNEUMONIA"] == 0.5
    assert stats["val_loss_NORMAL"] < stats["val_loss_PNEUMONIA"]


def test_bootstrap_interval_brackets_the_estimate():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    probs = np.clip(labels * 0.6 + rng.normal(0.2, 0.25, 300), 0, 1)
    table = bootstrap_intervals(labels, probs, 0.5, n_resamples=200, class_names=NAMES)
    assert (table["low"] <= table["value"]).all() and (table["value"] <= table["high"]).all()
    assert (table["high"] - table["low"]).between(0.005, 0.3).all()
    assert markdown_table(table.round(2)).startswith("|  | value | low | high |\n| --- |")


def test_weighted_metrics_with_unit_weights_equal_the_plain_metrics():
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 200)
    probs = np.round(np.clip(labels * 0.5 + rng.normal(0.25, 0.25, 200), 0, 1), 1)  # ties
    plain = binary_metrics(labels, probs, 0.5, NAMES)
    weighted = weighted_metrics(labels, probs, 0.5, np.ones((1, 200)), NAMES)
    for metric in BOOTSTRAP_METRICS:
        assert weighted[metric][0] == pytest.approx(plain[metric])
    doubled = np.r_[np.ones(200), np.ones(200)][None]
    twice = weighted_metrics(np.r_[labels, labels], np.r_[probs, probs], 0.5, doubled, NAMES)
    assert twice["roc_auc"][0] == pytest.approx(plain["roc_auc"])


def test_patient_bootstrap_is_wider_than_the_image_bootstrap_on_clustered_data():
    rng = np.random.default_rng(0)
    patients = np.repeat(np.arange(60), 6)  # 6 images per patient, identical predictions
    labels = np.repeat(rng.integers(0, 2, 60), 6)
    probs = np.repeat(np.clip(rng.normal(0.3 + 0.4 * labels[::6], 0.25), 0, 1), 6)
    by_image = bootstrap_intervals(labels, probs, 0.5, n_resamples=400, class_names=NAMES)
    by_patient = bootstrap_intervals(
        labels, probs, 0.5, groups=patients, n_resamples=400, class_names=NAMES
    )
    width = lambda t: t["high"] - t["low"]  # noqa: E731
    for metric in ("accuracy", "sensitivity", "specificity", "roc_auc"):
        assert width(by_patient)[metric] > 1.5 * width(by_image)[metric]
    assert (by_patient["value"] == by_image["value"]).all()  # the estimates do not change


def test_threshold_on_a_plateau_is_its_midpoint_and_an_extreme_one_warns():
    # J = 0.5 at the cut 0.9 (one PNEUMONIA found, no false alarm) and again at 0.8 (both
    # found, one false alarm): a plateau between two ROC points, whose midpoint is 0.85.
    labels, probs = np.array([1, 1, 0, 0]), np.array([0.9, 0.8, 0.8, 0.1])
    assert choose_threshold(labels, probs) == pytest.approx(0.85)
    assert threshold_warning(1.0, "stressed_val", None, NAMES).startswith("warning: the threshold")
    assert threshold_warning(0.0, "val", None, NAMES) is not None
    assert threshold_warning(0.42, "val", None, NAMES) is None
    # 0.995 is inside the range, but calls every test image NORMAL: a smoke run's collapse
    assert "calls every test image NORMAL" in threshold_warning(
        0.995, "val", np.full(5, 0.6), NAMES
    )
    assert threshold_warning(0.5, "val", np.array([0.2, 0.7]), NAMES) is None


def test_weighted_bootstrap_metrics_match_scikit_learn_with_integer_weights():
    """Each resample of the vectorised bootstrap equals scikit-learn on the same images with
    sample_weight = how often each was drawn (ties in the scores included)."""
    from sklearn.metrics import (
        accuracy_score,
        f1_score,
        precision_score,
        recall_score,
        roc_auc_score,
    )

    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 120)
    probs = np.round(np.clip(0.35 * labels + rng.uniform(0, 0.65, 120), 0, 1), 2)  # ties
    weights = rng.integers(0, 4, (5, 120))
    got = weighted_metrics(labels, probs, 0.5, weights, NAMES)
    predicted = (probs >= 0.5).astype(int)
    for row, w in enumerate(weights):
        expected = {
            "accuracy": accuracy_score(labels, predicted, sample_weight=w),
            "sensitivity": recall_score(labels, predicted, sample_weight=w),
            "specificity": recall_score(labels, predicted, pos_label=0, sample_weight=w),
            "precision": precision_score(labels, predicted, sample_weight=w),
            "f1": f1_score(labels, predicted, sample_weight=w),
            "roc_auc": roc_auc_score(labels, probs, sample_weight=w),
        }
        for name, value in expected.items():
            assert got[name][row] == pytest.approx(value, abs=1e-12), name
