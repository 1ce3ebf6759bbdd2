"""Grad-CAM of a run's last residual block, and the test images it explains or fails on,
each decoded through the run's own input pipeline."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from pneumo_utils.analysis.robustness import read_report
from pneumo_utils.data.inputs import decode_input
from pneumo_utils.data.model_input import to_model_input
from pneumo_utils.data.transforms import evaluation_transform
from pneumo_utils.resnet import LAST_STAGE
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.training import runs
from pneumo_utils.training.runs import load_trained_model


def gradcam(run_dir: str | os.PathLike, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM of the last residual block for the PNEUMONIA output, and P(pneumonia), for
    decoded images (as decode_xray returns them) seen the way the run sees them."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    task = runs.open_run(run_dir).task
    if not task.binary:
        raise UserError(
            f"{run_dir} is a {task.name} run: Grad-CAM here explains the positive output of a "
            "two-class task"
        )
    model, cfg, _ = load_trained_model(run_dir, torch.device("cpu"))
    model = model.float().to(memory_format=torch.contiguous_format)
    normalize = evaluation_transform(cfg)
    batch = torch.stack([torch.from_numpy(np.array(image))[None] for image in images])
    if normalize is not None:
        batch = torch.stack([normalize(image) for image in batch])
    inputs = to_model_input(batch, torch.device("cpu"), channels_last=False)
    last_block = getattr(model, LAST_STAGE)[-1]
    with GradCAM(model=model, target_layers=[last_block]) as cam:
        heat = cam(input_tensor=inputs, targets=[ClassifierOutputTarget(1)] * len(images))
        probs = torch.softmax(model(inputs), dim=1)[:, 1].detach().numpy()
    return heat, probs


def gradcam_examples(run: Path, per_class: int = 3) -> tuple[list[np.ndarray], list[int]]:
    """The first `per_class` test images of each class, decoded as the run saw them."""
    saved = runs.open_run(run)
    root, config = Path(saved.data["root"]), saved.config
    predictions = runs.read_predictions(run)
    images, labels = [], []
    for label in range(len(saved.task.class_names)):
        for relpath in predictions[predictions["label"] == label]["relpath"][:per_class]:
            images.append(decode_input(root / relpath, config))
            labels.append(label)
    return images, labels


def gradcam_rows(named_runs: dict[str, Path], per_class: int = 3) -> tuple[dict, list[int]]:
    """Grad-CAM rows for plots/evidence.py's plot_gradcam: for each named run, (heat maps,
    P(pneumonia), the images), the same test files for every run, each decoded through that
    run's own input pipeline (a run that crops to the body is explained on its cropped
    images); and the labels."""
    rows, labels = {}, []
    for name, run in named_runs.items():
        images, labels = gradcam_examples(run, per_class)
        rows[name] = (*gradcam(run, images), images)
    return rows, labels


def failure_examples(run: Path) -> tuple[list[np.ndarray], list[dict]]:
    """The misclassified test images of a run's robustness report, worst first, decoded as the
    run saw them, and their rows (label, P(pneumonia))."""
    saved, failures = runs.open_run(run), read_report(run)["failures"]
    root, config = Path(saved.data["root"]), saved.config
    images = [decode_input(root / f["relpath"], config) for f in failures]
    return images, failures
