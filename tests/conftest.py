"""Shared fixtures: a tiny generated dataset and runs trained on it.

The session environment (isolated caches, stand-in weights) is set up by ../conftest.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _xray_like(
    rng: np.random.Generator, label: int, size: tuple[int, int], viral: bool = False
) -> np.ndarray:
    """Dark lungs for NORMAL, bright patches (consolidation) for bacterial PNEUMONIA, a haze
    over the lower half for viral: learnable at 32 px."""
    width, height = size
    pixels = rng.normal(70, 12, (height, width))
    if viral:
        pixels[height // 2 :] += 90
    elif label == 1:
        for _ in range(3):
            y, x = rng.integers(0, height - height // 3), rng.integers(0, width - width // 3)
            pixels[y : y + height // 3, x : x + width // 3] += 110
    return np.clip(pixels, 0, 255).astype(np.uint8)


def make_dataset(
    root: Path,
    per_class: dict[str, int],
    seed: int = 0,
    with_val: bool = True,
    viral: bool = False,
) -> Path:
    """Kaggle layout with patient-coded names; two images per patient in train. With
    `viral`, every other PNEUMONIA patient is a viral one (personNNN_virus_MMM)."""
    rng = np.random.default_rng(seed)
    splits = {"train": per_class["train"], "test": per_class["test"]}
    if with_val:
        splits["val"] = per_class["val"]
    for split, patients in splits.items():
        for label, class_name in enumerate(("NORMAL", "PNEUMONIA")):
            folder = root / split / class_name
            folder.mkdir(parents=True, exist_ok=True)
            for patient in range(patients):
                pid = patient + {"train": 0, "val": 500, "test": 1000}[split]
                is_viral = viral and label == 1 and patient % 2 == 1
                kind = "virus" if is_viral else "bacteria"
                for image in range(2 if split == "train" else 1):
                    name = (
                        f"person{pid}_{kind}_{image}.jpeg"
                        if label
                        else f"IM-{pid:04d}-{image + 1:04d}.jpeg"
                    )
                    size = (int(rng.integers(40, 64)), int(rng.integers(40, 64)))
                    pixels = _xray_like(rng, label, size, is_viral)
                    Image.fromarray(pixels).save(folder / name, quality=95)
    return root


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """24 train patients per class (48 images), 2 val and 8 test images per class. Read-only use."""
    return make_dataset(
        tmp_path_factory.mktemp("tiny") / "chest_xray", dict(train=24, val=2, test=8)
    )


@pytest.fixture(scope="session")
def tiny_typed_data(tmp_path_factory) -> Path:
    """The tiny dataset with bacterial and viral PNEUMONIA patients (12 + 12 in train), for
    the bacterial-viral and three-class tasks. Read-only use."""
    return make_dataset(
        tmp_path_factory.mktemp("tiny_typed") / "chest_xray",
        dict(train=24, val=2, test=8),
        viral=True,
    )


@pytest.fixture
def tiny_copy(tiny_data, tmp_path) -> Path:
    """A private copy of the tiny dataset that a test may change."""
    return Path(shutil.copytree(tiny_data, tmp_path / "chest_xray"))


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def tiny_config(tiny_data, cache_dir):
    """A configuration that trains in a couple of seconds on the tiny dataset."""
    from pneumo_utils import TrainConfig

    return TrainConfig(
        model="scratch",
        data=str(tiny_data),
        epochs=2,
        batch_size=16,
        image_size=32,
        cache_dir=str(cache_dir),
    )


@pytest.fixture(scope="session")
def finished_run(tiny_data, tmp_path_factory) -> Path:
    """One finished 2-epoch run on the tiny dataset, shared by tests that only read it."""
    from pneumo_utils import TrainConfig, train

    out = tmp_path_factory.mktemp("run") / "scratch"
    config = TrainConfig(
        model="scratch",
        data=str(tiny_data),
        epochs=2,
        batch_size=16,
        image_size=32,
        cache_dir=str(out.parent / "cache"),
    )
    return train(config, out, progress=False)
