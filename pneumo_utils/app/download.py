"""`python -m pneumo_utils download`: fetch Mendeley's ChestXRay2017.zip and unpack it.

Kermany, Zhang, Goldbaum et al., Mendeley Data v2 (2018), doi:10.17632/rscbjbr9sj.2, CC BY 4.0.
The transfer resumes where a broken one stopped (HTTP Range), the archive is CRC-checked
before anything is extracted, and extraction refuses paths that would leave the target folder.
"""

from __future__ import annotations

import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm.auto import tqdm

from pneumo_utils.runtime.errors import UserError

MENDELEY_URL = (
    "https://data.mendeley.com/public-files/datasets/rscbjbr9sj/files/"
    "f12eaf6d-6023-432f-acc9-80c9d7393433/file_downloaded"
)
ARCHIVE_NAME = "ChestXRay2017.zip"
CHUNK = 1 << 20


def fetch(url: str, target: Path, progress: bool = True) -> Path:
    """Download `url` to `target`, continuing a `.part` file left by an earlier attempt."""
    partial = target.with_name(target.name + ".part")
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # nothing left to send: the part file is complete
            partial.replace(target)
            return target
        raise UserError(f"download of {url} failed (HTTP {error.code} {error.reason})") from error
    except (urllib.error.URLError, OSError) as error:
        raise UserError(
            f"cannot reach {url} ({getattr(error, 'reason', error)}): check the network and run "
            "the same command again (a partial download resumes); without a network, copy the "
            "dataset by hand (data/README.md) and point PNEUMO_DATA (or --data) at it"
        ) from error
    with response:
        resumed = response.status == 206
        if not resumed:
            have = 0  # the server ignored the Range header: start over
        remaining = int(response.headers.get("Content-Length", 0)) or None
        total = have + remaining if remaining else None
        bar = tqdm(
            total=total,
            initial=have,
            unit="B",
            unit_scale=True,
            disable=not progress,
            desc=f"downloading {target.name}",
        )
        try:
            with bar, open(partial, "ab" if resumed else "wb") as handle:
                while chunk := response.read(CHUNK):
                    handle.write(chunk)
                    bar.update(len(chunk))
        except OSError as error:
            raise UserError(
                f"download of {url} broke off ({error}): run the same command again to resume"
            ) from error
    partial.replace(target)
    return target


def check_archive(archive: Path) -> None:
    """Refuse an archive that is not a zip or whose CRCs do not match."""
    if not zipfile.is_zipfile(archive):
        raise UserError(f"{archive} is not a zip archive: delete it and download again")
    with zipfile.ZipFile(archive) as bundle:
        broken = bundle.testzip()
    if broken is not None:
        raise UserError(
            f"{archive} is corrupted (bad CRC in {broken}): delete it and download again"
        )


def extract(archive: Path, dest: Path) -> None:
    """Unpack into `dest`, skipping macOS metadata; members may not escape `dest`."""
    dest = dest.resolve()
    staging = dest / ".extracting"
    shutil.rmtree(staging, ignore_errors=True)
    with zipfile.ZipFile(archive) as bundle:
        members = [m for m in bundle.infolist() if not m.filename.startswith("__MACOSX")]
        for member in members:
            if not (staging / member.filename).resolve().is_relative_to(staging.resolve()):
                raise UserError(
                    f"{archive} contains an unsafe path {member.filename!r}; not extracted"
                )
        for member in tqdm(members, desc="extracting", unit="file"):
            bundle.extract(member, staging)
    for item in staging.iterdir():
        if not (dest / item.name).exists():
            item.rename(dest / item.name)
    shutil.rmtree(staging, ignore_errors=True)


def download_dataset(
    url: str = MENDELEY_URL, dest: Path = Path("data"), progress: bool = True
) -> Path:
    """Download (or resume), check and extract the dataset; returns the extracted folder."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / ARCHIVE_NAME
    if not archive.exists():
        fetch(url, archive, progress)
    check_archive(archive)
    extract(archive, dest)
    print(f"dataset ready in {dest}")
    return dest
