"""Recipes as data: every recipe trains from the command line, and reproduce plans the table."""

import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

from pneumo_utils.app import reproduce
from pneumo_utils.app.cli import main
from pneumo_utils.config import TrainConfig
from pneumo_utils.recipes import HEADLINE, RECIPES, recipe_config
from pneumo_utils.results.tables import REPORTED_RUNS, TABLE_ROWS
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.training.runs import open_run


@pytest.mark.parametrize("name", list(RECIPES))
def test_every_recipe_is_a_valid_configuration(name):
    config = recipe_config(name, seed=3)
    assert config.seed == 3
    if name == "pretrained":  # the headline's pretrained recipe freezes the lower layers
        assert config.freeze == "layer3"
    config.check()


def test_the_table_reports_only_recipes_that_exist():
    assert set(REPORTED_RUNS) <= set(RECIPES) and set(TABLE_ROWS) <= set(RECIPES)
    assert REPORTED_RUNS[HEADLINE] == (0, 1, 2, 3, 4)  # the frame issue asks for 5 seeds
    assert recipe_config("baseline-224px") == TrainConfig()  # the course report's protocol


def test_unknown_recipe_is_a_user_error():
    with pytest.raises(UserError, match="unknown recipe 'nope'"):
        recipe_config("nope")


def test_train_a_recipe_with_an_override_then_rerun_its_config(tiny_data, tmp_path):
    args = ["--seed", "1", "--data", str(tiny_data), "--image-size", "32", "--no-progress"]
    args += ["--cache-dir", str(tmp_path / "cache")]
    assert main(["train", "--recipe", "smoke", *args, "--out", str(tmp_path / "a")]) == 0
    saved = open_run(tmp_path / "a").config
    assert saved == recipe_config("smoke", seed=1, data=str(tiny_data), image_size=32,
                                  cache_dir=str(tmp_path / "cache"))  # fmt: skip
    config = str(tmp_path / "a" / "config.json")
    assert main(["train", "--config", config, "--out", str(tmp_path / "b"), "--no-progress"]) == 0
    assert open_run(tmp_path / "b").config == saved
    assert (tmp_path / "a" / "history.csv").read_text() == (
        tmp_path / "b" / "history.csv"
    ).read_text()


def test_reproduce_dry_run_lists_the_committed_runs_as_done(capsys, monkeypatch):
    # The committed runs are found by the dataset's folder name, even where the data is absent.
    monkeypatch.setenv("PNEUMO_RUNS", str(Path(__file__).resolve().parents[1] / "runs"))
    reproduce.reproduce("/nowhere/chest_xray_224", dry_run=True)
    out = capsys.readouterr().out
    assert "done     " in out and "baseline-128px-seed2" in out
    assert "runs done;" in out
    assert "no dataset at /nowhere/chest_xray_224" in out and "of chest_xray_224" in out


def test_reproduce_without_any_dataset_lists_the_committed_runs(capsys, monkeypatch):
    # PNEUMO_DATA=none (the README's no-data setting) plans on the committed runs' dataset.
    monkeypatch.setenv("PNEUMO_RUNS", str(Path(__file__).resolve().parents[1] / "runs"))
    monkeypatch.setenv("PNEUMO_DATA", "none")
    reproduce.reproduce(dry_run=True)
    out = capsys.readouterr().out
    assert "the results table's runs on chest_xray_224:" in out
    assert "done     " in out and "ema-short-seed4" in out


def test_reproduce_without_the_dataset_stops_before_any_training(monkeypatch, tmp_path):
    monkeypatch.setenv("PNEUMO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("a training started"))
    with pytest.raises(UserError, match="no dataset at .*chest_xray: --data"):
        reproduce.reproduce(tmp_path / "chest_xray", render=False)


def test_reproduce_splits_the_threads_and_reports_failures(monkeypatch, tmp_path):
    monkeypatch.setattr(reproduce, "reported_runs", lambda data: {"smoke": (0, 1)})
    monkeypatch.setattr(reproduce, "repo_root", lambda: tmp_path)
    monkeypatch.setenv("PNEUMO_RUNS", str(tmp_path / "runs"))  # the logs, not in the checkout
    monkeypatch.setattr(reproduce.os, "cpu_count", lambda: 8)
    seen = []

    def fake_run(command, **kwargs):
        seen.append((command, kwargs["env"]["OMP_NUM_THREADS"]))
        return SimpleNamespace(returncode=1 if command[command.index("--seed") + 1] == "1" else 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    with pytest.raises(UserError, match="1 run\\(s\\) failed: smoke-seed1"):
        reproduce.reproduce(tmp_path, parallel=2, render=False)
    assert sorted(threads for _, threads in seen) == ["4", "4"]
    assert all("--recipe" in command and "smoke" in command for command, _ in seen)


def test_reproduce_gives_each_training_a_free_gpu(monkeypatch, tmp_path):
    """Runs of unequal length on 2 GPUs: no two at once on one GPU, none idle while one waits."""
    import threading
    import time

    import torch

    planned = [reproduce.PlannedRun(f"r{i}", 0, tmp_path / f"r{i}-seed0") for i in range(5)]
    monkeypatch.setattr(reproduce, "plan", lambda data, only: planned)
    monkeypatch.setattr(reproduce, "RECIPES", {run.recipe: {} for run in planned})
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    busy, lock, clashes = set(), threading.Lock(), []

    def fake_launch(run, data, threads, gpu):
        with lock:
            if gpu in busy:
                clashes.append((run.recipe, gpu))
            busy.add(gpu)
        time.sleep(0.3 if run.recipe == "r0" else 0.05)
        with lock:
            busy.discard(gpu)
        return 0

    monkeypatch.setattr(reproduce, "_launch", fake_launch)
    reproduce.reproduce(tmp_path, parallel=2, render=False)
    assert clashes == []


def test_from_dict_refuses_unknown_keys_and_a_whole_config_json():
    """A key that is not a setting, or a whole run's config.json, is refused in one line:
    dropping it would silently fall back to defaults (224 px instead of the run's 128)."""
    import json
    from dataclasses import asdict

    committed = Path(__file__).parents[1] / "runs/results/chest_xray_224/crop-only-seed0"
    saved = json.loads((committed / "config.json").read_text())
    config = TrainConfig.from_dict(saved["config"])
    assert config.image_size == 128 and config.crop_to_body
    with pytest.raises(UserError, match="whole run's config.json") as refused:
        TrainConfig.from_dict(saved)
    assert "\n" not in str(refused.value)
    with pytest.raises(UserError, match="unknown setting.*image_sise"):
        TrainConfig.from_dict({**asdict(config), "image_sise": 64})
