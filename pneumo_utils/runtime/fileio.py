"""Writes that never leave a half-written file, and checkpoint loading that never unpickles code.

Every file is written under a temporary name in the same folder, flushed to disk, then
renamed over the old one: a crash or a full disk leaves either the old file or the new one.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import torch

from pneumo_utils.runtime.errors import UserError


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return  # some platforms cannot open folders; the rename is still atomic
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_and_replace(temporary: Path, target: Path) -> None:
    with open(temporary, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(temporary, target)
    _fsync_dir(target.parent)


def _atomic_write(target: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    target = Path(target)
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        _fsync_dir(target.parent)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(
                f"disk full while writing {target}; the previous version is intact: free some "
                "space and run the same command again to resume"
            ) from error
        raise


def atomic_write_bytes(target: Path, data: bytes) -> None:
    _atomic_write(target, lambda handle: handle.write(data))


def atomic_write_text(target: Path, text: str) -> None:
    atomic_write_bytes(target, text.encode())


def atomic_write_csv(target: Path, rows: list[dict] | dict) -> None:
    """A CSV from rows (list of dicts) or columns (dict of arrays), written atomically."""
    import pandas as pd  # not at the top: the command line's parsing imports this module

    atomic_write_text(target, pd.DataFrame(rows).to_csv(index=False))


def atomic_torch_save(target: Path, obj) -> None:
    _atomic_write(target, lambda handle: torch.save(obj, handle))


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Load a checkpoint of tensors and plain values only (`weights_only=True`).

    A truncated or corrupted file, or one that needs arbitrary pickled objects, is refused
    with a message naming the file.
    """
    path = Path(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise UserError(
            f"refusing to load {path}: it holds pickled objects other than tensors and plain "
            "values, which could run code; only load checkpoints written by pneumo_utils"
        ) from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        raise UserError(
            f"checkpoint {path} is truncated or corrupted ({type(error).__name__}); delete it, "
            "or pass --fallback-checkpoint to resume from the previous good one"
        ) from error


def readable_like_new_files(path: Path) -> None:
    """Give `path` the permissions a new file gets here (0666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)
