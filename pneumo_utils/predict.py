"""Using a trained run: P(pneumonia) for files, folders and globs (batched, one CSV row per
file), metrics of its best checkpoint on any split, and its Grad-CAM maps."""

from __future__ import annotations

import csv
import glob
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

from . import runs
from .data import (
    CLASS_NAMES,
    IMAGE_SUFFIXES,
    OS_JUNK,
    BadImageError,
    decode_xray,
    load_run_data,
    make_loader,
    to_model_input,
    to_square,
)
from .device import autocast, autocast_dtype
from .errors import UserError
from .evaluate import binary_metrics, epoch_stats, pneumonia_probability, predict_logits
from .models import load_trained_model
from .transforms import evaluation_transform

DICOM_SUFFIXES = {".dcm", ".dicom"}
PREDICTION_COLUMNS = ("path", "p_pneumonia", "label", "threshold", "error")


def evaluate_run(
    run_dir: str | os.PathLike, data_dir: str | None = None, split: str = "test"
) -> dict:
    """Metrics of a run's best checkpoint on one split. `loss` and `acc_at_0_5` are at
    threshold 0.5; every other metric is at the run's threshold, chosen on validation."""
    model, cfg, device = load_trained_model(run_dir)
    data = load_run_data(cfg, data_dir)
    loader = make_loader(data, split, 2 * cfg.batch_size, transform=evaluation_transform(cfg))
    logits, labels = predict_logits(
        model, loader, device, autocast_dtype(device, cfg.amp), cfg.channels_last
    )
    stats = epoch_stats(logits, labels, split)
    return dict(
        split=split,
        loss=stats[f"{split}_loss"],
        acc_at_0_5=stats[f"{split}_acc"],
        **binary_metrics(labels, pneumonia_probability(logits), runs.run_threshold(run_dir)),
    )


# ----------------------------------------------------------------------------- files


def _is_image(path: Path) -> bool:
    return (
        path.is_file()
        and not path.name.startswith(".")
        and path.name.lower() not in OS_JUNK
        and path.suffix.lower() in IMAGE_SUFFIXES | DICOM_SUFFIXES
    )


def expand_inputs(inputs: list[str | os.PathLike]) -> list[Path]:
    """Files as given, the images under folders (recursively), and glob patterns, in order.

    Anything that names nothing stops here, before the model loads.
    """
    paths, nothing = [], []
    for item in map(str, inputs):
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if _is_image(p))
        elif path.exists():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(item, recursive=True) if _is_image(Path(p)))
        if found:
            paths.extend(found)
        else:
            nothing.append(item)
    if nothing:
        raise UserError(
            f"no image file at {', '.join(nothing)}: pass image files, folders of images, or "
            f"glob patterns (image types: {', '.join(sorted(IMAGE_SUFFIXES | DICOM_SUFFIXES))})"
        )
    return paths


def decode_input(path: Path, size: int, resize: str) -> np.ndarray:
    """A file as the model sees it: JPEG, PNG... through decode_xray, DICOM through pydicom."""
    if path.suffix.lower() not in DICOM_SUFFIXES:
        return decode_xray(path, size, resize)
    try:
        import pydicom
    except ImportError:
        raise BadImageError("DICOM needs pydicom: pip install 'pneumo_utils[dicom]'") from None
    try:
        pixels = pydicom.dcmread(path).pixel_array.astype(np.float32)
    except Exception as error:  # pydicom raises many types for a damaged file
        raise BadImageError(f"cannot read DICOM ({error})") from error
    if pixels.ndim == 3:  # colour or multi-frame: the first frame, as grey
        pixels = pixels[0] if pixels.shape[0] < pixels.shape[-1] else pixels.mean(axis=-1)
    low, high = float(pixels.min()), float(pixels.max())
    grey = ((pixels - low) / max(high - low, 1e-6) * 255).astype(np.uint8)
    return np.asarray(to_square(Image.fromarray(grey), size, resize))


def predict_files(
    run_dir: str | os.PathLike,
    inputs: list[str | os.PathLike],
    batch_size: int = 64,
    progress: bool = False,
) -> Iterator[dict]:
    """One row per file (see PREDICTION_COLUMNS), `batch_size` images in memory at a time.

    A file that cannot be read gets its row with the reason in `error`; the others go on.
    """
    paths = expand_inputs(inputs)
    model, cfg, device = load_trained_model(run_dir)
    threshold = runs.run_threshold(run_dir)
    normalize = evaluation_transform(cfg)
    amp_dtype = autocast_dtype(device, cfg.amp)
    bar = tqdm(total=len(paths), desc="predict", unit="image", disable=not progress)
    with bar:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            rows, pixels = [], []
            for path in chunk:
                row = dict(path=str(path), p_pneumonia="", label="", threshold=threshold, error="")
                try:
                    image = torch.from_numpy(decode_input(path, cfg.image_size, cfg.resize).copy())[
                        None
                    ]
                    pixels.append(image if normalize is None else normalize(image))
                except (BadImageError, OSError) as error:
                    row["error"] = str(error)
                rows.append(row)
            if pixels:
                with torch.inference_mode(), autocast(device, amp_dtype):
                    logits = model(to_model_input(torch.stack(pixels), device, cfg.channels_last))
                probabilities = iter(torch.softmax(logits.float(), dim=1)[:, 1].cpu().tolist())
                for row in rows:
                    if not row["error"]:
                        p = next(probabilities)
                        row["p_pneumonia"] = round(p, 6)
                        row["label"] = CLASS_NAMES[int(p >= threshold)]
            bar.update(len(chunk))
            yield from rows


def write_predictions(rows: Iterator[dict], out: TextIO) -> tuple[int, list[dict]]:
    """Stream rows as CSV with a header; returns the number written and the failed rows."""
    writer = csv.DictWriter(out, fieldnames=PREDICTION_COLUMNS, lineterminator="\n")
    writer.writeheader()
    count, failed = 0, []
    for row in rows:
        writer.writerow(row)
        count += 1
        if row["error"]:
            failed.append(row)
    return count, failed


def predict_command(run_dir, inputs, out: str | None, batch_size: int, progress: bool) -> None:
    """`predict`: CSV to stdout or --out (written whole or not at all), a summary on stderr."""
    threshold = runs.run_threshold(runs.open_run(run_dir).path)
    print(f"threshold {threshold:.4f} (P(pneumonia) at or above it: PNEUMONIA)", file=sys.stderr)
    rows = predict_files(run_dir, inputs, batch_size, progress)
    if out is None:
        count, failed = write_predictions(rows, sys.stdout)
    else:
        target = Path(out)
        temporary = target.with_name(f".{target.name}.partial")
        with open(temporary, "w", newline="") as handle:
            count, failed = write_predictions(rows, handle)
        os.replace(temporary, target)
    summary = f"{count - len(failed)} of {count} images predicted"
    if failed:
        summary += (
            f"; {len(failed)} unreadable (reason in the error column), e.g. {failed[0]['path']}"
        )
    print(summary + (f"; CSV in {out}" if out else ""), file=sys.stderr)
    if len(failed) == count:
        raise UserError(f"no image could be read: {failed[0]['path']}: {failed[0]['error']}")


# ----------------------------------------------------------------------------- Grad-CAM


def gradcam(run_dir: str | os.PathLike, images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM of the last residual block for the PNEUMONIA output, and P(pneumonia), for
    decoded images (as decode_xray returns them) seen the way the run sees them."""
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model, cfg, _ = load_trained_model(run_dir, torch.device("cpu"))
    model = model.float().to(memory_format=torch.contiguous_format)
    normalize = evaluation_transform(cfg)
    batch = torch.stack([torch.from_numpy(np.array(image))[None] for image in images])
    if normalize is not None:
        batch = torch.stack([normalize(image) for image in batch])
    inputs = to_model_input(batch, torch.device("cpu"), channels_last=False)
    with GradCAM(model=model, target_layers=[model.layer4[-1]]) as cam:
        heat = cam(input_tensor=inputs, targets=[ClassifierOutputTarget(1)] * len(images))
        probs = torch.softmax(model(inputs), dim=1)[:, 1].detach().numpy()
    return heat, probs
