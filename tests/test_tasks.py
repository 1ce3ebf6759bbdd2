"""The task setting: pneumonia, bacterial-viral and three-class, from the labels to export."""

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score, roc_auc_score
from torchvision.models import resnet18

from pneumo_utils import TrainConfig, train
from pneumo_utils.analysis.bootstrap import bootstrap_intervals
from pneumo_utils.app.predict import predict_files, prediction_columns
from pneumo_utils.data.dataset import load_data
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.tasks import TASKS, pneumonia_type, task_records
from pneumo_utils.training.metrics import multiclass_metrics
from pneumo_utils.training.runs import open_run, read_history, read_metrics, read_predictions

from .test_pneumoniamnist import _make_npz


def _records(names: list[str], labels: list[int]) -> pd.DataFrame:
    records = pd.DataFrame(
        dict(
            relpath=names,
            label=labels,
            class_name=[("NORMAL", "PNEUMONIA")[y] for y in labels],
        )
    )
    records.attrs["root"] = "/data/chest_xray"
    return records


def test_pneumonia_type_is_read_from_the_file_name():
    assert pneumonia_type("train/PNEUMONIA/person12_bacteria_47.jpeg") == "BACTERIAL"
    assert pneumonia_type("person3_virus_9.jpeg") == "VIRAL"
    assert pneumonia_type("IM-0001-0001.jpeg") is None


def test_each_task_labels_its_own_files_and_keeps_the_folder():
    records = _records(
        ["IM-1-1.jpeg", "person1_bacteria_1.jpeg", "person2_virus_1.jpeg"], [0, 1, 1]
    )
    pneumonia = task_records(records, TASKS["pneumonia"])
    assert pneumonia["label"].tolist() == [0, 1, 1]
    types = task_records(records, TASKS["bacterial-viral"])
    assert types["class_name"].tolist() == ["BACTERIAL", "VIRAL"]  # NORMAL left out
    assert types["label"].tolist() == [0, 1] and types["folder_label"].tolist() == [1, 1]
    three = task_records(records, TASKS["three-class"])
    assert three["label"].tolist() == [0, 1, 2]
    assert three["folder_label"].tolist() == [0, 1, 1]
    assert three.attrs["root"] == "/data/chest_xray"


def test_a_pneumonia_file_without_a_type_stops_the_task_and_names_it():
    records = _records(["IM-1-1.jpeg", "person1_bacteria_1.jpeg", "scan7.jpeg"], [0, 1, 1])
    task_records(records, TASKS["pneumonia"])  # the pneumonia task needs no type
    with pytest.raises(UserError, match=r"scan7\.jpeg.*--task pneumonia"):
        task_records(records, TASKS["three-class"])


def test_pneumoniamnist_has_no_pneumonia_types(tmp_path):
    npz = _make_npz(tmp_path / "pneumoniamnist.npz")
    with pytest.raises(UserError, match="bacterial/viral labels"):
        load_data(npz, 28, cache_dir=tmp_path / "cache", progress=False, task="bacterial-viral")


def test_the_validation_carve_is_stratified_by_the_task_classes(tiny_typed_data, tmp_path):
    data = load_data(
        tiny_typed_data, 32, cache_dir=tmp_path / "cache", progress=False, task="three-class"
    )
    assert data.class_names == ("NORMAL", "BACTERIAL", "VIRAL")
    for split in ("train", "val", "test"):
        assert set(data.splits[split]["class_name"]) == set(data.class_names)
    val, train_ = data.splits["val"], data.splits["train"]
    assert not set(val["patient"]) & set(train_["patient"])
    bv = load_data(
        tiny_typed_data, 32, cache_dir=tmp_path / "cache", progress=False, task="bacterial-viral"
    )
    assert (bv.records["folder_label"] == 1).all()
    assert set(bv.splits["val"]["class_name"]) == {"BACTERIAL", "VIRAL"}


def test_multiclass_metrics_equal_scikit_learns():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 300)
    logits = rng.normal(size=(300, 3)) + 1.5 * np.eye(3)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    names = ("NORMAL", "BACTERIAL", "VIRAL")
    metrics = multiclass_metrics(labels, probs, names)
    predicted = probs.argmax(axis=1)
    assert metrics["accuracy"] == pytest.approx((predicted == labels).mean())
    assert metrics["macro_f1"] == pytest.approx(f1_score(labels, predicted, average="macro"))
    assert metrics["roc_auc"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr"))
    assert metrics["acc_VIRAL"] == pytest.approx((predicted[labels == 2] == 2).mean())
    assert metrics["sensitivity"] == pytest.approx((predicted[labels != 0] != 0).mean())
    assert np.array(metrics["confusion_matrix"]).sum() == 300
    intervals = bootstrap_intervals(labels, probs, None, n_resamples=50, class_names=names)
    assert list(intervals.index[:3]) == ["accuracy", "macro_f1", "roc_auc"]
    assert (intervals["high"] - intervals["low"] > 0).all()  # resampling moved every metric
    assert (intervals["high"] - intervals["low"] < 0.3).all()


def test_a_class_missing_from_test_is_said_not_guessed():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.5, 0.4]])
    metrics = multiclass_metrics(labels, probs, ("NORMAL", "BACTERIAL", "VIRAL"))
    assert np.isnan(metrics["roc_auc"]) and np.isnan(metrics["acc_VIRAL"])
    assert metrics["undefined"] == {"roc_auc": "no VIRAL images"}
    assert metrics["macro_f1"] == 1.0  # over the classes that are there


@pytest.mark.parametrize("task", ["bacterial-viral", "three-class"])
def test_a_task_trains_predicts_exports_and_plots_end_to_end(task, tiny_typed_data, tmp_path):
    names = TASKS[task].class_names
    config = TrainConfig(
        data=str(tiny_typed_data),
        task=task,
        epochs=2,
        batch_size=16,
        image_size=32,
        counter_framing=0.5,
        cache_dir=str(tmp_path / "cache"),
    )
    run = train(config, tmp_path / task, progress=False)
    history = read_history(run)
    assert {f"val_acc_{name}" for name in names} <= set(history.columns)
    assert "val_acc_PNEUMONIA" not in history.columns
    metrics = read_metrics(run)
    assert metrics["class_names"] == list(names) and metrics["task"] == task
    assert np.array(metrics["test"]["confusion_matrix"]).shape == (len(names), len(names))
    predictions = read_predictions(run)
    assert list(predictions.columns[2:]) == list(TASKS[task].probability_columns)
    if task == "bacterial-viral":
        assert set(predictions["relpath"].str.split("/").str[1]) == {"PNEUMONIA"}
        assert (run / "robustness.json").exists()
    else:
        assert "macro_f1" in metrics["test"]
        assert np.allclose(predictions.iloc[:, 2:].sum(axis=1), 1, atol=1e-5)

    rows = list(predict_files(run, [tiny_typed_data / "test" / "PNEUMONIA"]))
    assert tuple(rows[0]) == prediction_columns(TASKS[task])
    assert {row["label"] for row in rows} <= set(names)

    from pneumo_utils.app.export import export_run, weights_stem

    out = export_run(run, tmp_path / "export")
    model = resnet18(num_classes=len(names))
    model.load_state_dict(torch.load(out / f"{weights_stem(TASKS[task])}.pth"))
    card = (out / "MODEL_CARD.md").read_text()
    assert f"num_classes={len(names)}" in card and "PNEUMONIA when" not in card
    decision = "VIRAL when P(VIRAL)" if task == "bacterial-viral" else "the most probable class"
    assert decision in card

    result = subprocess.run(
        [sys.executable, "-m", "pneumo_utils", "predict", str(run),
         str(tiny_typed_data / "test"), "--out", str(tmp_path / "p.csv")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    written = pd.read_csv(tmp_path / "p.csv")
    assert tuple(written.columns) == prediction_columns(TASKS[task])
    assert set(written["label"]) == set(names)  # the tiny data's classes are learnt

    from pneumo_utils.analysis.scoring import evaluate_run
    from pneumo_utils.results.comparison import metrics_table

    assert evaluate_run(run, split="val")["n"] == len(read_predictions(run, "val"))
    assert len(metrics_table(run)) > 0

    from pneumo_utils.plots.report import plot_confusion_matrices, plot_per_class

    assert len(plot_per_class(run, "acc").axes) == len(names)
    plot_confusion_matrices({task: run})
    assert open_run(run).task.name == task


def test_robustness_of_a_three_class_run_is_one_line(tiny_typed_data, tmp_path):
    config = TrainConfig(
        data=str(tiny_typed_data), task="three-class", epochs=1, batch_size=16, image_size=32,
        cache_dir=str(tmp_path / "cache"),
    )  # fmt: skip
    run = train(config, tmp_path / "three", progress=False)
    result = subprocess.run(
        [sys.executable, "-m", "pneumo_utils", "robustness", str(run)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "needs a two-class task" in result.stderr


def test_a_finished_task_run_is_kept_and_a_changed_task_is_refused(tiny_typed_data, tmp_path):
    config = TrainConfig(
        data=str(tiny_typed_data), task="bacterial-viral", epochs=1, batch_size=16,
        image_size=32, cache_dir=str(tmp_path / "cache"),
    )  # fmt: skip
    run = train(config, tmp_path / "types", progress=False)
    before = (run / "metrics.json").read_text()
    train(config, run, progress=False)  # the same data and task: finished, left as it is
    assert (run / "metrics.json").read_text() == before
    with pytest.raises(UserError, match="task: 'bacterial-viral' -> 'three-class'"):
        train(replace(config, task="three-class"), run, progress=False)


def test_the_audit_takes_two_class_tasks_only(tiny_typed_data):
    from pneumo_utils.analysis.audit import shortcut_audit

    with pytest.raises(UserError, match="two classes"):
        shortcut_audit(tiny_typed_data, 32, task="three-class")
