"""The notebooks as a fresh clone runs them (`pytest --nbval` compares their committed outputs)
and as a student trains with them (the smoke profile), and what each leaves behind.

Each test executes notebooks in real kernels: about a minute each on two CPU cores.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pneumo_utils.app.headless import run_notebooks
from pneumo_utils.recipes import HEADLINE, TASK_RECIPES
from pneumo_utils.training import runs

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "embedded_sample"
PROTOCOL_RUN = Path("runs/results/chest_xray_224/baseline-224px-seed0")  # notebook 02's first
# What a notebook run must never change: the committed report.
COMMITTED = ("figures", "docs", "data/summaries", "notebooks", "runs/results")


def _fingerprint(root: Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
        for folder in COMMITTED
        for path in sorted((root / folder).rglob("*"))
        if path.is_file()
    }


def _git_status() -> str | None:
    """`git status` of the committed report's folders, where this is a git checkout."""
    if not shutil.which("git") or not (REPO / ".git").exists():
        return None
    return subprocess.run(
        ["git", "status", "--porcelain", "--", *COMMITTED],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip


@pytest.fixture
def only(tmp_path):
    """A folder holding copies of the named notebooks (run_notebooks runs every one in it)."""

    def copy(*names: str) -> Path:
        folder = tmp_path / "notebooks"
        folder.mkdir(exist_ok=True)
        for name in names:
            shutil.copy(REPO / "notebooks" / name, folder / name)
        return folder

    return copy


def test_the_notebooks_train_in_the_smoke_profile(monkeypatch, tmp_path):
    """The training path of notebooks 02-04 on the embedded sample: every run trained, every
    figure drawn, beside the smoke runs and nowhere in the committed report."""
    before = _fingerprint(REPO)
    monkeypatch.setenv("PNEUMO_PROFILE", "smoke")
    monkeypatch.setenv("PNEUMO_DATA", str(SAMPLE))
    monkeypatch.setenv("PNEUMO_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("PNEUMO_FIGURES")
    run_notebooks(REPO / "notebooks")
    smoke = tmp_path / "runs" / "smoke" / "embedded_sample"
    for recipe in ("baseline-224px", HEADLINE, *TASK_RECIPES):
        assert runs.is_finished(smoke / f"{recipe}-seed0"), recipe
    figures = tmp_path / "runs" / "smoke" / "figures"
    assert {"fig1_loss.png", "confusion_matrices.png", "data_shortcut_audit.png"} <= {
        path.name for path in figures.iterdir()
    }
    assert _fingerprint(REPO) == before


def test_notebook_01_on_a_partial_dataset_leaves_the_committed_files_alone(
    monkeypatch, tmp_path, only
):
    """A partial copy in the full profile: its figures go to a folder named after it."""
    partial = Path(shutil.copytree(SAMPLE, tmp_path / "chest_xray_partial"))
    before, status_before = _fingerprint(REPO), _git_status()
    monkeypatch.setenv("PNEUMO_DATA", str(partial))
    monkeypatch.setenv("PNEUMO_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("PNEUMO_FIGURES")
    run_notebooks(only("01_data_exploration.ipynb"))
    drawn = tmp_path / "runs" / "figures" / "chest_xray_partial"
    assert (drawn / "data_shortcut_audit.png").is_file()
    assert _fingerprint(REPO) == before
    assert _git_status() == status_before


def test_a_changed_number_in_a_committed_run_fails_nbval(tmp_path):
    """`pytest --nbval` compares what the notebooks show with the committed outputs: with one
    run's test accuracy changed in a copy of the runs, notebook 02's metrics cell fails."""
    copy = tmp_path / "runs" / "results"
    shutil.copytree(REPO / "runs" / "results", copy, ignore=shutil.ignore_patterns("*.pt", "tb"))
    metrics_file = tmp_path / PROTOCOL_RUN / runs.METRICS
    metrics = json.loads(metrics_file.read_text())
    metrics["test"]["accuracy"] = 0.5
    metrics_file.write_text(json.dumps(metrics))
    env = dict(os.environ, PNEUMO_TEST_RUNS=str(tmp_path / "runs"))
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval", "notebooks/02_train_scratch.ipynb",
         "-p", "no:cacheprovider", "-q"],
        cwd=REPO, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout[-3000:]
    # That cell's output names no path: it differs by the number alone.
    failed = result.stdout.split("Cell outputs differ")
    assert any("metrics_table(protocol_run)" in part for part in failed[1:]), result.stdout[-3000:]


def test_the_committed_notebooks_carry_their_outputs():
    """What a grader reads on GitHub: outputs on (nearly) every code cell, Figures 1-4 and more
    in notebook 02, few cells exempt from nbval's comparison, and a small download."""
    total = 0
    for path in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        code = [cell for cell in json.loads(path.read_text())["cells"]
                if cell["cell_type"] == "code"]  # fmt: skip
        with_output = sum(bool(cell["outputs"]) for cell in code)
        exempt = sum("NBVAL_IGNORE_OUTPUT" in "".join(cell["source"]) for cell in code)
        assert with_output >= 0.8 * len(code), path.name
        assert exempt <= 0.25 * len(code), path.name
        if path.name.startswith("02_"):
            figures = sum(
                "image/png" in output.get("data", {}) for cell in code for output in cell["outputs"]
            )
            assert figures >= 4
        total += path.stat().st_size
    assert total <= 5_000_000
