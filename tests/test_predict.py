"""predict as a researcher uses it: folders and globs, CSV out, bad files on their rows."""

import csv
import io
import shutil

import pytest

from pneumo_utils import UserError, predict
from pneumo_utils.predict import expand_inputs, predict_files, write_predictions


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


def test_dicom_is_read_when_pydicom_is_there(finished_run, tmp_path):
    pydicom = pytest.importorskip("pydicom", reason="pydicom is the optional [dicom] extra")
    import numpy as np
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = FileDataset(str(tmp_path / "x.dcm"), {}, file_meta=meta, preamble=b"\0" * 128)
    pixels = np.random.default_rng(0).integers(0, 4095, (40, 48), dtype=np.uint16)
    dataset.Rows, dataset.Columns = pixels.shape
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, "MONOCHROME2"
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = 16, 12, 11
    dataset.PixelRepresentation = 0
    dataset.PixelData = pixels.tobytes()
    dataset.save_as(tmp_path / "x.dcm", enforce_file_format=True)
    assert pydicom.dcmread(tmp_path / "x.dcm").pixel_array.shape == (40, 48)
    (row,) = predict_files(finished_run, [tmp_path / "x.dcm"])
    assert row["error"] == "" and 0 <= row["p_pneumonia"] <= 1
