import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from pneumo_utils.app import settings  # noqa: E402
from pneumo_utils.plots import evidence  # noqa: E402
from pneumo_utils.plots import report as plots  # noqa: E402
from pneumo_utils.recipes import NEEDS_WEIGHTS  # noqa: E402
from pneumo_utils.results import (  # noqa: E402
    robustness_tables,
    screening,
    summary,  # noqa: E402
)
from pneumo_utils.results import tables as results  # noqa: E402
from pneumo_utils.runtime.errors import UserError  # noqa: E402
from pneumo_utils.training.runs import read_history  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
COMMITTED = REPO / "runs" / "results" / "chest_xray_224"


def _copy_run(finished_run: Path, target: Path, accuracy: float, **config_changes) -> Path:
    # The tables read configs, histories and metrics; checkpoints would cost 100 MB a copy.
    run = Path(shutil.copytree(finished_run, target, ignore=shutil.ignore_patterns("*.pt", "tb")))
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["test"]["accuracy"] = accuracy
    (run / "metrics.json").write_text(json.dumps(metrics))
    saved = json.loads((run / "config.json").read_text())
    saved["config"].update(config_changes)
    (run / "config.json").write_text(json.dumps(saved))
    return run


def finished_run_dataset(run: Path) -> str:
    return Path(json.loads((run / "config.json").read_text())["data"]["root"]).name


@pytest.fixture
def report_dir(finished_run, tmp_path) -> Path:
    """Two seeds of one recipe, plus folders that are not part of the results table."""
    root = tmp_path / "results" / finished_run_dataset(finished_run)
    root.mkdir(parents=True)
    _copy_run(finished_run, root / "recipe-seed0", 0.80, augment=True)
    _copy_run(finished_run, root / "recipe-seed1", 0.90, augment=True)
    _copy_run(finished_run, root / "recipe-seed2", 0.10, max_batches=2)  # a smoke run
    _copy_run(finished_run, root / "no-seed-in-name", 0.10)
    unfinished = _copy_run(finished_run, root / "other-seed0", 0.10)
    (unfinished / "metrics.json").unlink()
    return root


def test_collect_runs_groups_seeds_and_skips_the_rest(report_dir):
    runs = results.collect_runs(report_dir)
    assert sorted(runs["seed"]) == [0, 1]
    assert set(runs["recipe"]) == {"recipe"}
    assert "augment=True" in runs["changes"].iloc[0]
    # Validation numbers are read at the selected epoch, not the last one.
    metrics = json.loads((report_dir / "recipe-seed0" / "metrics.json").read_text())
    assert runs["best_epoch"].iloc[0] == metrics["best_epoch"]


def test_seed_summary_is_mean_and_sample_sd(report_dir):
    summary = results.seed_summary(results.collect_runs(report_dir))
    assert summary.loc["recipe", "accuracy"] == "0.850 ± 0.071"
    assert summary.loc["recipe", "seeds"] == "0, 1"


def test_bar_distance_in_points(report_dir):
    distance = results.bar_distance(results.collect_runs(report_dir), "recipe")
    expected = 100 * (0.85 - results.BAR["accuracy"])
    assert distance.loc["accuracy", "distance (points)"] == pytest.approx(expected)
    assert not distance.loc["accuracy", "met"]
    assert distance.loc["accuracy", "seeds"] == f"2 of {results.BAR_SEEDS}"


def test_ablation_table_reads_validation_at_the_selected_epoch(report_dir):
    runs = results.collect_runs(report_dir)
    lines = summary.markdown_table(screening.ablation_table(runs)).splitlines()
    assert lines[0].startswith("| seed | recipe | selected on | selected epoch | val loss |")
    history = read_history(report_dir / "recipe-seed0").set_index("epoch")
    epoch = runs["best_epoch"].iloc[0]
    selected = history.loc[epoch]
    late = history.tail(screening.late_epochs(len(history)))
    assert lines[2] == (
        f"| 0 | recipe | val loss | {epoch} | {selected['val_loss']:.3f} | "
        f"{selected['val_acc_NORMAL']:.3f} | {selected['val_auc']:.3f} | "
        f"{selected['stressed_val_loss']:.3f} | {selected['stressed_val_acc_NORMAL']:.3f} | "
        f"{selected['stressed_val_auc']:.3f} | {selected['frame_val_loss']:.3f} | "
        f"{selected['frame_val_acc_NORMAL']:.3f} | {selected['frame_val_auc']:.3f} | "
        f"{late['val_loss'].mean():.3f} | "
        f"{late['stressed_val_loss'].mean():.3f} |"
    )
    assert lines[3].startswith("| 1 | recipe |")


def test_results_table_keeps_pretrained_row_empty_without_official_weights(report_dir):
    runs = results.collect_runs(report_dir)
    text = summary.results_markdown(runs, rows={"recipe": "our recipe"})
    assert "| **ours**: our recipe | ResNet-18 from scratch, 32 px | 0.850 ± 0.071 |" in text
    assert NEEDS_WEIGHTS in text
    assert "Kermany" in text and "0.928" in text
    stand_in = report_dir / "recipe-seed0"
    saved = json.loads((stand_in / "config.json").read_text())
    saved["weights"] = {"official": False, "sha256": "0" * 64}
    (stand_in / "config.json").write_text(json.dumps(saved))
    assert results.official_pretrained({"pretrained": stand_in}) is None
    assert results.official_pretrained({"scratch": stand_in}) is None


def test_histories_mark_the_selected_epoch(report_dir):
    runs = results.collect_runs(report_dir)
    curves = results.histories(runs)
    assert sorted(curves["seed"].unique()) == [0, 1]
    selected = curves[curves["selected"]]
    assert list(selected["epoch"]) == list(runs["best_epoch"])
    assert results.histories(runs, ["recipe"]).equals(curves)


def test_recipe_figures_render(report_dir, tmp_path):
    curves = results.histories(results.collect_runs(report_dir))
    fig = evidence.plot_recipe_curves(curves)
    assert plots.save_figure(fig, "recipes", tmp_path).stat().st_size > 10_000
    assert len(fig.axes) == 4
    # One ablation pair was run, the other not: its panel says so instead of failing.
    ablations = {"one change": ("recipe", "other"), "never run": ("other", "more")}
    fig = evidence.plot_ablation_curves(curves, ablations, seed=0)
    assert plots.save_figure(fig, "ablation", tmp_path).stat().st_size > 10_000
    assert fig.axes[1].get_title().endswith("(not run: other, more)")
    assert fig.axes[1].get_legend() is None  # no legend entry without a line
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["recipe"]
    assert fig.axes[0].get_title().endswith("(not run: other)")


def test_a_run_of_another_dataset_is_refused_not_shown(report_dir, finished_run):
    stray = _copy_run(finished_run, report_dir / "stray-seed0", 0.5)
    saved = json.loads((stray / "config.json").read_text())
    saved["data"]["root"] = "/somewhere/chest_xray_224"
    (stray / "config.json").write_text(json.dumps(saved))
    with pytest.raises(UserError, match="trained on chest_xray_224, not"):
        results.collect_runs(report_dir)


def test_each_dataset_shows_its_own_runs(report_dir, finished_run, monkeypatch, tmp_path):
    """Notebook 04 and reproduce read runs/results/<the dataset in use>, and nothing else."""
    from pneumo_utils.app import reproduce

    runs_root = report_dir.parent.parent
    other_data = tmp_path / "data" / "other_xrays"
    other = _copy_run(finished_run, runs_root / "results" / "other_xrays" / "recipe-seed0", 0.3)
    saved = json.loads((other / "config.json").read_text())
    saved["data"]["root"] = str(other_data)
    (other / "config.json").write_text(json.dumps(saved))
    monkeypatch.setenv("PNEUMO_RUNS", str(runs_root))
    monkeypatch.setenv("PNEUMO_PROFILE", "full")
    for data, expected in ((report_dir.name, [0.8, 0.9]), (str(other_data), [0.3])):
        monkeypatch.setenv("PNEUMO_DATA", data)
        found = results.collect_runs(settings.notebook_settings().results_dir)
        assert sorted(found["accuracy"]) == expected
        assert set(found["dataset"]) == {Path(data).name}
        assert Path(data).name in summary.results_markdown(found, rows={"recipe": "ours"})
    planned = reproduce.plan(other_data)
    assert {run.folder.parent for run in planned} == {runs_root / "results" / "other_xrays"}


def test_no_runs_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no finished runs"):
        results.collect_runs(tmp_path)


def _rows_without_pretrained(text: str) -> list[str]:
    """Table rows, less our pretrained row (it fills in only where a user has the weights)."""
    return [
        line
        for line in text.splitlines()
        if line.startswith("|") and not line.startswith("| **ours**: pretrained")
    ]


def test_readme_and_figures_table_come_from_the_committed_runs():
    """The README's numbers are the ones the committed runs give (no hand edits)."""
    runs = results.collect_runs(COMMITTED)
    medmnist = results.medmnist_runs(COMMITTED.parent)
    table = _rows_without_pretrained(summary.results_markdown(runs, medmnist=medmnist))
    readme = (REPO / "README.md").read_text().splitlines()
    for line in summary.readme_table(runs).splitlines():
        assert line in readme, f"README.md lacks (or has an old copy of) {line!r}"
    rendered = (REPO / "docs" / "results.md").read_text().splitlines()
    everything = _rows_without_pretrained(
        summary.markdown_table(screening.ablation_table(runs))
        + summary.markdown_table(results.bar_distance(runs, results.HEADLINE))
        + summary.markdown_table(results.bar_distance(runs, results.HEADLINE, results.AIM))
    )
    robustness = summary.markdown_table(
        robustness_tables.robustness_table(
            robustness_tables.robustness_reports(runs, results.HEADLINE)
        )
    ).splitlines()[2:]
    for line in table + everything + robustness:
        assert line in rendered, "docs/results.md is stale: run python -m pneumo_utils results"


def test_docs_tables_are_the_generated_ones():
    """docs/shortcuts.md quotes its tables from docs/results.md, which `python -m pneumo_utils
    results` writes."""
    generated = (REPO / "docs" / "results.md").read_text().splitlines()
    quoted = [
        line
        for line in (REPO / "docs" / "shortcuts.md").read_text().splitlines()
        if any(line.startswith(f"| 0 | {recipe} |") for recipe in screening.SCREENING)
    ]
    assert len(quoted) == len(screening.SCREENING)
    for line in quoted:
        assert line in generated, f"docs/shortcuts.md has a stale row: {line!r}"
