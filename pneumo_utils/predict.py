"""Using a trained run: P(pneumonia) for image files, and metrics on any split."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .data import BadImageError, decode_xray, make_loader, to_model_input
from .device import autocast, autocast_dtype
from .errors import UserError
from .evaluate import binary_metrics, epoch_stats, pneumonia_probability, predict_logits
from .train import is_finished, load_run_data, load_trained_model, read_metrics


def run_threshold(run_dir: str | os.PathLike) -> float:
    """The decision threshold chosen on validation when the run finished (0.5 before that)."""
    return read_metrics(run_dir)["test"]["threshold"] if is_finished(run_dir) else 0.5


def evaluate_run(
    run_dir: str | os.PathLike, data_dir: str | None = None, split: str = "test"
) -> dict:
    """Metrics of a run's best checkpoint on one split, at the run's validation threshold."""
    model, cfg, device = load_trained_model(run_dir)
    data = load_run_data(cfg, data_dir)
    logits, labels = predict_logits(
        model,
        make_loader(data, split, 2 * cfg.batch_size),
        device,
        autocast_dtype(device, cfg.amp),
        cfg.channels_last,
    )
    metrics = binary_metrics(labels, pneumonia_probability(logits), run_threshold(run_dir))
    return dict(split=split, **epoch_stats(logits, labels, split), **metrics)


def predict_files(run_dir: str | os.PathLike, paths: list[str | os.PathLike]) -> list[dict]:
    """One dict per image: path, p_pneumonia and the predicted class at the run's threshold.

    Every file is checked before the model runs, so one bad path fails the whole call at once.
    """
    missing = [str(p) for p in paths if not Path(p).is_file()]
    if missing:
        raise UserError(f"no such image file: {', '.join(missing)}")
    model, cfg, device = load_trained_model(run_dir)
    pixels = []
    for path in paths:
        try:
            pixels.append(decode_xray(path, cfg.image_size))
        except BadImageError as error:
            raise UserError(f"cannot read {path}: {error}") from None
    threshold = run_threshold(run_dir)
    batch = torch.stack([torch.from_numpy(p.copy())[None] for p in pixels])
    with torch.inference_mode(), autocast(device, autocast_dtype(device, cfg.amp)):
        logits = model(to_model_input(batch, device, cfg.channels_last)).float()
    probabilities = torch.softmax(logits, dim=1)[:, 1].cpu().tolist()
    return [
        dict(
            path=str(path),
            p_pneumonia=p,
            predicted="PNEUMONIA" if p >= threshold else "NORMAL",
            threshold=threshold,
        )
        for path, p in zip(paths, probabilities, strict=True)
    ]
