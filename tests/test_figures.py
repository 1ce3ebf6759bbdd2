"""Every committed figure is what the code draws today: each PNG in figures/ is redrawn from
the committed files (notebooks 01-04 as a fresh clone runs them, then the results page) and
compared with the committed one, so a stale figure fails. About two minutes on two CPU cores.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest

from pneumo_utils.app.headless import run_notebooks
from pneumo_utils.app.render import render_results
from pneumo_utils.app.settings import notebook_settings
from pneumo_utils.plots import report as plots

REPO = Path(__file__).resolve().parents[1]
FIGURES = REPO / "figures"
# Drawn where the runs' checkpoints were; checkpoints are not committed (figures/README.md).
NEEDS_CHECKPOINTS = {
    "gradcam", "gradcam_frame", "gradcam_shortcut", "gradcam_baseline_224px", "failures",
}  # fmt: skip
# A pixel differs when a channel moves by more than a quarter of its range; a figure is stale
# when more than this share of its pixels differ (a moved legend, a new curve, other data).
CHANGED_PIXEL, STALE_SHARE = 0.25, 0.001
# The commit before this round's figures were redrawn, for the test on a really old PNG.
BEFORE_REDRAW = "8ac64b8"


def stale(committed: Path, redrawn: Path) -> str | None:
    """Why `committed` is not what was `redrawn`, or None when they match."""
    old, new = plt.imread(committed), plt.imread(redrawn)
    if old.shape != new.shape:
        return f"{old.shape[1]}x{old.shape[0]} px, redrawn {new.shape[1]}x{new.shape[0]} px"
    share = float((np.abs(old - new).max(axis=-1) > CHANGED_PIXEL).mean())
    return f"{share:.2%} of the pixels differ" if share > STALE_SHARE else None


@pytest.fixture(scope="module")
def redrawn(tmp_path_factory) -> Path:
    """Every figure the committed files allow, drawn now into a folder of its own."""
    scratch = tmp_path_factory.mktemp("redrawn")
    runs = scratch / "runs"  # a copy: the executed notebooks are kept beside the runs
    shutil.copytree(REPO / "runs" / "results", runs / "results")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PNEUMO_RUNS", str(runs))
        env.setenv("PNEUMO_FIGURES", str(scratch / "figures"))
        run_notebooks(REPO / "notebooks")
        render_results(notebook_settings())
    return scratch / "figures"


def test_every_committed_figure_is_what_the_code_draws_today(redrawn):
    committed = sorted(path.stem for path in FIGURES.glob("*.png"))
    assert set(committed) >= NEEDS_CHECKPOINTS - {"failures"}
    problems = {}
    for name in committed:
        if name in NEEDS_CHECKPOINTS:
            continue
        if not (redrawn / f"{name}.png").is_file():
            problems[name] = "not drawn from the committed files"
        elif reason := stale(FIGURES / f"{name}.png", redrawn / f"{name}.png"):
            problems[name] = reason
    assert not problems, (
        f"stale figures {problems}: redraw them with `python -m pneumo_utils notebooks --save` "
        "and `PNEUMO_DATA=none python -m pneumo_utils results`"
    )


def test_an_old_figure_is_caught(redrawn, tmp_path):
    """Figure 1 drawn from another run, and Figure 1 as committed before this round."""
    other = REPO / "runs" / "results" / "chest_xray_224" / "improved-128px-seed0"
    plots.use_figure_style()
    fig = plots.plot_curves_side_by_side({"protocol": other}, "loss")
    assert stale(plots.save_figure(fig, "fig1_loss", tmp_path), redrawn / "fig1_loss.png")
    git_object = f"{BEFORE_REDRAW}:figures/fig1_loss.png"
    found = subprocess.run(["git", "cat-file", "-e", git_object], cwd=REPO, capture_output=True)
    if found.returncode != 0:
        pytest.skip(f"{BEFORE_REDRAW} is not in this clone (a shallow one)")
    old = tmp_path / "old_fig1_loss.png"
    old.write_bytes(subprocess.run(["git", "show", git_object], cwd=REPO, capture_output=True,
                                   check=True).stdout)  # fmt: skip
    assert stale(old, redrawn / "fig1_loss.png")
