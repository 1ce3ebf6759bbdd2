"""Using a trained run: its class probabilities for files, folders and globs (batched, one
CSV row per file), metrics of its best checkpoint on any split, and its Grad-CAM maps."""

from __future__ import annotations

import csv
import glob
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

import numpy as np
import torch
from tqdm.auto import tqdm

from . import runs
from .cache import IMAGE_SUFFIXES, BadImageError, decode_grey, frame_input, scale_to_8bit
from .dataset import OS_JUNK
from .device import autocast, autocast_dtype
from .errors import UserError
from .loaders import to_model_input
from .models import load_trained_model
from .robustness import read_report
from .tasks import Task, get_task
from .transforms import evaluation_transform

DICOM_SUFFIXES = {".dcm", ".dicom"}
PREDICTION_COLUMNS = ("path", "p_pneumonia", "label", "threshold", "error")


def prediction_columns(task: Task) -> tuple[str, ...]:
    """predict's CSV columns for a run's task: P(PNEUMONIA) for the pneumonia task (as
    PREDICTION_COLUMNS), P(VIRAL) for bacterial-viral, one probability per class for three."""
    return ("path", *task.probability_columns, "label", "threshold", "error")


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


def acquire(path: Path, size: int) -> np.ndarray:
    """A file as acquired, 8-bit grey and full frame: JPEG, PNG... through decode_grey, DICOM
    through pydicom."""
    if path.suffix.lower() not in DICOM_SUFFIXES:
        return decode_grey(path, size)
    try:
        import pydicom
    except ImportError:
        raise BadImageError("DICOM needs pydicom: pip install 'pneumo_utils[dicom]'") from None
    try:
        grey = dicom_to_grey(pydicom.dcmread(path))
    except BadImageError:
        raise
    except Exception as error:  # pydicom raises many types for a damaged file
        raise BadImageError(f"cannot read DICOM ({error})") from error
    return grey


def decode_input(path: Path, cfg) -> np.ndarray:
    """A file as the run's input square: acquired, then the input pipeline of `cfg`."""
    grey = acquire(path, cfg.image_size)
    return frame_input(grey, cfg.image_size, cfg.resize, cfg.crop_to_body)[0]


def preprocess(path_or_array, cfg) -> torch.Tensor:
    """One image exactly as a run's model takes it, for plain torchvision weights (export): a
    file path (or a 2-D 8-bit grey array, as acquired) through the input pipeline of `cfg` (a
    TrainConfig: crop to the body, square, intensity normalisation), then as a 1x3xSxS float
    tensor normalised with ImageNet's statistics."""
    if isinstance(path_or_array, (str, os.PathLike)):
        square = decode_input(Path(path_or_array), cfg)
    else:
        grey = np.asarray(path_or_array)
        if grey.ndim != 2 or grey.dtype != np.uint8:
            raise UserError(
                f"preprocess takes a file path or a 2-D uint8 grey array, not a {grey.ndim}-D "
                f"{grey.dtype} array: convert it to 8-bit grey first (as cache.decode_grey does)"
            )
        square = frame_input(grey, cfg.image_size, cfg.resize, cfg.crop_to_body)[0]
    image = torch.from_numpy(np.array(square))[None]
    normalize = evaluation_transform(cfg)
    if normalize is not None:
        image = normalize(image)
    return to_model_input(image[None], torch.device("cpu"), channels_last=False)


def dicom_to_grey(dataset) -> np.ndarray:
    """A DICOM image as 8-bit grey, bone bright: the modality LUT (rescale slope and
    intercept), then the VOI LUT or window if the file has one, then the output range mapped
    to 0-255 as for any other image; MONOCHROME1 (bone dark) is inverted."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    raw = dataset.pixel_array
    if raw.ndim == 3:  # colour or multi-frame: the first frame, as grey
        raw = raw[0] if raw.shape[0] < raw.shape[-1] else raw.mean(axis=-1).astype(raw.dtype)
    bits = int(dataset.get("BitsStored", 8 * raw.itemsize))
    signed = int(dataset.get("PixelRepresentation", 0)) == 1
    stored = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    values = apply_modality_lut(raw, dataset).astype(np.float64)
    low, high = sorted(apply_modality_lut(np.array(stored), dataset).astype(np.float64))
    if "VOILUTSequence" in dataset:
        values = apply_voi_lut(values, dataset).astype(np.float64)
        low, high = 0.0, 2.0 ** int(dataset.VOILUTSequence[0].LUTDescriptor[2]) - 1
    elif "WindowCenter" in dataset and "WindowWidth" in dataset:
        values = apply_voi_lut(values, dataset).astype(np.float64)  # output: the stored range
    grey = scale_to_8bit(values, low, high)
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "MONOCHROME1":
        grey = 255 - grey
    elif photometric != "MONOCHROME2" and raw.ndim == 2:
        raise BadImageError(f"unsupported DICOM PhotometricInterpretation {photometric}")
    return grey


def predict_files(
    run_dir: str | os.PathLike,
    inputs: list[str | os.PathLike],
    batch_size: int = 64,
    progress: bool = False,
) -> Iterator[dict]:
    """One row per file (see prediction_columns), `batch_size` images in memory at a time.
    Two classes: `label` is class 1 when its probability reaches the run's threshold; three:
    the most probable class (no threshold).

    A file that cannot be read gets its row with the reason in `error`; the others go on.
    """
    paths = expand_inputs(inputs)
    model, cfg, device = load_trained_model(run_dir)
    task = get_task(cfg.task)
    threshold = runs.run_threshold(run_dir) if task.binary else ""
    probability_columns = task.probability_columns
    normalize = evaluation_transform(cfg)
    amp_dtype = autocast_dtype(device, cfg.amp)
    bar = tqdm(total=len(paths), desc="predict", unit="image", disable=not progress)
    with bar:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start : start + batch_size]
            rows, pixels = [], []
            for path in chunk:
                row = dict(path=str(path), **dict.fromkeys(probability_columns, ""), label="",
                           threshold=threshold, error="")  # fmt: skip
                try:
                    image = torch.from_numpy(decode_input(path, cfg).copy())[None]
                    pixels.append(image if normalize is None else normalize(image))
                except (BadImageError, OSError) as error:
                    row["error"] = str(error)
                rows.append(row)
            if pixels:
                with torch.inference_mode(), autocast(device, amp_dtype):
                    logits = model(to_model_input(torch.stack(pixels), device, cfg.channels_last))
                probabilities = iter(torch.softmax(logits.float(), dim=1).cpu().numpy())
                for row in rows:
                    if not row["error"]:
                        p = next(probabilities)
                        shown = p[1:] if task.binary else p
                        row.update(
                            zip(probability_columns, np.round(shown, 6).tolist(), strict=True)
                        )
                        called = int(p[1] >= threshold) if task.binary else int(p.argmax())
                        row["label"] = task.class_names[called]
            bar.update(len(chunk))
            yield from rows


def write_predictions(
    rows: Iterable[dict], out: TextIO, columns: tuple[str, ...] = PREDICTION_COLUMNS
) -> tuple[int, list[dict]]:
    """Stream rows as CSV with a header; returns the number written and the failed rows."""
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    count, failed = 0, []
    for row in rows:
        writer.writerow(row)
        count += 1
        if row["error"]:
            failed.append(row)
    return count, failed


def predict_command(run_dir, inputs, out: str | None, batch_size: int, progress: bool) -> None:
    """`predict`: CSV to stdout or --out (written whole or not at all), a summary on stderr.
    Nothing is written when no file could be read."""
    saved = runs.open_run(run_dir)
    task, columns = saved.task, prediction_columns(saved.task)
    if task.binary:
        threshold = runs.run_threshold(saved.path)
        positive = task.positive
        print(f"threshold {threshold:.4f} (P({positive}) at or above it: {positive})",
              file=sys.stderr)  # fmt: skip
    else:
        print(f"label: the most probable of {', '.join(task.class_names)}", file=sys.stderr)
    rows = list(predict_files(run_dir, inputs, batch_size, progress))  # rows are small
    failed = [row for row in rows if row["error"]]
    if len(failed) == len(rows):
        raise UserError(f"no image could be read: {failed[0]['path']}: {failed[0]['error']}")
    if out is None:
        write_predictions(rows, sys.stdout, columns)
    else:
        target = Path(out)
        temporary = target.with_name(f".{target.name}.partial")
        with open(temporary, "w", newline="") as handle:
            write_predictions(rows, handle, columns)
        os.replace(temporary, target)
    summary = f"{len(rows) - len(failed)} of {len(rows)} images predicted"
    if failed:
        summary += (
            f"; {len(failed)} unreadable (reason in the error column), e.g. {failed[0]['path']}"
        )
    print(summary + (f"; CSV in {out}" if out else ""), file=sys.stderr)


# ----------------------------------------------------------------------------- Grad-CAM


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
    with GradCAM(model=model, target_layers=[model.layer4[-1]]) as cam:
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


def gradcam_rows(runs: dict[str, Path], per_class: int = 3) -> tuple[dict, list[int]]:
    """Grad-CAM rows for plots.plot_gradcam: for each named run, (heat maps, P(pneumonia), the
    images), the same test files for every run, each decoded through that run's own input
    pipeline (a run that crops to the body is explained on its cropped images); and the labels."""
    rows, labels = {}, []
    for name, run in runs.items():
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
