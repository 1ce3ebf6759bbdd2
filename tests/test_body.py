"""The crop to the body (body.py) in the input pipeline, the reframed validation set, and the
robustness suite's order for runs that crop: all on tiny generated images."""

from __future__ import annotations

import csv
import io
import json
import shutil
import zlib
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
import torchvision
from PIL import Image

from pneumo_utils import preprocess
from pneumo_utils.app.export import export_run, torchvision_state_dict
from pneumo_utils.data import body
from pneumo_utils.data.cache import build_cache, decode_xray, frame_input
from pneumo_utils.data.dataset import load_data, load_run_data, split_frame
from pneumo_utils.data.files import scan_dataset
from pneumo_utils.data.stresses import REFRAMINGS, reframe_variant
from pneumo_utils.results import screening
from pneumo_utils.runtime.fileio import atomic_write_csv
from pneumo_utils.splits import POOLED_VAL, REFRAMED_VAL
from pneumo_utils.training import runs
from pneumo_utils.training.epoch_log import HISTORY
from pneumo_utils.training.metrics import choose_threshold

from .conftest import make_dataset


def _body(height: int = 60, width: int = 48, seed: int = 0) -> np.ndarray:
    """A textured bright body that fills its frame."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.normal(140, 30, (height, width)), 30, 255).astype(np.uint8)


def _framed(inner: np.ndarray, top: int, bottom: int, left: int, right: int, fill: int = 0):
    height, width = inner.shape
    out = np.full((height + top + bottom, width + left + right), fill, np.uint8)
    out[top : top + height, left : left + width] = inner
    return out


@pytest.mark.parametrize(
    "margins", [(20, 0, 0, 0), (0, 20, 0, 0), (0, 0, 20, 0), (0, 0, 0, 20), (9, 14, 25, 3)]
)
def test_a_black_margin_on_any_side_crops_to_the_same_box(margins):
    inner = _body()
    cropped, found = body.crop_to_body(_framed(inner, *margins))
    assert found
    np.testing.assert_array_equal(cropped, inner)


def test_an_image_without_margin_is_unchanged():
    inner = _body()
    cropped, found = body.crop_to_body(inner)
    assert found and cropped.shape == inner.shape
    square, _ = frame_input(inner, 32, crop_to_body=True)
    np.testing.assert_array_equal(square, frame_input(inner, 32, crop_to_body=False)[0])


def test_a_flat_bright_band_and_a_stray_marker_are_not_the_body():
    inner = _body()
    banded = _framed(inner, 12, 12, 12, 12, fill=200)  # a shutter: bright but flat
    assert body.body_box(banded) == (12, 72, 12, 60)
    marked = _framed(inner, 0, 0, 0, 40)
    marked[5:12, 80:86] = 255  # a small "R" marker far from the body
    assert body.body_box(marked) == (0, 60, 0, 48)


@pytest.mark.parametrize("image", [np.zeros((40, 40), np.uint8), np.full((40, 40), 180, np.uint8)])
def test_a_blank_image_falls_back_to_the_whole_image(image):
    cropped, found = body.crop_to_body(image)
    assert not found and cropped is image


def test_the_cache_counts_the_images_without_a_body(tiny_copy, cache_dir):
    blank = tiny_copy / "test" / "NORMAL" / "IM-0999-0001.jpeg"
    Image.fromarray(np.zeros((48, 48), np.uint8)).save(blank)
    records = scan_dataset(tiny_copy)
    decoded = build_cache(records, 32, cache_dir, progress=False, crop_to_body=True)
    assert decoded.no_body == ["test/NORMAL/IM-0999-0001.jpeg"]
    assert build_cache(records, 32, cache_dir, progress=False, crop_to_body=True).no_body == [
        "test/NORMAL/IM-0999-0001.jpeg"
    ]  # read back from the cache's index
    assert build_cache(records, 32, cache_dir, progress=False).no_body == []  # another key


def test_decoding_with_the_crop_removes_a_margin_from_a_file(tmp_path):
    inner = _body(64, 64)
    Image.fromarray(_framed(inner, 30, 30, 30, 30)).save(tmp_path / "framed.png")
    Image.fromarray(inner).save(tmp_path / "inner.png")
    framed = decode_xray(tmp_path / "framed.png", 32, crop_to_body=True)
    np.testing.assert_array_equal(framed, decode_xray(tmp_path / "inner.png", 32))
    assert not np.array_equal(framed, decode_xray(tmp_path / "framed.png", 32))


# ----------------------------------------------------------------- the reframed validation set


def test_each_reframing_changes_the_frame_its_own_way():
    image = _body(48, 64)  # as acquired: not square
    tighter, looser, border = (reframe_variant(image, f, "a.jpeg", 0) for f in REFRAMINGS)
    assert tighter.shape == looser.shape == border.shape == image.shape
    assert (looser == 0).mean() > 0.15  # a black margin
    assert (image == 0).mean() == 0 and not np.array_equal(tighter, image)
    assert border[0, 0] >= np.median(image)  # the band is between median and white
    assert border[0, 0] == border[-1, -1] == border[24, 0]  # one grey all round


def test_reframing_depends_on_seed_and_name_only():
    grey = _body(64, 64)
    first = reframe_variant(grey, REFRAMINGS[0], "a.jpeg", seed=0)
    np.testing.assert_array_equal(first, reframe_variant(grey, REFRAMINGS[0], "a.jpeg", seed=0))
    assert not np.array_equal(first, reframe_variant(grey, REFRAMINGS[0], "b.jpeg", seed=0))
    assert not np.array_equal(first, reframe_variant(grey, REFRAMINGS[0], "a.jpeg", seed=1))


@pytest.mark.parametrize("crop", [False, True])
def test_the_reframed_set_is_every_validation_image_every_way(tiny_data, cache_dir, crop):
    data = load_data(tiny_data, 32, cache_dir=cache_dir, progress=False, crop_to_body=crop)
    val = data.splits["val"]
    frame = split_frame(data, REFRAMED_VAL)
    assert len(frame) == len(data.reframed_val) == len(REFRAMINGS) * len(val)
    np.testing.assert_array_equal(frame["label"], np.tile(val["label"], len(REFRAMINGS)))
    # Built from the acquired files, so each block is that reframing through the pipeline.
    grey = data.acquired(val.iloc[:1])[0]
    changed = reframe_variant(grey, REFRAMINGS[1], val["relpath"].iat[0], data.seed)
    np.testing.assert_array_equal(data.reframed_val[len(val)], data.input_pipeline(changed)[0])


def test_the_crop_takes_a_looser_frame_back():
    """A black margin added as acquired is removed again by the pipeline: the looser block of a
    crop run is close to the clean image, while without the crop it is not."""
    grey = _body(64, 64)
    looser = reframe_variant(grey, REFRAMINGS[1], "a.jpeg", 0)
    clean = frame_input(grey, 32, crop_to_body=True)[0].astype(int)
    cropped = frame_input(looser, 32, crop_to_body=True)[0].astype(int)
    squared = frame_input(looser, 32, crop_to_body=False)[0].astype(int)
    assert (cropped == 0).mean() < 0.02 < (squared == 0).mean()
    assert np.abs(cropped.mean() - clean.mean()) < np.abs(squared.mean() - clean.mean())


# ----------------------------------------------------------------- a run that crops


@pytest.fixture(scope="module")
def cropped_run(tmp_path_factory):
    """A finished 2-epoch run with --crop-to-body on tiny images given black margins, in fp32
    (--no-amp), so that plain torchvision in fp32 gives its probabilities on any CPU, bf16 or
    not."""
    from pneumo_utils import TrainConfig, train

    root = tmp_path_factory.mktemp("framed") / "chest_xray"
    make_dataset(root, dict(train=12, val=2, test=4))
    for path in root.rglob("*.jpeg"):  # a margin on a side and of a width drawn per file
        inner = np.asarray(Image.open(path))
        draw = zlib.crc32(path.name.encode())
        margins = [0, 0, 0, 0]
        margins[draw % 4] = 10 + draw // 4 % 12
        Image.fromarray(_framed(inner, *margins)).save(path, quality=95)
    config = TrainConfig(data=str(root), epochs=2, batch_size=16, image_size=32,
                         crop_to_body=True, cache_dir=str(root.parent / "cache"),
                         amp=False)  # fmt: skip
    return train(config, root.parent / "run", progress=False)


def test_a_cropped_run_records_the_crop_and_the_count(cropped_run):
    config = json.loads((cropped_run / "config.json").read_text())["config"]
    metrics = json.loads((cropped_run / "metrics.json").read_text())
    assert config["crop_to_body"] is True and metrics["crop_to_body"] is True
    assert metrics["no_body_found"] == {"train": 0, "val": 0, "test": 0}
    report = json.loads((cropped_run / "robustness.json").read_text())
    assert report["perturbed"].startswith("as acquired")
    history = runs.completed_epochs(cropped_run)
    pooled = sum(history[f"{split}_loss"] for split in POOLED_VAL) / 3
    np.testing.assert_allclose(history["pooled_val_loss"], pooled)
    reframed = runs.read_predictions(cropped_run, REFRAMED_VAL)
    assert list(reframed["reframing"].unique()) == [
        "reframe_tighter",
        "reframe_looser",
        "change_border",
    ]


def test_a_cropped_run_sees_no_margin(cropped_run):
    config = runs.open_run(cropped_run).config
    cropped = load_run_data(config, progress=False).images
    framed = load_run_data(replace(config, crop_to_body=False), progress=False).images

    def edges(images):
        sides = (images[:, 0, :], images[:, -1, :], images[:, :, 0], images[:, :, -1])
        return np.stack([side.mean(1) for side in sides])

    assert edges(cropped).min() > 40  # every side of every image is body
    assert (edges(framed).min(axis=0) < 10).all()  # each framed image has a black side


def test_predict_gives_the_test_pass_probability(cropped_run):
    from pneumo_utils.app.predict import predict_files, write_predictions
    from pneumo_utils.training.runs import open_run, read_predictions

    root = open_run(cropped_run).data["root"]
    tested = read_predictions(cropped_run).set_index("relpath")["p_pneumonia"]
    out = io.StringIO()
    write_predictions(predict_files(cropped_run, [f"{root}/test"]), out)
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert len(rows) == len(tested)
    for row in rows:
        relpath = row["path"][len(root) + 1 :]
        assert float(row["p_pneumonia"]) == pytest.approx(tested[relpath], abs=2e-3)


def test_plain_torchvision_on_preprocess_gives_the_runs_probabilities(cropped_run, tmp_path):
    from pneumo_utils.training.runs import open_run, read_predictions

    saved = open_run(cropped_run)
    export_run(cropped_run, tmp_path)
    model = torchvision.models.resnet18(num_classes=2)
    model.load_state_dict(torch.load(tmp_path / "resnet18_pneumonia.pth"))
    model.eval()
    tested = read_predictions(cropped_run)
    inputs = torch.cat([preprocess(f"{saved.data['root']}/{r}", saved.config)
                        for r in tested["relpath"]])  # fmt: skip
    with torch.no_grad():
        probs = torch.softmax(model(inputs), dim=1)[:, 1].numpy()
    np.testing.assert_allclose(probs, tested["p_pneumonia"], atol=1e-4)
    assert "crop_to_body=True" in (tmp_path / "MODEL_CARD.md").read_text()
    assert set(torchvision_state_dict({"fc.1.weight": 0})) == {"fc.weight"}


# ----------------------------------------------------------------- the rule


def test_the_pooled_threshold_weighs_each_set_alike():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    probs = np.clip(labels * 0.3 + rng.uniform(0, 0.7, 60), 0, 1)
    alone = choose_threshold(labels, probs)
    thrice = choose_threshold(np.tile(labels, 3), np.tile(probs, 3), np.full(180, 1 / 180))
    assert thrice == pytest.approx(alone)


def _arm(finished_run, folder, losses):
    shutil.copytree(finished_run, folder, ignore=shutil.ignore_patterns("*.pt"))
    history = runs.read_history(folder).iloc[:1]
    rows = [history.assign(epoch=i + 1, pooled_val_loss=loss) for i, loss in enumerate(losses)]
    atomic_write_csv(folder / HISTORY, pd.concat(rows).to_dict("records"))


def test_the_screening_rule_breaks_a_tie_on_the_late_epochs(finished_run, tmp_path):
    late = [0.6] * 5
    scores = {"crop-only": [0.300, *late], "crop-jitter": [0.304, *[0.4] * 5]}
    for recipe in screening.CROP_SCREENING:
        _arm(finished_run, tmp_path / f"{recipe}-seed0", scores.get(recipe, [0.5, *late]))
    table = screening.crop_screening_table(tmp_path)
    assert list(table.index[:2]) == ["crop-jitter", "crop-only"]  # tied within 0.005
    assert screening.crop_screening_winner(tmp_path) == "crop-jitter"
    _arm(finished_run, tmp_path / "other", [0.2])
    shutil.rmtree(tmp_path / "crop-jitter-seed0")
    with pytest.raises(ValueError, match="every arm finished"):
        screening.crop_screening_winner(tmp_path)
