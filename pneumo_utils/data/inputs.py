"""Images from outside the dataset, as a run's model takes them: files, folders and globs
expanded, a file decoded as acquired (JPEG, PNG or DICOM), then the run's input pipeline
(`cache.frame_input`: crop to the body, square) and, for plain torchvision, `preprocess`."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
import torch

from pneumo_utils.data.cache import (
    IMAGE_SUFFIXES,
    BadImageError,
    decode_grey,
    frame_input,
    scale_to_8bit,
)
from pneumo_utils.data.files import OS_JUNK
from pneumo_utils.data.model_input import to_model_input
from pneumo_utils.data.transforms import evaluation_transform
from pneumo_utils.runtime.errors import UserError

DICOM_SUFFIXES = {".dcm", ".dicom"}
# The TrainConfig settings that define a model's input: `preprocess` reads these and no other.
INPUT_SETTINGS = ("image_size", "resize", "crop_to_body", "intensity_norm", "thorax_mask")


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
    TrainConfig, of which INPUT_SETTINGS count: crop to the body, square, intensity
    normalisation, thorax mask), then as a 1x3xSxS float tensor normalised with ImageNet's
    statistics."""
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
