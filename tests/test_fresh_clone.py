"""What a fresh clone needs: a dataset found by what it is (a symlinked data/chest_xray), the
embedded sample when there is no dataset, and a command line that starts without torch."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pneumo_utils import TrainConfig, UserError, train
from pneumo_utils.app import settings
from pneumo_utils.data.dataset import load_data
from pneumo_utils.data.files import EMBEDDED_SAMPLE, find_dataset_root
from pneumo_utils.results import tables as results
from pneumo_utils.results.folders import run_folder
from pneumo_utils.training import runs

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / EMBEDDED_SAMPLE


def test_a_linked_dataset_is_named_and_resumed_by_what_it_links_to(tiny_data, tmp_path):
    real = Path(shutil.copytree(tiny_data, tmp_path / "chest_xray_small"))
    link = tmp_path / "data" / "chest_xray"
    link.parent.mkdir()
    link.symlink_to(real)
    runs_root = tmp_path / "runs"
    folder = run_folder(runs_root, link, "smoke", 0, "smoke")
    assert folder == run_folder(runs_root, real, "smoke", 0, "smoke")
    assert folder.parent.name == "chest_xray_small"
    config = TrainConfig(data=str(link), epochs=1, batch_size=16, image_size=32, max_batches=2,
                         cache_dir=str(tmp_path / "cache"))  # fmt: skip
    train(config, folder, progress=False)
    assert runs.open_run(folder).dataset == "chest_xray_small"
    assert len(results.collect_runs(folder.parent, include_smoke=True)) == 1  # not refused
    train(config, folder, progress=False)  # through the link again: the finished run is kept
    assert runs.run_state(folder) == "done"


def test_the_embedded_sample_is_small_complete_and_as_listed():
    files = sorted(p for p in SAMPLE.rglob("*.jpeg"))
    assert sum(p.stat().st_size for p in files) < 3_000_000
    lines = (SAMPLE / "SHA256SUMS").read_text().splitlines()
    listed = dict(reversed(line.split(maxsplit=1)) for line in lines)
    assert sorted(listed) == [p.relative_to(SAMPLE).as_posix() for p in files]
    for path in files:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert listed[path.relative_to(SAMPLE).as_posix()] == digest, path
    readme = (SAMPLE / "README.md").read_text()
    assert "CC BY 4.0" in readme and "doi:10.17632/rscbjbr9sj.2" in readme
    data = load_data(find_dataset_root(SAMPLE), 32, progress=False, task="bacterial-viral")
    for split in ("train", "val", "test"):
        assert set(data.splits[split]["label"]) == {0, 1}, split  # both types in every split


def test_only_the_smoke_profile_falls_back_to_the_sample(monkeypatch, tmp_path):
    monkeypatch.delenv("PNEUMO_DATA", raising=False)
    monkeypatch.setattr(settings, "repo_root", lambda: tmp_path)
    shutil.copytree(SAMPLE, tmp_path / "data" / EMBEDDED_SAMPLE)
    monkeypatch.setenv("PNEUMO_PROFILE", "smoke")
    assert settings.default_data() == tmp_path / "data" / EMBEDDED_SAMPLE
    monkeypatch.setenv("PNEUMO_PROFILE", "full")
    full = settings.default_data()
    assert full == tmp_path / "data" / "chest_xray"
    with pytest.raises(UserError, match="embedded sample"):
        find_dataset_root(full)  # the full profile stops, and says what the sample is for
    (tmp_path / "data" / "chest_xray").mkdir()
    monkeypatch.setenv("PNEUMO_PROFILE", "smoke")
    assert settings.default_data() == tmp_path / "data" / "chest_xray"  # a dataset wins


def test_a_run_on_the_sample_is_not_a_result(tmp_path):
    config = TrainConfig(data=str(SAMPLE), epochs=1, batch_size=16, image_size=32,
                         cache_dir=str(tmp_path / "cache"))  # fmt: skip
    run = train(config, tmp_path / "run", progress=False)
    assert "embedded sample (76 images)" in runs.open_run(run).not_a_result
    assert runs.open_run(run).title.endswith("(embedded sample (76 images): not a result)")


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["bench", "--help"]])
def test_the_command_line_parses_without_torch(argv):
    code = (
        "import sys\n"
        "from pneumo_utils.app.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'torchvision', 'pandas', 'matplotlib', 'sklearn') "
        "if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout[-500:]
