"""The report's comparison of the notebook runs (from scratch, from ImageNet): each run's test
metrics as notebooks 02 and 03 show them, and the table of notebook 04 with 95% patient-
bootstrap intervals, one column per model."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pneumo_utils.analysis.bootstrap import (
    BOOTSTRAP_METRICS,
    bootstrap_intervals,
    prediction_patients,
)
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.tasks import TASKS
from pneumo_utils.training import runs


def metrics_table(run: Path) -> pd.DataFrame:
    """A run's test metrics at its chosen threshold and at 0.5, from metrics.json; three
    classes: each image called its most probable class, per class and macro."""
    metrics = runs.read_metrics(run)
    test, names = metrics["test"], runs.open_run(run).task.class_names
    if test["threshold"] is None:
        print(
            f"best epoch {metrics['best_epoch']} (on {metrics['selected_on']}), each image called "
            f"its most probable class: accuracy {test['accuracy']:.3f}; NORMAL vs the rest: "
            f"sensitivity {test['sensitivity']:.3f}, specificity {test['specificity']:.3f}"
        )
        kinds = {"n": "n", "acc": "recall", "precision": "precision", "f1": "F1",
                 "auc": "AUC (one vs rest)"}  # fmt: skip
        table = pd.DataFrame(
            [[test[f"{kind}_{name}"] for kind in kinds] for name in names],
            index=pd.Index(names, name="class"),
            columns=list(kinds.values()),
        )
        table.loc["macro"] = table.mean(numeric_only=True)
        macro = [test["n"], test["macro_f1"], test["roc_auc"]]
        table.loc["macro", ["n", "F1", "AUC (one vs rest)"]] = macro
        return table.astype({"n": int})
    print(
        f"best epoch {metrics['best_epoch']} (on {metrics['selected_on']}), threshold "
        f"{test['threshold']:.3f} (on {metrics['threshold_chosen_on']})"
    )
    shown = ["n", "accuracy", "sensitivity", "specificity", "precision", "f1", "roc_auc"]
    table = pd.DataFrame({"at the chosen threshold": test, "at 0.5": metrics["test_at_0_5"]})
    return table.loc[shown]


def results_table(
    finished: dict[str, Path], missing: dict[str, str], n_resamples: int = 1000
) -> pd.DataFrame:
    """Test metrics with 95% bootstrap intervals, one column per role: its model (two roles
    can share one, so the role names the column), or why it is missing."""
    columns = {}
    for role, run in finished.items():
        if runs.open_run(run).task.name != "pneumonia":
            raise UserError(f"{run} is not a pneumonia-task run: this table is NORMAL vs PNEUMONIA")
        predictions = runs.read_predictions(run)
        table = bootstrap_intervals(
            predictions["label"].to_numpy(),
            predictions["p_pneumonia"].to_numpy(),
            runs.run_threshold(run),
            groups=prediction_patients(predictions),
            n_resamples=n_resamples,
            class_names=TASKS["pneumonia"].class_names,
        )
        columns[f"{role} ({runs.open_run(run).title})"] = [
            f"{r.value:.3f} [{r.low:.3f}, {r.high:.3f}]" for r in table.itertuples()
        ]
    for model, reason in missing.items():
        columns[model] = [reason] + [""] * (len(BOOTSTRAP_METRICS) - 1)
    return pd.DataFrame(columns, index=pd.Index(BOOTSTRAP_METRICS, name="test metric"))
