import argparse
import errno
import json
import os
import socket
from dataclasses import asdict, replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from pneumo_utils import TrainConfig, UserError, train
from pneumo_utils.training.runs import RunLock, completed_epochs, read_history

RUN_FILES = (
    "config.json",
    "history.csv",
    "timing.csv",
    "metrics.json",
    "last.pt",
    "best.pt",
    "val_predictions.csv",
    "test_predictions.csv",
)


def test_a_run_writes_every_file(finished_run):
    for name in RUN_FILES:
        assert (finished_run / name).is_file(), name
    assert list((finished_run / "tb").glob("events.out.tfevents.*"))
    history = read_history(finished_run)
    assert list(history["epoch"]) == [1, 2]
    for split in ("train", "val", "test"):
        for column in (
            "loss",
            "acc",
            "loss_NORMAL",
            "acc_NORMAL",
            "loss_PNEUMONIA",
            "acc_PNEUMONIA",
        ):
            assert history[f"{split}_{column}"].notna().all(), f"{split}_{column}"
    assert (history["lr"] == 0.001).all()
    config = json.loads((finished_run / "config.json").read_text())
    assert config["config"]["lr"] == 0.001 and config["weights"] is None
    assert {"torch", "torchvision", "git_commit", "git_dirty", "processor"} <= set(
        config["environment"]
    )
    metrics = json.loads((finished_run / "metrics.json").read_text())
    test = metrics["test"]
    for key in (
        "accuracy",
        "acc_NORMAL",
        "acc_PNEUMONIA",
        "sensitivity",
        "specificity",
        "precision",
        "f1",
        "roc_auc",
        "confusion_matrix",
        "threshold",
    ):
        assert key in test
    assert sum(map(sum, test["confusion_matrix"])) == test["n"] == 16
    assert metrics["threshold_chosen_on"].startswith("val")


def test_the_code_is_dirty_for_changed_code_not_for_a_run_folder_being_written(tmp_path):
    """config.json's git_dirty: a run that starts beside another sees that one's new folder
    in the folder its own is written to, which changes no code; a changed or a new source file
    does, and so does a new file elsewhere in the runs."""
    import subprocess

    from pneumo_utils.runtime.device import code_changed

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "model.py").write_text("DROPOUT = 0.5\n")
    git("add", "model.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "code")
    runs = tmp_path / "runs" / "results" / "xray"
    (runs / "other-seed0").mkdir(parents=True)
    (runs / "other-seed0" / "history.csv").write_text("epoch\n1\n")
    assert not code_changed(tmp_path, runs_folder=runs)
    assert code_changed(tmp_path, runs_folder=tmp_path / "runs" / "results" / "other-data")
    assert code_changed(tmp_path)
    assert code_changed(tmp_path, runs_folder=tmp_path)  # a run beside the code hides nothing
    (tmp_path / "new_lever.py").write_text("WEIGHT = 1.0\n")
    assert code_changed(tmp_path, runs_folder=runs)
    (tmp_path / "new_lever.py").unlink()
    (tmp_path / "model.py").write_text("DROPOUT = 0.2\n")
    assert code_changed(tmp_path, runs_folder=runs)


def test_checkpoints_load_with_weights_only(finished_run):
    state = torch.load(finished_run / "last.pt", weights_only=True)
    assert state["state"]["epochs_done"] == 2 and len(state["state"]["history"]) == 2
    torch.load(finished_run / "best.pt", weights_only=True)


def test_the_model_learns_the_tiny_problem(finished_run):
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert metrics["test"]["roc_auc"] > 0.9


def test_finished_run_is_a_no_op(tiny_config, tmp_path):
    out = train(tiny_config, tmp_path / "run", progress=False)
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    train(tiny_config, out, progress=False)
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def test_same_seed_same_numbers(tiny_config, tmp_path):
    config = replace(tiny_config, augment=True, weighted_sampling=True)
    first = train(config, tmp_path / "a", progress=False)
    second = train(config, tmp_path / "b", progress=False)
    for name in ("history.csv", "metrics.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_a_config_saved_with_retired_speed_settings_still_reads():
    """Runs trained before the data moved to the device saved `workers` and `pin_memory`;
    they changed only speed, so they are read without them. Any other unknown key is refused."""
    saved = dict(asdict(TrainConfig(epochs=3)), workers=2, pin_memory=True)
    assert TrainConfig.from_dict(saved) == TrainConfig(epochs=3)
    with pytest.raises(UserError, match="unknown setting"):
        TrainConfig.from_dict(dict(asdict(TrainConfig()), wrokers=2))


def test_changed_configuration_is_refused_then_new_run_sets_it_aside(tiny_config, tmp_path):
    out = train(tiny_config, tmp_path / "run", progress=False)
    with pytest.raises(UserError, match=r"another configuration \(lr: 0.001 -> 0.01\).*--new-run"):
        train(replace(tiny_config, lr=0.01), out, progress=False)
    train(replace(tiny_config, lr=0.01, epochs=1), out, new_run=True, progress=False)
    assert len(read_history(out)) == 1
    aside = list(tmp_path.glob("run.old-*"))
    assert len(aside) == 1 and len(read_history(aside[0])) == 2


def test_changed_dataset_is_refused(tiny_copy, tiny_config, tmp_path):
    config = replace(tiny_config, data=str(tiny_copy))
    out = train(config, tmp_path / "run", progress=False)
    (out / "metrics.json").unlink()  # as if it had stopped before finishing
    (tiny_copy / "test" / "NORMAL" / "IM-1000-0001.jpeg").unlink()
    with pytest.raises(UserError, match="differs from the one .* trained on"):
        train(config, out, progress=False)


def test_finished_run_on_other_data_is_refused_not_reused(tiny_copy, tiny_config, tmp_path):
    out = train(tiny_config, tmp_path / "run", progress=False)
    (tiny_copy / "test" / "NORMAL" / "IM-1000-0001.jpeg").unlink()  # another dataset now
    with pytest.raises(UserError, match="differs from the one .* trained on.*--new-run"):
        train(replace(tiny_config, data=str(tiny_copy)), out, progress=False)
    train(tiny_config, out, progress=False)  # the data it was trained on: complete, a no-op


def test_resume_on_a_fresh_copy_of_the_same_data(tiny_copy, tiny_config, tmp_path):
    # Copying or re-extracting a dataset resets every mtime; the run must still resume.
    config = replace(tiny_config, data=str(tiny_copy))
    out = train(config, tmp_path / "run", progress=False)
    (out / "metrics.json").unlink()  # as if it had stopped before finishing
    for path in tiny_copy.rglob("*.jpeg"):
        os.utime(path, ns=(0, 0))
    train(config, out, progress=False)
    assert (out / "metrics.json").exists()


def test_second_training_into_the_same_folder_is_refused(tiny_config, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with RunLock(out), pytest.raises(UserError, match="in use by another training"):
        train(tiny_config, out, progress=False)
    train(replace(tiny_config, epochs=1), out, progress=False)  # the lock died with its holder


def test_non_finite_loss_stops_with_epoch_and_step(tiny_config, tmp_path, monkeypatch):
    out = train(replace(tiny_config, epochs=1), tmp_path / "run", progress=False)
    (out / "metrics.json").unlink()
    good = (out / "last.pt").read_bytes()
    _poison_loss(monkeypatch, at_call=2)
    config = replace(tiny_config, epochs=2)
    with pytest.raises(UserError, match="non-finite loss at epoch 2, step 2"):
        _resume_with(config, out)
    history = pd.read_csv(out / "history.csv")
    assert history.iloc[-1]["status"] == "non-finite loss at step 2"
    assert list(completed_epochs(out)["epoch"]) == [1]  # what the figures and report tables read
    assert (out / "last.pt").read_bytes() == good


def test_a_non_finite_loss_found_at_a_later_read_names_its_own_step(
    tiny_config, tmp_path, monkeypatch
):
    """The loop reads the per-step numbers every READ_EVERY steps: a non-finite loss at step 1
    is found after step 2, and the error still names step 1."""
    from pneumo_utils.training import loop

    monkeypatch.setattr(loop, "READ_EVERY", 2)
    calls = _poison_loss(monkeypatch, at_call=1)
    with pytest.raises(UserError, match="non-finite loss at epoch 1, step 1"):
        train(replace(tiny_config, epochs=1), tmp_path / "run", progress=False)
    assert calls["n"] >= 2  # the second step ran before the read found the first


def _poison_loss(monkeypatch, at_call: int) -> dict:
    """Make the training loss NaN at its `at_call`-th computation; returns the call count."""
    real = torch.nn.CrossEntropyLoss.forward
    calls = {"n": 0}

    def poisoned(self, logits, labels):
        calls["n"] += 1
        return real(self, logits, labels) * (float("nan") if calls["n"] == at_call else 1)

    monkeypatch.setattr(torch.nn.CrossEntropyLoss, "forward", poisoned)
    return calls


def _resume_with(config, out):
    """Continue a 1-epoch run as a 2-epoch one (same recipe otherwise)."""
    saved = json.loads((out / "config.json").read_text())
    saved["config"]["epochs"] = config.epochs
    (out / "config.json").write_text(json.dumps(saved))
    return train(config, out, progress=False)


def test_corrupted_checkpoint_names_the_file_and_fallback_resumes(tiny_config, tmp_path):
    out = train(tiny_config, tmp_path / "run", progress=False)
    (out / "metrics.json").unlink()
    last = out / "last.pt"
    last.write_bytes(last.read_bytes()[:5000])
    with pytest.raises(
        UserError, match=r"checkpoint .*last.pt is truncated or corrupted.*--fallback"
    ):
        train(tiny_config, out, progress=False)
    train(tiny_config, out, fallback_checkpoint=True, progress=False)
    assert list(read_history(out)["epoch"]) == [1, 2]


def test_checkpoint_with_arbitrary_objects_is_refused(tiny_config, tmp_path):
    out = train(tiny_config, tmp_path / "run", progress=False)
    (out / "metrics.json").unlink()

    torch.save({"model": argparse.Namespace(run="code")}, out / "last.pt")
    with pytest.raises(UserError, match="refusing to load .*last.pt"):
        train(tiny_config, out, progress=False)


def test_full_disk_leaves_previous_files_intact(tiny_config, tmp_path, monkeypatch):
    out = train(replace(tiny_config, epochs=1), tmp_path / "run", progress=False)
    (out / "metrics.json").unlink()
    before = {name: (out / name).read_bytes() for name in ("history.csv", "last.pt")}

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(UserError, match="disk full while writing .*previous version is intact"):
        _resume_with(replace(tiny_config, epochs=2), out)
    for name, content in before.items():
        assert (out / name).read_bytes() == content, name
    assert not list(out.glob(".*.tmp-*"))


def test_nothing_is_written_into_a_read_only_dataset(tiny_copy, tiny_config, tmp_path):
    snapshot = sorted(
        (p.relative_to(tiny_copy), p.stat().st_mtime_ns) for p in tiny_copy.rglob("*")
    )
    for path in [tiny_copy, *tiny_copy.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)
    try:
        train(replace(tiny_config, data=str(tiny_copy), epochs=1), tmp_path / "run", progress=False)
    finally:
        for path in [tiny_copy, *tiny_copy.rglob("*")]:
            path.chmod(path.stat().st_mode | 0o200)
    assert (
        sorted((p.relative_to(tiny_copy), p.stat().st_mtime_ns) for p in tiny_copy.rglob("*"))
        == snapshot
    )


def test_pretrained_run_records_weight_provenance(tiny_config, tmp_path):
    out = train(
        replace(
            tiny_config,
            model="pretrained",
            freeze="layer3",
            unfreeze_after=1,
            scheduler="cosine",
            class_weighting=True,
            early_stopping=5,
        ),
        tmp_path / "run",
        progress=False,
    )
    weights = json.loads((out / "config.json").read_text())["weights"]
    assert weights["official"] is False and weights["sha256"]
    assert list(read_history(out)["lr"]) == [0.001, 0.0005]


def test_bad_settings_fail_before_any_work(tiny_config, tmp_path):
    for change, message in [
        (dict(lr=-1), "--lr -1 is out of range"),
        (dict(scheduler="linear"), "unknown --scheduler"),
        (dict(weights="x.pth"), "need --model pretrained"),
    ]:
        with pytest.raises(UserError, match=message):
            train(replace(tiny_config, **change), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_odd_file_names_cannot_make_it_write_elsewhere(tiny_copy, tiny_config, tmp_path):
    folder = tiny_copy / "train" / "NORMAL"
    source = folder / "IM-0001-0001.jpeg"
    for name in ("..jpeg", "-rf.jpeg", "$(touch pwned).jpeg", "a b;c.jpeg", "IM-9999-0001 .jpeg"):
        (folder / name).write_bytes(source.read_bytes())
    before = set(tmp_path.rglob("*"))
    out = train(
        replace(tiny_config, data=str(tiny_copy), epochs=1), tmp_path / "run", progress=False
    )
    written = set(tmp_path.rglob("*")) - before
    allowed = (out, tmp_path / "cache")
    assert all(any(p == a or a in p.parents for a in allowed) for p in written), written
    assert not list(tmp_path.rglob("pwned"))


def test_training_opens_no_network_connection(tiny_config, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("training tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    train(replace(tiny_config, epochs=1), tmp_path / "run", progress=False)


def test_new_run_takes_the_lock_before_it_moves_anything(tiny_config, tmp_path):
    out = train(replace(tiny_config, epochs=1), tmp_path / "run", progress=False)
    with RunLock(out), pytest.raises(UserError, match="in use by another training"):
        train(replace(tiny_config, epochs=1), out, new_run=True, progress=False)
    assert (out / "metrics.json").exists()
    assert not list(tmp_path.glob("run.old-*")), "the folder of a running training was moved"
    train(replace(tiny_config, epochs=1), out, new_run=True, progress=False)
    assert len(list(tmp_path.glob("run.old-*"))) == 1


def test_config_records_absolute_paths(tiny_config, tmp_path, monkeypatch):
    import json

    monkeypatch.chdir(Path(tiny_config.data).parent)
    relative = replace(tiny_config, data=Path(tiny_config.data).name, epochs=1)
    out = train(relative, tmp_path / "run", progress=False)
    saved = json.loads((out / "config.json").read_text())["config"]
    assert Path(saved["data"]).is_absolute() and Path(saved["cache_dir"]).is_absolute()
    assert Path(saved["data"]) == Path(tiny_config.data).resolve()


def test_a_ctrl_c_is_kept_until_the_next_batch_and_a_second_one_stops_at_once():
    import os
    import signal

    from pneumo_utils.runtime.interrupt import StopAtNextBatch

    with pytest.raises(KeyboardInterrupt), StopAtNextBatch() as interrupt:
        os.kill(os.getpid(), signal.SIGINT)  # recorded, not raised here
        assert interrupt.requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)  # the second one: at once
        interrupt.check()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_early_stopping_fires_after_its_patience_and_says_so():
    from pneumo_utils.training.epoch_log import summary_line
    from pneumo_utils.training.loop import TrainState

    state = TrainState()
    for epoch, score in enumerate([1.0, 0.9, 0.95, 0.97], start=1):
        state.improve(score, epoch)
    assert state.best_epoch == 2 and state.stale_epochs == 2
    assert state.out_of_patience(2) and not state.out_of_patience(3)
    assert not state.out_of_patience(None)
    splits = ("train", "val", "stressed_val", "frame_val", "test")
    row = dict(epoch=4, lr=1e-3, **{f"{s}_{m}": 0.5 for s in splits for m in ("loss", "acc")})
    config = TrainConfig(early_stopping=2, select_metric="val_loss")
    line = summary_line(row, config, 1.0, is_best=False, stopped=True)
    assert line.endswith("early stopping: no better val_loss for 2 epochs")
    assert "early stopping" not in summary_line(row, config, 1.0, is_best=False)


def test_a_smoke_run_says_not_a_result_whatever_its_data(tiny_config, tmp_path, capsys):
    """A smoke run (a few batches per pass) on a dataset that is not the embedded sample is
    still not a result: its first line, its last line and its model card say so."""
    from pneumo_utils.app.export import export_run

    run = train(replace(tiny_config, epochs=1, max_batches=1), tmp_path / "smoke", progress=False)
    printed = capsys.readouterr().out.splitlines()
    assert "not a result: smoke run" in printed
    assert any(line.startswith("not a result (smoke run): best epoch 1") for line in printed)
    card = (export_run(run, tmp_path / "export") / "MODEL_CARD.md").read_text()
    assert "**Not a result: smoke run.**" in card


def test_the_scoring_after_training_reads_nothing_back(tiny_config, tmp_path, monkeypatch):
    """Training hands the run in memory to `then`: its best epoch's weights and predictions,
    here epoch 1 of 3, so the model it ends with is not the one scored. Scored from memory with
    config.json and best.pt moved away, the metrics and predictions equal those of the same run
    scored from best.pt, as a run resumed past its best epoch is."""
    from pneumo_utils.analysis.scoring import finalize
    from pneumo_utils.training import loop
    from pneumo_utils.training.fit import train as train_only

    def only_the_first_epoch_is_best(state, score, epoch):
        state.best_score, state.best_epoch = (score, epoch) if epoch == 1 else (0, 1)
        return epoch == 1

    monkeypatch.setattr(loop.TrainState, "improve", only_the_first_epoch_is_best)
    trained = []
    train_only(replace(tiny_config, epochs=3, max_batches=None), tmp_path / "run", progress=False,
               then=trained.append)  # fmt: skip
    (run,) = trained
    assert run.best.epoch == 1 and len(run.history) == 3
    saved = torch.load(run.run_dir / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(saved[name], value) for name, value in run.best.weights.items())
    aside = tmp_path / "aside"
    aside.mkdir()
    for name in ("config.json", "best.pt"):
        (run.run_dir / name).rename(aside / name)
    from_memory = finalize(run, robustness=False)
    predictions = (run.run_dir / "val_predictions.csv").read_text()
    for name in ("config.json", "best.pt"):
        (aside / name).rename(run.run_dir / name)
    from_files = finalize(replace(run, best=None), robustness=False)
    assert from_memory == from_files and from_memory["best_epoch"] == 1
    assert (run.run_dir / "val_predictions.csv").read_text() == predictions
