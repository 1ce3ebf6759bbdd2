"""Decoding an image file into an 8-bit grey square, and the on-disk cache of decoded images.

Images are decoded once, converted to 8-bit grayscale (16-bit and 12-bit files by their bit
depth), resized to a square and kept in a uint8 array on disk, keyed by the file list, sizes,
mtimes and image size, so any change to the data rebuilds it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm.auto import tqdm

from pneumo_utils.config import RESIZE_MODES
from pneumo_utils.data import body
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.runtime.fileio import atomic_write_text, fsync_and_replace

IMAGE_SUFFIXES = {".jpeg", ".jpg", ".png", ".bmp", ".tif", ".tiff"}
# The published originals are at most ~8.5 MP; anything far beyond is not a chest X-ray
# and would cost gigabytes to decode.
MAX_PIXELS = 50_000_000
CACHE_FORMAT = 1


class BadImageError(Exception):
    """A file that cannot serve as a training image; the message says why."""


def scale_to_8bit(pixels: np.ndarray, low: float, high: float) -> np.ndarray:
    """Grey levels [low, high] mapped linearly to 0-255 (clipped outside)."""
    scaled = (pixels.astype(np.float64) - low) * (255.0 / max(high - low, 1e-9))
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def bit_depth(pixels: np.ndarray) -> int:
    """The bits an integer grey image uses, read from its largest value: a 12-bit radiograph
    stored in a 16-bit PNG (maximum <= 4095) is 12-bit, not a very dark 16-bit image."""
    return max(8, int(np.ceil(np.log2(float(pixels.max()) + 1))))


def _to_grayscale(image: Image.Image) -> Image.Image:
    if image.mode == "L":
        return image
    if image.mode.startswith("I") or image.mode == "F":  # 16/32-bit grayscale, e.g. 16-bit PNG
        pixels = np.asarray(image)
        if image.mode == "F":
            return Image.fromarray(scale_to_8bit(pixels, 0, 255))
        return Image.fromarray(scale_to_8bit(pixels, 0, 2 ** bit_depth(pixels) - 1))
    return image.convert("RGB").convert("L")  # CMYK, RGBA, palette, RGB: drop colour and alpha


def to_square(gray: Image.Image, size: int, resize: str) -> Image.Image:
    """A grey image made a `size` square by `resize` (see decode_xray)."""
    if resize == "pad":
        return ImageOps.pad(gray, (size, size), Image.Resampling.BILINEAR, color=0)
    if resize == "crop":
        return ImageOps.fit(gray, (size, size), Image.Resampling.BILINEAR)
    return gray.resize((size, size), Image.Resampling.BILINEAR)


def decode_grey(path: str | os.PathLike, size: int) -> np.ndarray:
    """One file as acquired: decoded to 8-bit grey, the full frame, at its own shape (a JPEG
    decoded at a reduced scale that is still >= `size` on each side, which is much faster)."""
    path = Path(path)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise BadImageError(f"not an image file ({path.suffix or 'no extension'})")
    if path.stat().st_size == 0:
        raise BadImageError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise BadImageError(f"image too large ({width}x{height} px)")
                image.draft("L", (size, size))
                image.load()
                return np.asarray(_to_grayscale(image))
    except Image.DecompressionBombError as error:
        raise BadImageError("image too large") from error
    except UnidentifiedImageError as error:
        raise BadImageError("not a readable image") from error
    except (OSError, SyntaxError, ValueError) as error:
        raise BadImageError(f"cannot decode ({error})") from error


def frame_input(
    grey: np.ndarray, size: int, resize: str = "squash", crop_to_body: bool = False
) -> tuple[np.ndarray, bool]:
    """The input pipeline's geometry, from an acquired grey image to the model's square: the
    crop to the body (`crop_to_body`, body.py), then `resize` to a `size` square. Returns the
    square and whether a body was found (True when not cropping). Training, validation, test,
    predict, the stressed validation sets and the robustness suite all pass through here."""
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {RESIZE_MODES}, not {resize!r}")
    found = True
    if crop_to_body:
        grey, found = body.crop_to_body(grey)
    return np.asarray(to_square(Image.fromarray(grey), size, resize)), found


def decode_xray(
    path: str | os.PathLike, size: int, resize: str = "squash", crop_to_body: bool = False
) -> np.ndarray:
    """Decode one file into a `size` x `size` uint8 grayscale array, cropped to the body if
    asked, then made square by `resize`: squashed (aspect lost, as in chest_xray_224), padded
    with black, or centre-cropped."""
    return frame_input(decode_grey(path, size), size, resize, crop_to_body)[0]


def _decode_or_reason(job: tuple[str, int, str, bool]) -> tuple:
    """(pixels, None, body found) for a file, or (None, why it is bad, True)."""
    path, size, resize, crop_to_body = job
    try:
        pixels, found = frame_input(decode_grey(path, size), size, resize, crop_to_body)
    except BadImageError as error:
        return None, str(error), True
    return pixels, None, found


def file_list_fingerprint(records: pd.DataFrame, *, mtimes: bool) -> str:
    """A hash of the file list with sizes and, with `mtimes`, modification times.

    The cache keys on mtimes too, so that a file edited in place rebuilds it. A run keys on
    names and sizes only, so that it resumes on a copy or a fresh extraction of the same data,
    which resets every mtime.
    """
    columns = ["relpath", "bytes", "mtime_ns"] if mtimes else ["relpath", "bytes"]
    digest = hashlib.sha256()
    for row in records[columns].itertuples(index=False):
        digest.update(("\t".join(map(str, row)) + "\n").encode())
    return digest.hexdigest()


def default_cache_dir() -> Path:
    if os.environ.get("PNEUMO_CACHE"):
        return Path(os.environ["PNEUMO_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "pneumo_utils"


def _check_outside(cache_dir: Path, data_root: Path) -> None:
    cache, data = cache_dir.resolve(), data_root.resolve()
    if cache == data or data in cache.parents:
        raise UserError(
            f"cache folder {cache_dir} is inside the dataset folder {data_root}, which must stay "
            "untouched: set PNEUMO_CACHE or --cache-dir to a folder outside it"
        )


@dataclass
class DecodedImages:
    """A dataset's decoded images: `images` row i belongs to the records' row i; `bad_files`
    {relpath: reason} could not be decoded; `no_body` lists the files the crop to the body
    found no body in (used whole; empty without --crop-to-body)."""

    images: np.ndarray
    bad_files: dict[str, str]
    no_body: list[str] = field(default_factory=list)


def _read_cache(array_path: Path, fingerprint: str, shape: tuple) -> DecodedImages | None:
    """The cached images, if a complete cache of this fingerprint is there."""
    index_path = array_path.with_suffix(".json")
    if not (index_path.exists() and array_path.exists()):
        return None
    try:
        index = json.loads(index_path.read_text())
        images = np.load(array_path, mmap_mode="r")
    except (OSError, ValueError):
        return None  # unreadable or cut short: rebuilt
    if index.get("fingerprint") == fingerprint and images.shape == shape:
        return DecodedImages(images, index["bad_files"], index.get("no_body", []))
    return None


def build_cache(
    records: pd.DataFrame,
    image_size: int,
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: bool = True,
    resize: str = "squash",
    decode=None,
    crop_to_body: bool = False,
) -> DecodedImages:
    """Decode every file once into a uint8 array (N, size, size) on disk, or reuse it.
    `decode(records, size)` replaces decoding the files (PneumoniaMNIST's arrays).

    The cache is keyed by the file list, sizes, mtimes, image size and the input pipeline's
    settings (resize, crop to the body), so any change to the data rebuilds it. The array is
    written under a temporary name and the JSON index last, so a build cut short is never read.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    _check_outside(cache_dir, Path(records.attrs["root"]))
    key = f"{file_list_fingerprint(records, mtimes=True)}:{image_size}:{CACHE_FORMAT}"
    if resize != "squash":  # the squash key predates the option: existing caches stay valid
        key += f":{resize}"
    if crop_to_body:
        key += ":crop-to-body"
    fingerprint = hashlib.sha256(key.encode()).hexdigest()
    array_path = cache_dir / f"{fingerprint[:20]}-{image_size}px.npy"
    index_path = array_path.with_suffix(".json")
    shape = (len(records), image_size, image_size)
    if (cached := _read_cache(array_path, fingerprint, shape)) is not None:
        return cached

    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"cannot create cache folder {cache_dir} ({error.strerror}): set PNEUMO_CACHE or "
            "--cache-dir to a writable folder"
        ) from error
    partial_path = array_path.with_name(f"{array_path.name}.partial-{os.getpid()}")
    images = np.lib.format.open_memmap(partial_path, mode="w+", dtype=np.uint8, shape=shape)
    bad_files: dict[str, str] = {}
    no_body: list[str] = []
    jobs = [(path, image_size, resize, crop_to_body) for path in records["path"]]
    workers = workers or min(4, os.cpu_count() or 1)
    bar = tqdm(total=len(jobs), desc=f"decoding images to {image_size}px", disable=not progress)
    pool = contextlib.nullcontext() if decode else ProcessPoolExecutor(max_workers=workers)
    with bar, pool:
        decoded = (
            ((pixels, reason, True) for pixels, reason in decode(records, image_size))
            if decode
            else pool.map(_decode_or_reason, jobs, chunksize=16)
        )
        for i, (pixels, reason, found) in enumerate(decoded):
            relpath = records["relpath"].iat[i]
            if reason is None:
                images[i] = pixels
            else:
                bad_files[relpath] = reason
            if not found:
                no_body.append(relpath)
            bar.update()
    images.flush()
    del images
    fsync_and_replace(partial_path, array_path)
    index = dict(
        fingerprint=fingerprint, root=records.attrs["root"], bad_files=bad_files, no_body=no_body
    )
    atomic_write_text(index_path, json.dumps(index, indent=1))
    return DecodedImages(np.load(array_path, mmap_mode="r"), bad_files, no_body)
