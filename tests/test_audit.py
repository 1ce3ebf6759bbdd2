"""The shortcut audit: it finds a label that is given away by how files were saved."""

import io

import numpy as np
import pytest
from PIL import Image

from pneumo_utils.analysis.audit import (
    estimate_jpeg_quality,
    file_properties,
    pixel_properties,
    shortcut_audit,
)
from pneumo_utils.plots.dataset import plot_audit


@pytest.mark.parametrize("quality", [30, 50, 75, 90, 95])
def test_jpeg_quality_is_read_back_from_the_quantisation_tables(quality):
    pixels = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality)
    with Image.open(buffer) as image:
        assert estimate_jpeg_quality(image.quantization) == pytest.approx(quality, abs=1)
    assert np.isnan(estimate_jpeg_quality(None))


def test_file_properties_see_metadata_size_and_bytes(tmp_path):
    pixels = np.full((50, 100), 128, dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0131] = "scanner software"
    Image.fromarray(pixels).save(tmp_path / "tagged.jpeg", quality=95, exif=exif)
    Image.fromarray(pixels).save(tmp_path / "plain.jpeg", quality=75)
    tagged, plain = (
        file_properties(tmp_path / "tagged.jpeg"),
        file_properties(tmp_path / "plain.jpeg"),
    )
    assert tagged["metadata_blocks"] == 1 and plain["metadata_blocks"] == 0
    assert tagged["aspect"] == 2.0 and tagged["width"] == 100
    assert tagged["jpeg_quality"] == 95 and plain["jpeg_quality"] == 75
    assert tagged["bytes_per_pixel"] > plain["bytes_per_pixel"]


def test_pixel_properties_count_black_saturated_and_border():
    image = np.full((32, 32), 128, dtype=np.uint8)
    image[:2] = 0  # a black band along the top: the border
    image[16, 16] = 255
    props = pixel_properties(image)
    assert props["black_fraction"] == pytest.approx(64 / 1024)
    assert props["saturated_fraction"] == pytest.approx(1 / 1024)
    assert props["border_black_fraction"] > props["black_fraction"]
    assert props["border_mean"] < props["mean"]


def _confounded_dataset(root, patients=40):
    """Identical pixel statistics in both classes; only the saving differs, as in Kermany."""
    rng = np.random.default_rng(0)
    exif = Image.Exif()
    exif[0x0131] = "scanner software"
    for split, count in [("train", patients), ("test", 6)]:
        for label, class_name in enumerate(("NORMAL", "PNEUMONIA")):
            folder = root / split / class_name
            folder.mkdir(parents=True)
            for patient in range(count):
                pixels = np.clip(rng.normal(120, 30, (48, 56)), 0, 255).astype(np.uint8)
                image = Image.fromarray(pixels)
                if label == 0:
                    image.save(folder / f"IM-{patient:04d}-0001.jpeg", quality=95, exif=exif)
                else:
                    image.save(folder / f"person{patient}_virus_1.jpeg", quality=75)
    return root


def test_audit_finds_a_label_given_away_by_the_files(tmp_path):
    result = shortcut_audit(_confounded_dataset(tmp_path / "chest_xray"), image_size=32, folds=4)
    auc = result.auc["cv AUC (train)"]
    assert auc["file properties"] > 0.95
    assert auc["pixel properties"] < 0.8  # the pixels were drawn alike for both classes
    assert result.single.index[0] in ("jpeg_quality", "metadata_blocks", "bytes_per_pixel")
    assert len(result.properties) == 2 * 40 + 2 * 6
    # Every file here is 56 x 48: the aspect is named in the title, not drawn.
    fig = plot_audit(result.properties, ["jpeg_quality", "aspect", "bytes_per_pixel"])
    assert len([ax for ax in fig.axes if ax.get_visible()]) == 2
    assert "aspect" in fig._suptitle.get_text()
