import json

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from pneumo_utils import compare, plots  # noqa: E402
from pneumo_utils.settings import Settings, hyperparameter_table, notebook_settings, profile_config  # noqa: E402
from pneumo_utils.train import TrainConfig, training_curves  # noqa: E402


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
    assert figures["fig1_loss"].axes[0].get_ylabel() == "cross-entropy loss"
    images, labels = compare.gradcam_examples(finished_run, per_class=1)
    assert labels == [0, 1]
    fig = plots.plot_gradcam(runs, images, labels)
    assert len(fig.axes) >= 2


def test_training_curves_long_form(finished_run):
    curves = training_curves(finished_run)
    assert set(curves["split"]) == {"train", "val", "test"}
    assert set(curves["cls"]) == {"overall", "NORMAL", "PNEUMONIA"}
    assert len(curves) == 2 * 3 * 2 * 3  # epochs x splits x metrics x (overall + 2 classes)


def test_results_table_names_missing_and_non_result_runs(finished_run, tmp_path):
    table = compare.results_table(
        {"scratch": finished_run}, {"pretrained": compare.NEEDS_WEIGHTS}, n_resamples=50
    )
    assert list(table.columns) == ["scratch", "pretrained"]
    assert table.loc["accuracy", "pretrained"] == compare.NEEDS_WEIGHTS
    text = compare.write_results(table, {"scratch": finished_run}, tmp_path / "results.md", 50)
    assert "| accuracy |" in text.read_text()


def test_stand_in_weights_are_never_labelled_a_result(finished_run, tmp_path):
    saved = json.loads((finished_run / "config.json").read_text())
    saved["weights"] = {"official": False, "sha256": "0" * 64}
    run = tmp_path / "pretrained"
    run.mkdir()
    (run / "config.json").write_text(json.dumps(saved))
    assert "stand-in weights" in plots.run_label(run)
    assert not compare.is_result(run) and compare.is_result(finished_run)


def test_settings_profiles(monkeypatch, tmp_path):
    monkeypatch.setenv("PNEUMO_PROFILE", "full")
    monkeypatch.setenv("PNEUMO_DATA", str(tmp_path))
    full = notebook_settings()
    assert full.figures.name == "figures" and full.data == tmp_path
    assert profile_config("scratch", full) == TrainConfig(model="scratch", data=str(tmp_path))
    assert profile_config("pretrained", full).freeze == "layer3"
    monkeypatch.setenv("PNEUMO_PROFILE", "smoke")
    smoke = notebook_settings()
    assert "smoke" in str(smoke.figures) and profile_config("scratch", smoke).max_batches
    monkeypatch.setenv("PNEUMO_PROFILE", "fast")
    with pytest.raises(Exception, match="not a profile"):
        notebook_settings()
    assert isinstance(full, Settings)


def test_hyperparameter_table_shows_the_report_protocol():
    table = hyperparameter_table(TrainConfig())
    assert table.loc["lr", "value"] == 0.001 and table.loc["batch_size", "value"] == 32
    assert table.loc["epochs", "value"] == 40
    changed = hyperparameter_table(TrainConfig(epochs=2), baseline=TrainConfig())
    assert list(changed.index) == ["epochs"]
