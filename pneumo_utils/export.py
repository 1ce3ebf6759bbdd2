"""`python -m pneumo_utils export RUN_DIR`: the best model as weights that plain
`torchvision.models.resnet18(num_classes=2)` loads (.pth and .safetensors), with a model card."""

from __future__ import annotations

import os
from pathlib import Path

from safetensors.torch import save_file

from . import runs
from .config import recipe_changes
from .data import IMAGENET_MEAN, IMAGENET_STD
from .errors import UserError
from .evaluate import bootstrap_intervals, prediction_patients
from .fileio import atomic_torch_save, atomic_write_text

CARD = "MODEL_CARD.md"


def torchvision_state_dict(checkpoint_model: dict) -> dict:
    """pneumo_utils' head is Sequential(Dropout, Linear): `fc.1.*` becomes torchvision's `fc.*`."""
    return {key.replace("fc.1.", "fc."): value for key, value in checkpoint_model.items()}


def export_run(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    run_dir = Path(run_dir)
    saved = runs.open_run(run_dir)
    if not runs.is_finished(run_dir):
        raise UserError(f"{run_dir} has not finished (no metrics.json): let the training end first")
    state = torchvision_state_dict(runs.load_best(run_dir)["model"])
    out = Path(out) if out else run_dir / "export"
    out.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(out / "resnet18_pneumonia.pth", state)
    contiguous = {key: value.contiguous() for key, value in state.items()}
    partial = out / ".resnet18_pneumonia.safetensors.partial"
    save_file(contiguous, str(partial), metadata={"classes": "NORMAL,PNEUMONIA"})
    os.replace(partial, out / "resnet18_pneumonia.safetensors")
    atomic_write_text(out / CARD, model_card(run_dir, saved))
    print(f"exported {run_dir.name} to {out}: resnet18_pneumonia.pth, .safetensors, {CARD}")
    return out


def model_card(run_dir: Path, saved: runs.SavedRun) -> str:
    """What the weights are, how to feed them, how good they are, and what they are not for."""
    metrics = runs.read_metrics(run_dir)
    test = metrics["test"]
    predictions = runs.read_predictions(run_dir)
    intervals = bootstrap_intervals(
        predictions["label"].to_numpy(),
        predictions["p_pneumonia"].to_numpy(),
        test["threshold"],
        groups=prediction_patients(predictions),
    )
    config = saved.config
    rows = "\n".join(
        f"| {name} | {row.value:.3f} | [{row.low:.3f}, {row.high:.3f}] |"
        for name, row in intervals.iterrows()
    )
    warning = f"\n**Not a result: {saved.not_a_result}.**\n" if saved.not_a_result else ""
    norm = config.intensity_norm
    normalisation = f"per-image intensity normalisation `{norm}`, " if norm != "none" else ""
    per_class = predictions["label"].value_counts()
    counts = (
        f"{len(predictions)} images: {per_class.get(0, 0)} NORMAL, {per_class.get(1, 0)} PNEUMONIA"
    )
    origin = (
        f"{saved.hardware}, torch {saved.environment['torch']}, commit "
        f"{str(saved.environment['git_commit'])[:8]}"
    )
    return f"""# ResNet-18 pneumonia classifier ({run_dir.name})
{warning}
## Model
ResNet-18 (`torchvision.models.resnet18(num_classes=2)`), {config.model} start, classes
0 = NORMAL, 1 = PNEUMONIA. Recipe: {recipe_changes(config)}; {config.epochs} epochs, seed
{config.seed}; best epoch {metrics["best_epoch"]} chosen on `{metrics["selected_on"]}`.

```python
import torch, torchvision
model = torchvision.models.resnet18(num_classes=2)
model.load_state_dict(torch.load("resnet18_pneumonia.pth"))
```

## Input
A chest radiograph as 8-bit grey, made square by `{config.resize}` at {config.image_size} px,
{normalisation}repeated to 3 channels, scaled to [0, 1] and normalised with mean
{IMAGENET_MEAN} and sd {IMAGENET_STD}.
`python -m pneumo_utils predict` does all of this. Decision: PNEUMONIA when P(PNEUMONIA) ≥
{test["threshold"]:.4f} (chosen on {metrics["threshold_chosen_on"]}).

## Data
Kermany et al. 2018 (Mendeley Data v2, CC BY 4.0): paediatric (ages 1-5) anterior-posterior
chest X-rays from one centre, Guangzhou Women and Children's Medical Center. Trained on
`{Path(saved.data["root"]).name}`, {saved.data["splits"]["train"]} training images;
validation carved from the training patients.

## Metrics on the official test set ({counts})
At the threshold above, with 95% bootstrap intervals (1000 resamples of the test patients,
each with all of their images):

| metric | value | 95% interval |
|---|---|---|
{rows}

## The shortcut audit
The training files' labels are confounded with how the files were saved (JPEG quality,
metadata, aspect ratio, black borders): a classifier that sees only those properties reaches a
cross-validated AUC near 1.0 on the original files and 0.94 on the 224-px copy (README,
*What we found*). The training recipe breaks these cues and chooses its epoch on a stressed
validation set; a model can still rely on cues nobody has measured.

## Intended use and limits
Research and teaching only. **Not for clinical use**: not validated prospectively, on other
hospitals, scanners, adults or other projections. One centre, paediatric patients only;
NORMAL is the harder class (specificity is the weak number). Trained on {origin}.
"""
