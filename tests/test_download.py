"""The download command against a local HTTP server that serves a zip the test builds."""

import http.server
import threading
import zipfile
from functools import partial

import pytest

from pneumo_utils import UserError
from pneumo_utils.app.download import check_archive, download_dataset, extract


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Serves files with HTTP Range support; counts the bytes it sent."""

    sent = 0

    def do_GET(self):
        path = self.translate_path(self.path)
        with open(path, "rb") as handle:
            data = handle.read()
        start = 0
        if self.headers.get("Range"):
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])
        RangeHandler.sent += len(data) - start

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(RangeHandler, directory=str(served))
    )
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def _archive(path):
    with zipfile.ZipFile(path, "w") as bundle:
        bundle.writestr("chest_xray/train/NORMAL/IM-0001-0001.jpeg", b"x" * 5000)
        bundle.writestr("chest_xray/test/PNEUMONIA/person1_virus_1.jpeg", b"y" * 5000)
        bundle.writestr("__MACOSX/chest_xray/._junk", b"z")
    return path


def test_download_resumes_checks_and_extracts(server, tmp_path):
    served, url = server
    archive = _archive(served / "ChestXRay2017.zip")
    dest = tmp_path / "data"
    dest.mkdir()
    content = archive.read_bytes()
    (dest / "ChestXRay2017.zip.part").write_bytes(content[:3000])  # a broken earlier transfer
    RangeHandler.sent = 0
    download_dataset(f"{url}/ChestXRay2017.zip", dest, progress=False)
    assert RangeHandler.sent == len(content) - 3000
    assert (dest / "ChestXRay2017.zip").read_bytes() == content
    assert (
        dest / "chest_xray" / "train" / "NORMAL" / "IM-0001-0001.jpeg"
    ).read_bytes() == b"x" * 5000
    assert not (dest / "__MACOSX").exists() and not (dest / ".extracting").exists()


def test_unreachable_server_is_one_clear_error(tmp_path):
    with pytest.raises(UserError, match="cannot reach .*run the same command again"):
        download_dataset("http://127.0.0.1:9/ChestXRay2017.zip", tmp_path, progress=False)


def test_corrupted_archive_is_refused(tmp_path):
    archive = _archive(tmp_path / "a.zip")
    data = bytearray(archive.read_bytes())
    data[100] ^= 0xFF  # inside the first member's bytes
    archive.write_bytes(bytes(data))
    with pytest.raises(UserError, match="corrupted"):
        check_archive(archive)
    (tmp_path / "b.zip").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="not a zip archive"):
        check_archive(tmp_path / "b.zip")


def test_paths_escaping_the_target_are_refused(tmp_path):
    with zipfile.ZipFile(tmp_path / "evil.zip", "w") as bundle:
        bundle.writestr("../../outside.txt", b"x")
    with pytest.raises(UserError, match="unsafe path"):
        extract(tmp_path / "evil.zip", tmp_path / "dest")
    assert not (tmp_path / "outside.txt").exists()
