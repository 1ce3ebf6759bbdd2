"""On real images: the sample of original-resolution JPEGs in ../shared/data where this
project's machines have it, else the embedded sample that ships in data/ (a plain clone)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pneumo_utils import load_data
from pneumo_utils.analysis.exploration import patient_overlap

REPO = Path(__file__).resolve().parents[1]
SAMPLE_DATA = (REPO / ".." / "shared" / "data" / "chest_xray_sample").resolve()
REAL_DATA = SAMPLE_DATA if SAMPLE_DATA.is_dir() else REPO / "data" / "embedded_sample"


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return load_data(REAL_DATA, 64, cache_dir=tmp_path_factory.mktemp("cache"), progress=False)


def test_sample_splits_are_clean_and_test_is_official(sample):
    overlap = patient_overlap(sample.splits)
    assert overlap.loc["train / val", "shared_patient_ids"] == 0
    assert overlap.loc["train / test", "identical_images"] == 0
    assert len(sample.splits["test"]) == len(list((REAL_DATA / "test").rglob("*.jpeg")))


def test_cache_matches_full_decoding_of_originals(sample):
    for record in sample.records.sample(12, random_state=0).itertuples():
        with Image.open(record.path) as image:
            reference = np.asarray(image.convert("L").resize((64, 64), Image.Resampling.BILINEAR))
        cached = sample.images[record.cache_row]
        # JPEG draft mode decodes at a reduced DCT scale: a small, even difference is expected
        assert np.abs(cached.astype(int) - reference.astype(int)).mean() < 5, record.relpath
        assert np.corrcoef(cached.ravel(), reference.ravel())[0, 1] > 0.99, record.relpath


def test_train_then_predict_an_original_jpeg(tmp_path):
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "pneumo_utils",
        "train",
        "--model",
        "pretrained",
        "--data",
        str(REAL_DATA),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--image-size",
        "64",
        "--max-batches",
        "2",
        "--freeze",
        "backbone",
        "--cache-dir",
        str(tmp_path / "c"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "total wall time" in result.stdout
    image = next((REAL_DATA / "test" / "PNEUMONIA").glob("*.jpeg"))
    result = subprocess.run(
        [sys.executable, "-m", "pneumo_utils", "predict", str(out), str(image)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.strip().splitlines()
    assert header.startswith("path,p_pneumonia") and 0 <= float(row.split(",")[1]) <= 1
