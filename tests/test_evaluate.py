import numpy as np
import pytest

from pneumo_utils.evaluate import (
    binary_metrics,
    bootstrap_intervals,
    choose_threshold,
    epoch_stats,
)
from pneumo_utils.results import markdown_table


def test_binary_metrics_on_a_hand_checked_example():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1])
    probs = np.array([0.1, 0.2, 0.7, 0.3, 0.9, 0.8, 0.4, 0.6, 0.95, 0.85])
    metrics = binary_metrics(labels, probs, threshold=0.5)
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
    assert binary_metrics(labels, probs, threshold)["accuracy"] == 1.0
    assert choose_threshold(np.array([1, 1]), np.array([0.2, 0.9])) == 0.5


def test_epoch_stats_per_class():
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [2.0, 0.0]], dtype=np.float32)
    labels = np.array([0, 1, 1])
    stats = epoch_stats(logits, labels, "val")
    assert stats["val_acc"] == pytest.approx(2 / 3)
    assert stats["val_acc_NORMAL"] == 1.0 and stats["val_acc_PNEUMONIA"] == 0.5
    assert stats["val_loss_NORMAL"] < stats["val_loss_PNEUMONIA"]


def test_bootstrap_interval_brackets_the_estimate():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 300)
    probs = np.clip(labels * 0.6 + rng.normal(0.2, 0.25, 300), 0, 1)
    table = bootstrap_intervals(labels, probs, 0.5, n_resamples=200)
    assert (table["low"] <= table["value"]).all() and (table["value"] <= table["high"]).all()
    assert (table["high"] - table["low"]).between(0.005, 0.3).all()
    assert markdown_table(table.round(2)).startswith("|  | value | low | high |\n| --- |")
