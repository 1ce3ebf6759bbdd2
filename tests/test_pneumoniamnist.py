"""PneumoniaMNIST's npz file as a data source, and our metrics against MedMNIST's evaluator."""

from pathlib import Path

import numpy as np
import pytest

from pneumo_utils import TrainConfig, train
from pneumo_utils.data.dataset import load_data
from pneumo_utils.data.files import find_dataset_root
from pneumo_utils.results.folders import dataset_name
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.training.runs import read_metrics, read_predictions

REAL_NPZ = Path(__file__).resolve().parents[2] / "shared" / "data" / "pneumoniamnist.npz"


def _make_npz(path: Path, sizes=(40, 8, 12), seed: int = 0) -> Path:
    """A PneumoniaMNIST-shaped file: 28 px grey images, labels (N, 1), bright patches for
    PNEUMONIA so that a few epochs learn it."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in zip(("train", "val", "test"), sizes, strict=True):
        labels = np.arange(n) % 2
        images = rng.normal(70, 12, (n, 28, 28))
        images[labels == 1, 8:18, 6:16] += 110
        arrays[f"{split}_images"] = np.clip(images, 0, 255).astype(np.uint8)
        arrays[f"{split}_labels"] = labels.reshape(-1, 1).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def test_the_npz_split_is_kept_and_images_are_their_own_patients(tmp_path):
    npz = _make_npz(tmp_path / "mnist" / "pneumoniamnist.npz")
    assert find_dataset_root(npz.parent) == npz  # a folder that holds it names it too
    assert dataset_name(npz) == "pneumoniamnist"
    data = load_data(npz, 28, cache_dir=tmp_path / "cache", progress=False)
    assert {k: len(v) for k, v in data.splits.items()} == dict(train=40, val=8, test=12)
    assert data.records["patient"].is_unique
    with np.load(npz) as arrays:  # the test images, in the file's order, untouched at 28 px
        test = data.splits["test"]
        assert np.array_equal(data.images[test["cache_row"].to_numpy()], arrays["test_images"])
        assert np.array_equal(test["label"].to_numpy(), arrays["test_labels"].reshape(-1))
    upsampled = load_data(npz, 56, cache_dir=tmp_path / "cache", progress=False)
    first = upsampled.images[upsampled.splits["test"]["cache_row"].iat[0]]
    assert np.array_equal(first[::2, ::2], data.images[data.splits["test"]["cache_row"].iat[0]])


def test_changed_images_or_labels_make_another_dataset(tmp_path):
    def fingerprint(npz):
        return load_data(npz, 28, cache_dir=tmp_path / "c", progress=False).fingerprint

    first = fingerprint(_make_npz(tmp_path / "a.npz"))
    assert fingerprint(_make_npz(tmp_path / "b.npz", seed=1)) != first
    with np.load(tmp_path / "a.npz") as arrays:
        relabelled = dict(arrays)
    relabelled["test_labels"] = 1 - relabelled["test_labels"]
    np.savez(tmp_path / "c.npz", **relabelled)
    assert fingerprint(tmp_path / "c.npz") != first


def test_the_npz_beside_a_dataset_is_ambiguous(tmp_path):
    from .conftest import make_dataset

    _make_npz(tmp_path / "data" / "pneumoniamnist.npz")
    make_dataset(tmp_path / "data" / "kaggle" / "chest_xray", dict(train=2, val=1, test=1))
    with pytest.raises(UserError, match="holds 2 datasets"):
        find_dataset_root(tmp_path / "data")
    with pytest.raises(UserError, match="does not exist: pass the path of PneumoniaMNIST"):
        find_dataset_root(tmp_path / "missing.npz")


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncate", "is not an npz file"),
        ("npy", "is not an npz file"),
        ("missing", "has no val_images array"),
        ("shape", "not N grey uint8 images"),
    ],
)
def test_a_wrong_npz_gets_one_clear_line(tmp_path, damage, message):
    npz = _make_npz(tmp_path / "pneumoniamnist.npz")
    if damage == "truncate":
        npz.write_bytes(npz.read_bytes()[:300])
    elif damage == "npy":
        np.save(tmp_path / "array.npy", np.zeros(3))
        npz.write_bytes((tmp_path / "array.npy").read_bytes())
    else:
        with np.load(npz) as arrays:
            kept = dict(arrays)
        if damage == "missing":
            del kept["val_images"]
        else:
            kept["test_images"] = kept["test_images"].astype(np.float32)
        np.savez(npz, **kept)
    with pytest.raises(UserError, match=message):
        load_data(npz, 28, cache_dir=tmp_path / "cache", progress=False)


def test_our_metrics_equal_medmnists_evaluator_on_the_same_predictions(tmp_path):
    medmnist = pytest.importorskip("medmnist", reason="pip install medmnist (a dev dependency)")
    npz = _make_npz(tmp_path / "mnist" / "pneumoniamnist.npz", sizes=(48, 16, 20))
    config = TrainConfig(data=str(npz), image_size=28, epochs=2, batch_size=16, dropout=0.0,
                         select_metric="val_auc", cache_dir=str(tmp_path / "cache"))  # fmt: skip
    run = train(config, tmp_path / "run", progress=False)
    predictions = read_predictions(run)
    p = predictions["p_pneumonia"].to_numpy()
    evaluator = medmnist.Evaluator("pneumoniamnist", "test", root=str(npz.parent))
    assert np.array_equal(evaluator.labels.reshape(-1), predictions["label"].to_numpy())
    theirs = evaluator.evaluate(np.stack([1 - p, p], axis=1))
    metrics = read_metrics(run)
    assert metrics["test"]["roc_auc"] == pytest.approx(theirs.AUC, abs=1e-12)
    assert metrics["test_at_0_5"]["accuracy"] == pytest.approx(theirs.ACC, abs=1e-12)


@pytest.mark.skipif(not REAL_NPZ.exists(), reason=f"no {REAL_NPZ} (the official 28 px file)")
def test_the_official_file_has_medmnists_split(tmp_path):
    data = load_data(REAL_NPZ, 28, cache_dir=tmp_path / "cache", progress=False)
    assert {k: len(v) for k, v in data.splits.items()} == dict(train=4708, val=524, test=624)
    assert data.splits["test"]["label"].value_counts().to_dict() == {1: 390, 0: 234}


def test_bench_refuses_the_npz_in_one_line(tmp_path, capsys):
    from pneumo_utils.app.cli import main

    assert main(["bench", "--data", str(_make_npz(tmp_path / "pneumoniamnist.npz"))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "folder of image files" in err
