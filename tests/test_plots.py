import json

import matplotlib

matplotlib.use("Agg")

from dataclasses import asdict, fields  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from pneumo_utils.analysis import gradcam  # noqa: E402
from pneumo_utils.analysis.robustness import read_report
from pneumo_utils.app.settings import (  # noqa: E402
    Settings,
    hyperparameter_table,
    notebook_settings,
    profile_config,
)
from pneumo_utils.config import TrainConfig  # noqa: E402
from pneumo_utils.plots import dataset as data_plots  # noqa: E402
from pneumo_utils.plots import evidence  # noqa: E402
from pneumo_utils.plots import report as plots  # noqa: E402
from pneumo_utils.plots import robustness as robustness_plots  # noqa: E402
from pneumo_utils.recipes import HEADLINE, NEEDS_WEIGHTS, recipe_config  # noqa: E402
from pneumo_utils.results import comparison, summary  # noqa: E402
from pneumo_utils.splits import EVALUATED_SPLITS  # noqa: E402
from pneumo_utils.training import runs  # noqa: E402
from pneumo_utils.training.runs import open_run, training_curves  # noqa: E402

from .conftest import make_dataset  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    """Each test's figures closed after it, so that the suite never holds more than one's."""
    yield
    matplotlib.pyplot.close("all")


def test_every_report_figure_renders(finished_run, tmp_path):
    runs = {"scratch": finished_run}
    figures = {
        "fig1_loss": plots.plot_curves_side_by_side(runs, "loss"),
        "fig2_accuracy": plots.plot_curves_side_by_side(runs, "acc"),
        "fig3": plots.plot_per_class(finished_run, "loss"),
        "confusion": plots.plot_confusion_matrices(runs),
        "roc": plots.plot_roc_curves(runs),
    }
    for name, fig in figures.items():
        assert plots.save_figure(fig, name, tmp_path).stat().st_size > 10_000
    loss_axes = figures["fig1_loss"].axes[0]
    assert loss_axes.get_ylabel() == plots.AXIS_LABELS["loss"] and "log" in loss_axes.get_ylabel()
    assert loss_axes.get_yscale() == "log"  # train and val are not flattened by the test loss
    for fig in (figures["fig1_loss"], figures["roc"]):  # one legend, below the panels
        assert not any(ax.get_legend() for ax in fig.axes) and len(fig.legends) == 1
    legend = [t.get_text() for t in figures["fig1_loss"].legends[0].get_texts()]
    assert "train (running mean, training mode)" in legend  # not read as a pass over train
    drawn = set(training_curves(finished_run)["split"])  # an entry for each split drawn, only
    assert legend == [plots.SPLIT_LABELS[s] for s in plots.CURVE_SPLITS if s in drawn]
    per_class = training_curves(finished_run).query("metric == 'loss' and cls != 'overall'")
    assert figures["fig3"].axes[0].get_ylim()[1] > per_class["value"].max()  # no peak clipped
    images, labels = gradcam.gradcam_examples(finished_run, per_class=1)
    assert labels == [0, 1]
    heat, probs = gradcam.gradcam(finished_run, images)
    assert heat.shape == (2, *images[0].shape) and ((probs >= 0) & (probs <= 1)).all()
    fig = evidence.plot_gradcam({"scratch": (heat, probs, images)}, labels)
    rows, row_labels = gradcam.gradcam_rows({"scratch": finished_run}, per_class=1)
    assert row_labels == labels and np.allclose(rows["scratch"][0], heat)
    assert len(fig.axes) == 3  # two images and the colour bar of the heat maps
    assert "Grad-CAM" in fig.axes[-1].get_ylabel()


def test_curve_splits_differ_in_colour_and_in_style():
    for table in (plots.PALETTE, plots.DASHES):
        assert len(set(map(str, table.values()))) == len(table) == len(plots.CURVE_SPLITS)


def test_recipe_curves_tell_recipes_apart_by_colour_and_style():
    accuracies = dict(val_acc=0.9, test_acc=0.8, val_acc_NORMAL=0.9, test_acc_NORMAL=0.5)
    curves = pd.DataFrame(
        [
            dict(recipe=recipe, seed=seed, epoch=epoch, **accuracies)
            for recipe in ("a", "b", "c")
            for seed in (0, 1)
            for epoch in (1, 2)
        ]
    )
    fig = evidence.plot_recipe_curves(curves)
    lines = fig.axes[0].get_lines()
    assert len({line.get_color() for line in lines}) == len(lines) == 3
    assert len({line.get_linestyle() for line in lines}) == 3
    assert len(fig.legends) == 1 and not any(ax.get_legend() for ax in fig.axes)


def test_audit_figure_has_units_and_its_legend_below(tmp_path):
    rng = np.random.default_rng(0)
    properties = pd.DataFrame(
        dict(
            split=["train", "val", "test", "test"] * 10,
            class_name=["NORMAL", "PNEUMONIA"] * 20,
            bytes_per_pixel=rng.uniform(0.1, 0.2, 40),
            jpeg_quality=75.0,
        )
    )
    units = {"bytes_per_pixel": "file size / pixels (bytes per pixel)"}
    fig = data_plots.plot_audit(properties, ["jpeg_quality", "bytes_per_pixel"], units)
    assert fig.axes[0].get_xlabel() == units["bytes_per_pixel"]
    assert len(fig.legends) == 1 and not any(ax.get_legend() for ax in fig.axes)
    assert "jpeg quality" in fig._suptitle.get_text()  # constant: named, not drawn
    assert plots.save_figure(fig, "audit", tmp_path).stat().st_size > 10_000


def test_training_curves_long_form(finished_run):
    curves = training_curves(finished_run)
    assert set(curves["split"]) == {"train", *EVALUATED_SPLITS}
    assert set(curves["cls"]) == {"overall", "NORMAL", "PNEUMONIA"}
    # epochs x splits x metrics x (overall + 2 classes)
    assert len(curves) == 2 * (1 + len(EVALUATED_SPLITS)) * 2 * 3


def test_results_table_names_missing_and_non_result_runs(finished_run, tmp_path):
    table = comparison.results_table(
        {"protocol": finished_run, "headline": finished_run},
        {"pretrained": NEEDS_WEIGHTS},
        n_resamples=50,
    )  # two roles of one model: a column each
    assert list(table.columns) == ["protocol (scratch)", "headline (scratch)", "pretrained"]
    assert table.loc["accuracy", "pretrained"] == NEEDS_WEIGHTS
    assert "| accuracy |" in summary.markdown_table(table)


def test_stand_in_weights_are_never_labelled_a_result(finished_run, tmp_path):
    saved = json.loads((finished_run / "config.json").read_text())
    saved["weights"] = {"official": False, "sha256": "0" * 64}
    run = tmp_path / "pretrained"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(saved))
    assert "stand-in weights" in plots.run_label(run)
    assert not open_run(run).is_result and open_run(finished_run).is_result


def test_robustness_figures_render(finished_run, tmp_path):

    report = read_report(finished_run)
    fig = robustness_plots.plot_robustness({"old": [report], "new": [report, report]})
    assert plots.save_figure(fig, "robustness", tmp_path).stat().st_size > 10_000
    fig = robustness_plots.plot_reliability(report)
    assert plots.save_figure(fig, "reliability", tmp_path).stat().st_size > 10_000
    assert "perfect calibration" in [t.get_text() for t in fig.legends[0].get_texts()]
    images = [np.zeros((32, 32), np.uint8)] * 2
    fig = robustness_plots.plot_failures(images, np.zeros((2, 32, 32)), report["failures"][:2] or
                              [dict(label=0, p_pneumonia=0.9)] * 2, 0.5)  # fmt: skip
    assert plots.save_figure(fig, "failures", tmp_path).stat().st_size > 5_000
    assert "P = the model's P(pneumonia)" in fig._suptitle.get_text()  # "P" is defined


def test_settings_profiles(monkeypatch, tmp_path):
    monkeypatch.setenv("PNEUMO_PROFILE", "full")
    monkeypatch.setenv("PNEUMO_DATA", str(tmp_path))
    monkeypatch.delenv("PNEUMO_FIGURES", raising=False)  # the test session's sets one
    full = notebook_settings()
    # An empty folder is not the committed runs' dataset: its figures stay out of figures/.
    assert full.figures == full.runs / "figures" / tmp_path.name and full.data == tmp_path
    assert profile_config("headline", full) == recipe_config(HEADLINE, data=str(tmp_path))
    assert profile_config("pretrained", full).freeze == "layer3"
    scratch, pretrained = profile_config("headline", full), profile_config("pretrained", full)
    for f in fields(TrainConfig):  # the headline's levers and selection rule, from ImageNet
        if f.metadata["group"] in ("shortcuts", "selection"):
            assert getattr(pretrained, f.name) == getattr(scratch, f.name), f.name
    assert profile_config("protocol", full) == TrainConfig(data=str(tmp_path))  # the report's
    assert profile_config("pretrained-protocol", full).freeze == "none"
    assert full.run_dir(HEADLINE) == full.runs / "results" / tmp_path.name / f"{HEADLINE}-seed0"
    monkeypatch.setenv("PNEUMO_PROFILE", "smoke")
    smoke = notebook_settings()
    assert "smoke" in str(smoke.figures) and profile_config("headline", smoke).max_batches
    monkeypatch.setenv("PNEUMO_PROFILE", "fast")
    with pytest.raises(Exception, match="not a profile"):
        notebook_settings()
    assert isinstance(full, Settings)


def test_figures_of_other_data_never_go_to_the_committed_figures(tmp_path):
    """figures/ holds the committed runs' figures: drawn from those runs alone (no dataset) or
    from their dataset (the same files). A partial copy of that dataset, under the same folder
    name, and any other dataset get a folder of their own, outside figures/."""
    from pneumo_utils.app.settings import figures_folder
    from pneumo_utils.data.dataset import dataset_fingerprint

    committed_runs = tmp_path / "runs"
    data = tmp_path / "chest_xray"
    make_dataset(data, dict(train=3, val=1, test=2))
    folder = committed_runs / "results" / "chest_xray" / "headline-seed0"
    folder.mkdir(parents=True)
    record = {
        "config": asdict(TrainConfig(data=str(data))),
        "data": {"root": str(data), "fingerprint": dataset_fingerprint(data),
                 "splits": {"train": 400, "val": 40, "test": 600}},
        "weights": None,
        "environment": {},
    }  # fmt: skip
    runs.write_config(folder, record)
    root = tmp_path / "repo"
    assert figures_folder(root, tmp_path / "absent", committed_runs, "full") == root / "figures"
    assert figures_folder(root, data, committed_runs, "full") == root / "figures"
    next(data.glob("train/NORMAL/*.jpeg")).unlink()  # now a partial copy
    other = figures_folder(root, data, committed_runs, "full")
    assert other == committed_runs / "figures" / "chest_xray"
    smoke = figures_folder(root, data, committed_runs, "smoke")
    assert smoke == committed_runs / "smoke" / "figures"


def test_hyperparameter_table_shows_the_changes_beside_the_report_protocol():
    report = ["model", "epochs", "batch_size", "lr", "image_size", "dropout"]
    protocol = hyperparameter_table(TrainConfig())
    assert list(protocol.index) == [*report, "val_fraction", "seed"]
    assert protocol.loc["seed", "this run"] == "0"  # an integer stays one beside floats
    table = hyperparameter_table(TrainConfig(epochs=2, augment=True))
    assert list(table.index) == [*report, "augment", "val_fraction", "seed"]
    assert table.loc["epochs", "course report"] == "40" and table.loc["epochs", "this run"] == "2"
