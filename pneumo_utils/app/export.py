"""`python -m pneumo_utils export RUN_DIR`: the best model as weights that plain
`torchvision.models.resnet18(num_classes=N)` loads (.pth and .safetensors; N = 2, or 3 for the
three-class task), with a model card."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
from safetensors.torch import save_file

from pneumo_utils.analysis.bootstrap import bootstrap_intervals, prediction_patients
from pneumo_utils.analysis.robustness import ROBUSTNESS_JSON, read_report
from pneumo_utils.data.inputs import INPUT_SETTINGS
from pneumo_utils.recipes import recipe_changes
from pneumo_utils.resnet import (
    HEAD_PREFIX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    TORCHVISION_HEAD_PREFIX,
)
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.runtime.fileio import (
    atomic_torch_save,
    atomic_write_text,
    readable_like_new_files,
)
from pneumo_utils.training import runs

CARD = "MODEL_CARD.md"


def torchvision_state_dict(checkpoint_model: dict) -> dict:
    """pneumo_utils' head is Sequential(Dropout, Linear): `fc.1.*` becomes torchvision's `fc.*`."""
    return {
        key.replace(HEAD_PREFIX, TORCHVISION_HEAD_PREFIX): value
        for key, value in checkpoint_model.items()
    }


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    run_dir = Path(run_dir)
    saved = runs.open_run(run_dir)
    if not runs.is_finished(run_dir):
        raise UserError(f"{run_dir} has not finished (no metrics.json): let the training end first")
    state = torchvision_state_dict(runs.load_best(run_dir)["model"])
    out = Path(out) if out else run_dir / "export"
    out.mkdir(parents=True, exist_ok=True)
    stem = weights_stem(saved.task)
    atomic_torch_save(out / f"{stem}.pth", state)
    contiguous = {key: value.contiguous() for key, value in state.items()}
    partial = out / f".{stem}.safetensors.partial"
    save_file(contiguous, str(partial), metadata={"classes": ",".join(saved.task.class_names)})
    os.replace(partial, out / f"{stem}.safetensors")
    readable_like_new_files(out / f"{stem}.safetensors")  # safetensors writes it owner-only
    atomic_write_text(out / CARD, model_card(run_dir, saved))
    print(f"exported {run_dir.name} to {out}: {stem}.pth, .safetensors, {CARD}")
    return out


def weights_stem(task) -> str:
    """resnet18_pneumonia for the pneumonia task, resnet18_<task> for the others."""
    return "resnet18_pneumonia" if task.name == "pneumonia" else f"resnet18_{task.name}"


# Datasets of Kermany et al. whose training files the shortcut audit measured (README).
AUDITED_DATASETS = ("chest_xray", "chest_xray_224", "chest_xray_sample")
# The levers that take an acquisition or framing cue away, by setting, as the card names them.
LEVERS = {
    "crop_to_body": "crop to the body",
    "aspect_jitter": "aspect jitter",
    "intensity_jitter": "black/white-point and gamma jitter",
    "jpeg_quality_min": "JPEG re-compression",
    "counter_framing": "counter-framing",
    "frame_jitter": "framing variety",
    "view_jitter": "framing variety after the input pipeline",
    "thorax_mask": "thorax mask",
    "blur_noise": "blur and noise",
    "consistency": "the same output in two views (consistency term)",
}


def model_card(run_dir: Path, saved: runs.SavedRun) -> str:
    """What the weights are, how to feed them, how good they are, and what they are not for.
    Every number comes from this run's metrics.json, predictions and robustness report."""
    metrics = runs.read_metrics(run_dir)
    test = metrics["test"]
    config, task = saved.config, saved.task
    n_classes, stem = len(task.class_names), weights_stem(task)
    warning = f"\n**Not a result: {saved.not_a_result}.**\n" if saved.not_a_result else ""
    counts = f"{test['n']} images: " + ", ".join(
        f"{test[f'n_{name}']} {name}" for name in task.class_names
    )
    classes = ", ".join(f"{i} = {name}" for i, name in enumerate(task.class_names))
    origin = (
        f"{saved.hardware}, torch {saved.environment['torch']}, commit "
        f"{str(saved.environment['git_commit'])[:8]}"
    )
    dataset = saved.dataset
    return f"""# ResNet-18 chest X-ray classifier, task {task.name} ({run_dir.name})
{warning}
## Model
ResNet-18 (`torchvision.models.resnet18(num_classes={n_classes})`), {config.model} start,
task `{task.name}` ({task.description}), classes {classes}. Recipe: {recipe_changes(config)};
{config.epochs} epochs, seed {config.seed}; best epoch {metrics["best_epoch"]} chosen on
`{metrics["selected_on"]}`.{_averaged(config)}

{_input_section(config, _decision(task, metrics), n_classes, stem)}
## Data
Trained on `{dataset}`, {saved.data["splits"]["train"]} training images; validation carved
from the training patients. Kermany et al. 2018 (Mendeley Data v2, CC BY 4.0) is paediatric
(ages 1-5) anterior-posterior chest X-rays from one centre, Guangzhou Women and Children's
Medical Center.

## Metrics on the official test set ({counts})
With the decision above (values from metrics.json), with 95% bootstrap intervals (1000
resamples of the test patients, each with all of their images):

| metric | value | 95% interval |
|---|---|---|
{_interval_rows(run_dir, test, task)}

{_robustness_section(run_dir, task)}
## The shortcut audit
{_shortcut_section(config, dataset)}

## Intended use and limits
Research and teaching only. **Not for clinical use**: not validated prospectively, on other
hospitals, scanners, adults or other projections. One centre, paediatric patients only;
{_weakest_class(test, task)} Trained on {origin}.
"""


def _input_section(config, decision: str, n_classes: int, stem: str) -> str:
    """The input the weights expect, setting by setting, and a snippet that computes it and
    the probabilities as `predict` does (in fp32)."""
    norm = config.intensity_norm
    normalisation = f"per-image intensity normalisation `{norm}`, " if norm != "none" else ""
    cropped = (
        "cropped to the body's bounding box (`pneumo_utils.data.body`: rows and columns where over "
        "10% of the pixels are brighter than air and that are not flat), then "
        if config.crop_to_body
        else ""
    )
    masked = "the corners outside the inscribed ellipse black, " if config.thorax_mask else ""
    settings = ", ".join(f"{name}={getattr(config, name)!r}" for name in INPUT_SETTINGS)
    return f"""## Input
A chest radiograph as 8-bit grey, {cropped}made square by `{config.resize}` at
{config.image_size} px, {normalisation}{masked}repeated to 3 channels, scaled to [0, 1] and
normalised with mean {IMAGENET_MEAN} and sd {IMAGENET_STD}. {decision}

In this folder, with `pneumo_utils` installed (`preprocess` does all of the above; only these
settings of a TrainConfig change the input):

```python
import torch, torchvision
from pneumo_utils import TrainConfig, preprocess

model = torchvision.models.resnet18(num_classes={n_classes})
model.load_state_dict(torch.load("{stem}.pth"))
model.eval()
config = TrainConfig({settings})
with torch.no_grad():
    probabilities = torch.softmax(model(preprocess("chest.jpeg", config)), dim=1)[0]
print(probabilities.tolist())
```

`python -m pneumo_utils predict RUN_DIR FILES` gives the same probabilities, to 1e-6 in fp32;
where the run trained with mixed precision and the hardware has it (bf16), `predict` computes
in it too and differs by up to about 1e-2.
"""


def _averaged(config) -> str:
    """What the weights are when the run kept an average of them (--ema), else nothing."""
    if not config.ema:
        return ""
    return (
        f" The weights are an exponential moving average (decay {config.ema}) of the trained"
        " weights and BatchNorm statistics at that epoch, not the weights themselves."
    )


def _decision(task, metrics: dict) -> str:
    if not task.binary:
        return "Decision: the most probable class (no threshold)."
    return (
        f"Decision: {task.positive} when P({task.positive}) ≥ {metrics['test']['threshold']:.4f} "
        f"(chosen on {metrics['threshold_chosen_on']})."
    )


def _weakest_class(test: dict, task) -> str:
    """The class the run gets wrong most often on test (classes absent from test, recall NaN
    and null in metrics.json, say nothing)."""
    recalls = {
        name: test[f"acc_{name}"] for name in task.class_names if test[f"acc_{name}"] is not None
    }
    weakest = min(recalls, key=lambda name: recalls[name]) if recalls else None
    if weakest and recalls[weakest] < 1:
        return (
            f"{weakest} (recall {recalls[weakest]:.3f}) is the class this run gets wrong most "
            "often on test."
        )
    return "No test image of any class is called wrong here: too small a test set to tell."


def _interval_rows(run_dir: Path, test: dict, task) -> str:
    """The test metrics as table rows, each with its patient-bootstrap interval."""
    predictions = runs.read_predictions(run_dir)
    probs = runs.prediction_probabilities(predictions, task)
    intervals = bootstrap_intervals(
        predictions["label"].to_numpy(),
        probs[:, 1] if task.binary else probs,
        test["threshold"],
        groups=prediction_patients(predictions),
        class_names=task.class_names,
    )
    return "\n".join(
        f"| {name} | {test[name]:.3f} | [{row.low:.3f}, {row.high:.3f}] |"
        for name, row in intervals.iterrows()
    )


def _shortcut_section(config, dataset: str) -> str:
    """What is true of this run: the audit's finding where its data was audited, and the
    levers this run did (or did not) use."""
    used = [name for key, name in LEVERS.items() if getattr(config, key)]
    if dataset in AUDITED_DATASETS:
        finding = (
            "In this dataset the training labels are confounded with how the files were saved "
            "and framed (JPEG quality, metadata, aspect ratio, black borders, margins): a "
            "classifier that sees only those properties reaches a cross-validated AUC near 1.0 "
            "on the original files and 0.94 on the 224-px copy (docs/findings.md)."
        )
        if config.task != "pneumonia":
            finding += (
                " Between bacterial and viral files the way they were saved is near chance, but "
                "the black margin is not: viral images show more of it, and pixel properties "
                "alone reach a test AUC of 0.84 for bacterial vs viral (docs/tasks.md)."
            )
    else:
        finding = (
            f"`{dataset}` was not audited here: `python -m pneumo_utils audit --data DIR` "
            "measures how much of its labels file and pixel properties give away."
        )
    if used:
        levers = (
            f"This run trained with {', '.join(used)}, and chose its epoch on "
            f"`{config.select_metric}`; a model can still rely on cues nobody has measured."
        )
    else:
        levers = (
            "This run used none of the levers that take those cues away, and chose its epoch on "
            f"`{config.select_metric}`: its numbers may rest on them."
        )
    return f"{finding}\n{levers}"


def _robustness_section(run_dir: Path, task) -> str:
    """The run's robustness report at the middle strength of each family, or how to make it."""

    if not task.binary:
        return (
            "## Robustness\nNo robustness report: the report scores a decision at a threshold, "
            f"which a {task.name} run does not have.\n"
        )
    if not (run_dir / ROBUSTNESS_JSON).exists():
        return (
            "## Robustness\nNo robustness report in this run folder: `python -m pneumo_utils "
            f"robustness {run_dir}` writes it.\n"
        )
    report = read_report(run_dir)
    table = pd.DataFrame(report["perturbations"])
    shown = table[table["middle"] | (table["kind"] != "natural")]
    lines = [
        f"| {r.family} | {'' if pd.isna(r.strength) else f'{r.strength:g}'} | "
        f"{r.sensitivity:.3f} | {r.specificity:.3f} | {r.roc_auc:.3f} |"
        for r in shown.itertuples()
    ]
    groups = ", ".join(f"{g['subgroup']} {g['metric']} {g['value']:.3f} (n={g['n']})"
                       for g in report["subgroups"])  # fmt: skip
    calibration = report["calibration"]["test"]
    return (
        "## Robustness (robustness.json of this run)\n"
        "The test images changed the way other hospitals' radiographs differ (each family at its "
        "middle strength), at the threshold above:\n\n"
        "| change | strength | sensitivity | specificity | AUC |\n|---|---|---|---|---|\n"
        + "\n".join(lines)
        + f"\n\nSubgroups: {groups}. Calibration on test: ECE {calibration['ece']:.3f}, Brier "
        f"{calibration['brier']:.3f}.\n"
    )
