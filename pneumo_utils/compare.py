"""Notebook 04's data: which runs exist, the results table with bootstrap intervals, and the
test images shown with Grad-CAM."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .data import CLASS_NAMES, decode_xray
from .errors import UserError
from .evaluate import BOOTSTRAP_METRICS, bootstrap_intervals, to_markdown
from .predict import run_threshold
from .settings import RUN_NAMES, Settings
from .train import is_finished, read_config, read_metrics, read_predictions

NEEDS_WEIGHTS = "needs ImageNet weights: run notebooks/03 with internet access"


def finished_runs(settings: Settings) -> tuple[dict[str, Path], dict[str, str]]:
    """The finished run of each model, and for each missing one what it needs."""
    runs, missing = {}, {}
    for model, name in RUN_NAMES.items():
        run = settings.run_dir(name)
        if is_finished(run):
            runs[model] = run
        elif model == "pretrained":
            missing[model] = NEEDS_WEIGHTS
        else:
            missing[model] = f"no finished run at {run}: run notebooks/02"
    if not runs:
        raise UserError(
            f"no finished runs under {settings.runs / settings.profile}: run notebooks "
            "02 and 03 first"
        )
    return runs, missing


def is_result(run: Path) -> bool:
    """False for smoke runs and for runs that started from stand-in (non-official) weights."""
    saved = read_config(run)
    weights_ok = not saved.get("weights") or saved["weights"]["official"]
    return weights_ok and not saved["config"].get("max_batches")


def results_table(
    runs: dict[str, Path], missing: dict[str, str], n_resamples: int = 1000
) -> pd.DataFrame:
    """Test metrics with 95% bootstrap intervals, one column per model (missing ones say why)."""
    columns = {}
    for model, run in runs.items():
        predictions = read_predictions(run)
        table = bootstrap_intervals(
            predictions["label"].to_numpy(),
            predictions["p_pneumonia"].to_numpy(),
            run_threshold(run),
            n_resamples,
        )
        name = model if is_result(run) else f"{model} (not a result: smoke run or stand-in weights)"
        columns[name] = [f"{r.value:.3f} [{r.low:.3f}, {r.high:.3f}]" for r in table.itertuples()]
    for model, reason in missing.items():
        columns[model] = [reason] + [""] * (len(BOOTSTRAP_METRICS) - 1)
    return pd.DataFrame(columns, index=pd.Index(BOOTSTRAP_METRICS, name="test metric"))


def write_results(
    table: pd.DataFrame, runs: dict[str, Path], path: Path, n_resamples: int = 1000
) -> Path:
    """figures/results.md: the table plus where each number came from."""
    lines = [
        "# Results on the official test set",
        "",
        f"Value [95% bootstrap interval, {n_resamples} resamples of the test images]. "
        "Best checkpoint chosen on validation; decision threshold chosen on validation "
        "(Youden's J).",
        "",
    ]
    for model, run in runs.items():
        saved = read_config(run)
        config, env = saved["config"], saved["environment"]
        lines.append(
            f"- **{model}**: {saved['data']['splits']['test']} test images from "
            f"`{Path(saved['data']['root']).name}`, {config['epochs']} epochs, "
            f"{config['image_size']} px, batch {config['batch_size']}, lr {config['lr']}, "
            f"best epoch {read_metrics(run)['best_epoch']}; trained on {env['processor']} "
            f"({env['device']}), torch {env['torch']}, commit {str(env['git_commit'])[:8]}."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n\n" + to_markdown(table))
    return path


def gradcam_examples(run: Path, per_class: int = 2) -> tuple[list[np.ndarray], list[int]]:
    """The first `per_class` test images of each class, decoded as the run saw them."""
    saved = read_config(run)
    root, size = Path(saved["data"]["root"]), saved["config"]["image_size"]
    predictions = read_predictions(run)
    images, labels = [], []
    for label in range(len(CLASS_NAMES)):
        for relpath in predictions[predictions["label"] == label]["relpath"][:per_class]:
            images.append(decode_xray(root / relpath, size))
            labels.append(label)
    return images, labels
