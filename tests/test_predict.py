"""predict as a researcher uses it: folders and globs, CSV out, bad files on their rows."""

import csv
import io
import shutil

import numpy as np
import pytest
from PIL import Image

from pneumo_utils import TrainConfig, UserError
from pneumo_utils.app import predict
from pneumo_utils.app.predict import predict_files, write_predictions
from pneumo_utils.data import inputs
from pneumo_utils.data.inputs import expand_inputs


@pytest.fixture
def folder_with_a_bad_file(tiny_data, tmp_path):
    folder = tmp_path / "incoming"
    shutil.copytree(tiny_data / "test", folder)
    (folder / "NORMAL" / "scan-truncated.jpeg").write_bytes(b"\xff\xd8\xff not a jpeg")
    (folder / "NORMAL" / ".DS_Store").write_bytes(b"junk")  # OS junk is not an input
    (folder / "notes.txt").write_text("not an image either, and not picked up")
    return folder


def test_a_folder_with_one_bad_file_keeps_the_good_rows(
    finished_run, folder_with_a_bad_file, monkeypatch
):
    batches = []
    to_model_input = predict.to_model_input
    monkeypatch.setattr(
        predict,
        "to_model_input",
        lambda batch, *args: batches.append(len(batch)) or to_model_input(batch, *args),
    )
    out = io.StringIO()
    count, failed = write_predictions(
        predict_files(finished_run, [folder_with_a_bad_file], batch_size=5), out
    )
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert count == len(rows) == 17  # 16 test images and the truncated one
    assert [row["path"] for row in failed] == [
        str(folder_with_a_bad_file / "NORMAL" / "scan-truncated.jpeg")
    ]
    bad = next(row for row in rows if row["path"].endswith("scan-truncated.jpeg"))
    assert bad["p_pneumonia"] == "" and bad["label"] == "" and "readable" in bad["error"]
    good = [row for row in rows if not row["error"]]
    assert len(good) == 16
    assert all(0 <= float(row["p_pneumonia"]) <= 1 for row in good)
    assert {row["label"] for row in good} <= {"NORMAL", "PNEUMONIA"}
    assert max(batches) <= 5 and sum(batches) == 16  # memory is bounded by the batch size


def test_globs_and_files_expand_in_order(tiny_data):
    pattern = str(tiny_data / "test" / "PNEUMONIA" / "*.jpeg")
    one = tiny_data / "test" / "NORMAL" / "IM-1000-0001.jpeg"
    paths = expand_inputs([one, pattern])
    assert paths[0] == one and len(paths) == 9
    with pytest.raises(UserError, match="no image file at"):
        expand_inputs([tiny_data / "nothing-here-*.png"])


def test_predict_writes_a_csv_file_and_a_summary(
    finished_run, folder_with_a_bad_file, tmp_path, capsys
):
    out = tmp_path / "predictions.csv"
    predict.predict_command(finished_run, [folder_with_a_bad_file], str(out), 4, progress=False)
    assert out.read_text().startswith("path,p_pneumonia,label,threshold,error\n")
    err = capsys.readouterr().err
    assert "16 of 17 images predicted; 1 unreadable" in err and "threshold" in err
    assert not list(tmp_path.glob(".*partial"))


def _write_dicom(path, pixels, photometric="MONOCHROME2", bits=12, **tags):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, photometric
    dataset.BitsAllocated = 8 if bits == 8 else 16
    dataset.BitsStored, dataset.HighBit = bits, bits - 1
    dataset.PixelRepresentation = 0
    for key, value in tags.items():
        setattr(dataset, key, value)
    dataset.PixelData = pixels.astype(np.uint8 if bits == 8 else np.uint16).tobytes()
    dataset.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture
def xray_8bit():
    """An 8-bit picture with structure (a bright block on a gradient)."""
    pixels = np.tile(np.linspace(20, 200, 48), (40, 1))
    pixels[10:30, 12:36] = 240
    return np.round(pixels).astype(np.uint8)


def test_dicom_is_read_when_pydicom_is_there(finished_run, tmp_path, xray_8bit):
    pydicom = pytest.importorskip("pydicom", reason="pydicom is the optional [dicom] extra")
    twelve = np.round(xray_8bit.astype(float) * 4095 / 255)
    path = _write_dicom(tmp_path / "x.dcm", twelve)
    assert pydicom.dcmread(path).pixel_array.shape == (40, 48)
    (row,) = predict_files(finished_run, [path])
    assert row["error"] == "" and 0 <= row["p_pneumonia"] <= 1


def test_monochrome1_and_12_bit_dicom_decode_like_their_twins(finished_run, tmp_path, xray_8bit):
    pytest.importorskip("pydicom", reason="pydicom is the optional [dicom] extra")
    twelve = np.round(xray_8bit.astype(float) * 4095 / 255)
    files = dict(
        eight=_write_dicom(tmp_path / "8.dcm", xray_8bit, bits=8),
        twelve=_write_dicom(tmp_path / "12.dcm", twelve),
        inverted=_write_dicom(tmp_path / "m1.dcm", 4095 - twelve, photometric="MONOCHROME1"),
        rescaled=_write_dicom(tmp_path / "ct.dcm", twelve, RescaleSlope=2, RescaleIntercept=-1000),
    )
    config = TrainConfig(image_size=32)
    decoded = {name: inputs.decode_input(path, config) for name, path in files.items()}
    for name in ("twelve", "inverted", "rescaled"):
        assert np.abs(decoded[name].astype(int) - decoded["eight"]).max() <= 1, name
    rows = {r["path"]: r for r in predict_files(finished_run, list(files.values()))}
    probabilities = [rows[str(path)]["p_pneumonia"] for path in files.values()]
    assert max(probabilities) - min(probabilities) < 0.02
    assert len({rows[str(path)]["label"] for path in files.values()}) == 1


def test_a_dicom_window_is_applied(tmp_path, xray_8bit):
    pytest.importorskip("pydicom", reason="pydicom is the optional [dicom] extra")
    twelve = np.round(xray_8bit.astype(float) * 4095 / 255)
    # A window over [2050, 3850]: everything below it black, the bright block (3854) white.
    path = _write_dicom(tmp_path / "w.dcm", twelve, WindowCenter=2950, WindowWidth=1800)
    grey = inputs.dicom_to_grey(__import__("pydicom").dcmread(path))
    assert grey.min() == 0 and grey.max() == 255
    assert (grey[twelve < 2000] == 0).all()


def test_a_12_bit_png_decodes_like_its_8_bit_twin(tmp_path, xray_8bit):
    from pneumo_utils.data.cache import decode_xray

    twelve = np.round(xray_8bit.astype(float) * 4095 / 255).astype(np.uint16)
    Image.fromarray(xray_8bit).save(tmp_path / "8.png")
    Image.fromarray(twelve).save(tmp_path / "12.png")  # a 16-bit PNG holding 12-bit values
    assert Image.open(tmp_path / "12.png").mode.startswith("I")
    eight, from_twelve = decode_xray(tmp_path / "8.png", 32), decode_xray(tmp_path / "12.png", 32)
    assert np.abs(eight.astype(int) - from_twelve).max() <= 1
    assert from_twelve.max() > 200  # not the grey levels 0-16 of a 65535 scale
