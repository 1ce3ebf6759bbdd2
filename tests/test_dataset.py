import json
import os
import shutil
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets, transforms

from pneumo_utils import TrainConfig, UserError
from pneumo_utils.analysis.exploration import patient_overlap
from pneumo_utils.data.augment import Augmentation
from pneumo_utils.data.batches import TrainingBatches, hold
from pneumo_utils.data.cache import BadImageError, build_cache, decode_xray
from pneumo_utils.data.dataset import load_data
from pneumo_utils.data.files import find_dataset_root, patient_id, scan_dataset
from pneumo_utils.data.model_input import to_model_input
from pneumo_utils.training.setup import class_weights

from .conftest import make_dataset


@pytest.mark.parametrize(
    "name, patient",
    [
        ("person1_bacteria_1.jpeg", "person1"),
        ("person1946_virus_3380.jpeg", "person1946"),
        ("person22_virus_55_1.jpeg", "person22"),
        ("IM-0115-0001.jpeg", "IM-0115"),
        ("IM-0001-0001-0002.jpeg", "IM-0001"),
        ("NORMAL2-IM-1427-0001.jpeg", "NORMAL2-IM-1427"),
        ("NORMAL2-IM-0001-0001-0001.jpeg", "NORMAL2-IM-0001"),
        ("scan.png", "scan"),
    ],
)
def test_patient_id_from_file_name(name, patient):
    assert patient_id(name) == patient


def test_scan_reads_kaggle_layout_with_fixed_class_indices(tiny_data):
    records = scan_dataset(tiny_data)
    assert set(records["split"]) == {"train", "val", "test"}
    assert (records.loc[records.class_name == "NORMAL", "label"] == 0).all()
    assert (records.loc[records.class_name == "PNEUMONIA", "label"] == 1).all()
    assert len(records) == 2 * (48 + 2 + 8)


def test_dataset_root_found_one_level_down(tiny_data):
    assert find_dataset_root(tiny_data.parent) == tiny_data


def test_split_is_patient_grouped_stratified_and_deterministic(tiny_data, cache_dir):
    first = load_data(tiny_data, 32, seed=3, cache_dir=cache_dir, progress=False)
    again = load_data(tiny_data, 32, seed=3, cache_dir=cache_dir, progress=False)
    other = load_data(tiny_data, 32, seed=4, cache_dir=cache_dir, progress=False)
    train, val = first.splits["train"], first.splits["val"]
    assert not set(train["patient"]) & set(val["patient"])
    assert set(val["class_name"]) == {"NORMAL", "PNEUMONIA"}
    # the official val images join the pool; the test set is the official one, untouched
    assert len(train) + len(val) == 2 * (48 + 2)
    assert (first.splits["test"]["split"] == "test").all()
    assert list(val["relpath"]) == list(again.splits["val"]["relpath"])
    assert list(val["relpath"]) != list(other.splits["val"]["relpath"])
    overlap = patient_overlap(first.splits)
    assert overlap.loc["train / val", "shared_patient_ids"] == 0


def test_keep_official_val(tiny_data, cache_dir):
    data = load_data(tiny_data, 32, keep_official_val=True, cache_dir=cache_dir, progress=False)
    assert (data.splits["val"]["split"] == "val").all()
    assert len(data.splits["val"]) == 4


def test_mendeley_layout_without_val(tmp_path, cache_dir):
    root = make_dataset(
        tmp_path / "ChestXRay2017" / "chest_xray", dict(train=10, test=3), with_val=False
    )
    data = load_data(tmp_path, 32, cache_dir=cache_dir, progress=False)
    assert find_dataset_root(tmp_path) == root
    assert len(data.splits["val"]) > 0
    with pytest.raises(UserError, match="no val/ folder"):
        load_data(tmp_path, 32, keep_official_val=True, cache_dir=cache_dir, progress=False)


def test_overlap_reports_id_collisions_and_identical_content(tiny_copy, cache_dir):
    source = tiny_copy / "train" / "NORMAL" / "IM-0003-0001.jpeg"
    shutil.copy(source, tiny_copy / "test" / "NORMAL" / "IM-0003-0009.jpeg")
    data = load_data(tiny_copy, 32, cache_dir=cache_dir, progress=False)
    overlap = patient_overlap(data.splits)
    row = (
        overlap.loc["train / test"]
        if "IM-0003" in set(data.splits["train"]["patient"])
        else overlap.loc["val / test"]
    )
    assert row["shared_patient_ids"] == 1
    assert row["identical_images"] == 1


# ------------------------------------------------------------------------ bad input


def test_missing_data_folder(tmp_path):
    with pytest.raises(UserError, match="does not exist.*--data"):
        scan_dataset(tmp_path / "nowhere")


def test_misnamed_class_folder(tiny_copy):
    (tiny_copy / "train" / "NORMAL").rename(tiny_copy / "train" / "normal")
    with pytest.raises(
        UserError, match=r"missing folder .*train/NORMAL \(found: PNEUMONIA, normal\)"
    ):
        scan_dataset(tiny_copy)


def test_misnamed_split_folders(tmp_path):
    (tmp_path / "Training").mkdir()
    with pytest.raises(UserError, match=r"not a chest X-ray dataset \(found: Training\)"):
        scan_dataset(tmp_path)


def test_empty_class_folder(tiny_copy):
    for file in (tiny_copy / "test" / "PNEUMONIA").iterdir():
        file.unlink()
    (tiny_copy / "test" / "PNEUMONIA" / ".DS_Store").write_bytes(b"junk")
    with pytest.raises(UserError, match="test/PNEUMONIA has no images"):
        scan_dataset(tiny_copy)


def test_os_junk_is_ignored(tiny_copy, cache_dir):
    (tiny_copy / "train" / "NORMAL" / ".DS_Store").write_bytes(b"\0\1")
    (tiny_copy / "train" / "NORMAL" / "Thumbs.db").write_bytes(b"\0\1")
    data = load_data(tiny_copy, 32, cache_dir=cache_dir, progress=False)
    assert not data.records["relpath"].str.contains("DS_Store|Thumbs").any()


def _write_bad_files(root):
    folder = root / "train" / "PNEUMONIA"
    (folder / "notes.txt").write_text("not an image")
    (folder / "person900_virus_1.jpeg").write_bytes(b"")
    good = (root / "train" / "NORMAL" / "IM-0001-0001.jpeg").read_bytes()
    (folder / "person901_virus_1.jpeg").write_bytes(good[: len(good) // 2])
    (folder / "person902_virus_1.jpeg").write_bytes(os.urandom(2000))
    return {
        "train/PNEUMONIA/notes.txt": "not an image file",
        "train/PNEUMONIA/person900_virus_1.jpeg": "empty file",
        "train/PNEUMONIA/person901_virus_1.jpeg": "cannot decode",
        "train/PNEUMONIA/person902_virus_1.jpeg": "not a readable image",
    }


def test_bad_files_are_all_named_before_training(tiny_copy, cache_dir):
    expected = _write_bad_files(tiny_copy)
    with pytest.raises(UserError) as caught:
        load_data(tiny_copy, 32, cache_dir=cache_dir, progress=False)
    message = str(caught.value)
    assert "\n" not in message and "--skip-bad-images" in message
    for relpath, reason in expected.items():
        assert f"{relpath}: {reason}" in message


def test_skip_bad_images_warns_and_leaves_them_out(tiny_copy, cache_dir):
    expected = _write_bad_files(tiny_copy)
    with pytest.warns(UserWarning, match="leaving out 4 bad file"):
        data = load_data(tiny_copy, 32, cache_dir=cache_dir, skip_bad_images=True, progress=False)
    assert not set(expected) & set(data.records["relpath"])
    assert set(data.skipped) == set(expected)


def test_image_modes_become_one_consistent_grayscale(tmp_path):
    gray = np.tile(np.linspace(0, 255, 40, dtype=np.uint8), (30, 1))
    Image.fromarray(gray).save(tmp_path / "gray.png")
    Image.fromarray(gray).convert("RGB").save(tmp_path / "rgb.png")
    rgba = Image.fromarray(gray).convert("RGBA")
    rgba.putalpha(128)
    rgba.save(tmp_path / "rgba.png")
    Image.fromarray(gray).convert("CMYK").save(tmp_path / "cmyk.jpeg", quality=100)
    Image.fromarray(gray.astype(np.uint16) * 257).save(tmp_path / "sixteen.png")
    reference = decode_xray(tmp_path / "gray.png", 16).astype(int)
    for name in ("rgb.png", "rgba.png", "sixteen.png", "cmyk.jpeg"):
        decoded = decode_xray(tmp_path / name, 16)
        assert decoded.shape == (16, 16) and decoded.dtype == np.uint8, name
        tolerance = 12 if name.endswith("jpeg") else 1
        assert np.abs(decoded.astype(int) - reference).max() <= tolerance, name


def test_huge_image_is_refused_before_decoding(tmp_path, monkeypatch):
    Image.new("L", (300, 300)).save(tmp_path / "big.png")
    monkeypatch.setattr("pneumo_utils.data.cache.MAX_PIXELS", 200 * 200)
    with pytest.raises(BadImageError, match="too large"):
        decode_xray(tmp_path / "big.png", 32)


# ------------------------------------------------------------------------ cache


def test_cache_is_reused_and_rebuilt_when_files_change(tiny_copy, cache_dir):
    records = scan_dataset(tiny_copy)
    build_cache(records, 32, cache_dir, progress=False)
    array_file = next(cache_dir.glob("*.npy"))
    built = array_file.stat().st_mtime_ns
    build_cache(scan_dataset(tiny_copy), 32, cache_dir, progress=False)
    assert array_file.stat().st_mtime_ns == built

    changed = tiny_copy / "test" / "NORMAL" / "IM-1000-0001.jpeg"
    Image.fromarray(np.full((50, 50), 255, np.uint8)).save(changed)
    records = scan_dataset(tiny_copy)
    fresh = build_cache(records, 32, cache_dir, progress=False).images
    row = records.index[records["relpath"] == "test/NORMAL/IM-1000-0001.jpeg"][0]
    assert fresh[row].min() > 250  # the new pixels, not the stale ones
    assert len(list(cache_dir.glob("*.json"))) == 2


def test_cache_cut_short_is_rebuilt_not_read(tiny_data, cache_dir):
    records = scan_dataset(tiny_data)
    build_cache(records, 32, cache_dir, progress=False)
    index_file = next(cache_dir.glob("*.json"))
    array_file = next(cache_dir.glob("*.npy"))
    index_file.unlink()  # a kill between writing the array and its index
    array_file.write_bytes(array_file.read_bytes()[:1000])
    images = build_cache(records, 32, cache_dir, progress=False).images
    assert images.shape == (len(records), 32, 32)
    assert json.loads(index_file.read_text())["bad_files"] == {}


def test_cache_inside_dataset_is_refused(tiny_data):
    with pytest.raises(UserError, match="inside the dataset folder"):
        build_cache(scan_dataset(tiny_data), 32, tiny_data / "cache", progress=False)


def test_cached_pipeline_matches_uncached_decoding(tiny_data, cache_dir):
    """Same images (within resize tolerance) and labels as torchvision's ImageFolder + PIL."""
    data = load_data(tiny_data, 32, cache_dir=cache_dir, progress=False)
    folder = datasets.ImageFolder(
        str(tiny_data / "test"),
        transforms.Compose(
            [transforms.Grayscale(), transforms.Resize((32, 32)), transforms.PILToTensor()]
        ),
    )
    cached = hold(data, "test", torch.device("cpu"))
    assert len(cached) == len(folder)
    order = np.argsort(data.splits["test"]["path"].to_numpy())
    for ours, (path, label) in zip(order, folder.samples, strict=True):
        image, our_label = cached.images[ours], cached.labels[ours]
        assert data.splits["test"]["path"].iat[ours] == path
        assert our_label == label
        reference = folder[folder.samples.index((path, label))][0]
        assert (image.float() - reference.float()).abs().mean() < 4


def test_to_model_input_normalizes_to_three_channels(tiny_data, cache_dir):
    data = load_data(tiny_data, 32, cache_dir=cache_dir, progress=False)
    images, labels = next(hold(data, "train", torch.device("cpu")).in_order(8))
    assert images.dtype == torch.uint8 and images.shape == (8, 1, 32, 32)
    batch = to_model_input(images, torch.device("cpu"))
    assert batch.shape == (8, 3, 32, 32)
    assert batch.is_contiguous(memory_format=torch.channels_last)
    white = to_model_input(torch.full((1, 1, 2, 2), 255, dtype=torch.uint8), torch.device("cpu"))
    assert torch.allclose(white[0, :, 0, 0], torch.tensor([2.2489, 2.4286, 2.6400]), atol=1e-3)


def test_weighted_sampling_balances_classes(tiny_copy, cache_dir):
    for file in sorted((tiny_copy / "train" / "NORMAL").iterdir())[:36]:
        file.unlink()
    data = load_data(tiny_copy, 32, cache_dir=cache_dir, progress=False)
    labels = data.splits["train"]["label"].to_numpy()
    assert labels.mean() > 0.7
    batches = TrainingBatches(
        hold(data, "train", torch.device("cpu")), 64, Augmentation(TrainConfig()), weighted=True
    )
    drawn = []
    for epoch in range(20):
        batches.start_epoch(epoch, epoch)
        drawn += [labels for _, labels in batches]
    assert abs(torch.cat(drawn).float().mean().item() - 0.5) < 0.05
    weights = class_weights(labels, 2)
    assert weights[0] > weights[1]
    assert np.isclose((weights.numpy()[labels]).mean(), 1.0)


def test_no_warnings_from_cache_reads(tiny_data, cache_dir):
    data = load_data(tiny_data, 32, cache_dir=cache_dir, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hold(data, "val", torch.device("cpu"))


def test_a_folder_of_two_datasets_is_ambiguous(tiny_data, tmp_path):
    shutil.copytree(tiny_data, tmp_path / "both" / "first")
    shutil.copytree(tiny_data, tmp_path / "both" / "second")
    with pytest.raises(UserError, match="holds 2 datasets .*first.*second.*--data"):
        find_dataset_root(tmp_path / "both")
    assert find_dataset_root(tmp_path / "both" / "first") == tmp_path / "both" / "first"
    shutil.copytree(tiny_data, tmp_path / "nested" / "chest_xray")
    assert find_dataset_root(tmp_path / "nested") == tmp_path / "nested" / "chest_xray"


def test_smoke_subsets_keep_both_classes_in_proportion(tiny_data, cache_dir):
    data = load_data(tiny_data, 32, cache_dir=cache_dir, progress=False, subset=6)
    for split in ("val", "test"):
        labels = data.splits[split]["label"]
        assert len(labels) <= 6 and set(labels) == {0, 1}, split
    full = load_data(tiny_data, 32, cache_dir=cache_dir, progress=False)
    assert len(full.splits["test"]) == 16
