import subprocess
import sys

import pytest

from pneumo_utils.app.cli import build_parser, main


def _cli(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "pneumo_utils", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_every_config_field_has_a_flag_and_the_recipe_flags_exist():
    from dataclasses import fields

    from pneumo_utils.config import TrainConfig

    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for field in fields(TrainConfig):
        flag = field.metadata["flag"] or f"--{field.name.replace('_', '-')}"
        assert flag in text
    assert "--recipe" in text and "--config" in text and "--no-progress" in text


def test_help_explains_every_train_option():
    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    for option in (
        "--model",
        "--data",
        "--out",
        "--epochs",
        "--batch-size",
        "--lr",
        "--image-size",
        "--dropout",
        "--freeze",
        "--weights",
        "--seed",
        "--device",
        "--scheduler",
        "--class-weighting",
        "--weighted-sampling",
        "--augment",
        "--new-run",
        "--fallback-checkpoint",
        "--skip-bad-images",
    ):
        assert option in text


def _assert_one_clear_line(result, *fragments):
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and result.stderr.strip().endswith(errors[0]), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in errors[0]


def test_missing_data_folder_is_one_line(tmp_path):
    result = _cli(
        "train", "--model", "scratch", "--data", tmp_path / "nope", "--out", tmp_path / "r"
    )
    _assert_one_clear_line(result, "nope does not exist", "PNEUMO_DATA")
    assert not (tmp_path / "r").exists()


def test_bad_images_are_one_line(tiny_copy, tmp_path):
    (tiny_copy / "train" / "NORMAL" / "IM-0001-0001.jpeg").write_bytes(b"")
    (tiny_copy / "test" / "NORMAL" / "notes.txt").write_text("hi")
    result = _cli(
        "train",
        "--model",
        "scratch",
        "--data",
        tiny_copy,
        "--out",
        tmp_path / "r",
        "--image-size",
        "32",
        "--cache-dir",
        tmp_path / "cache",
    )
    _assert_one_clear_line(
        result,
        "2 bad file(s)",
        "IM-0001-0001.jpeg: empty file",
        "notes.txt: not an image file",
        "--skip-bad-images",
    )
    assert not (tmp_path / "r").exists()  # no empty run folder, no stray .lock


def test_predict_evaluate_and_user_errors(finished_run, tiny_data, tmp_path):
    image = tiny_data / "test" / "PNEUMONIA" / "person1000_bacteria_0.jpeg"
    result = _cli("predict", finished_run, image)
    assert result.returncode == 0, result.stderr
    header, row = result.stdout.strip().splitlines()
    assert header == "path,p_pneumonia,label,threshold,error"
    path, probability, label, threshold, error = row.split(",")
    assert path == str(image) and 0 <= float(probability) <= 1 and error == ""
    assert label in ("NORMAL", "PNEUMONIA")
    assert f"threshold {float(threshold):.4f}" in result.stderr

    _assert_one_clear_line(_cli("predict", finished_run, tmp_path / "x.jpeg"), "no image file at")
    (tmp_path / "broken.jpeg").write_bytes(b"\xff\xd8\xff garbage")
    result = _cli("predict", finished_run, tmp_path / "broken.jpeg")
    _assert_one_clear_line(result, "no image could be read")
    assert result.stdout == ""  # no CSV header before the error
    _assert_one_clear_line(_cli("predict", tmp_path, image), "not a run folder")

    result = _cli("evaluate", finished_run, "--split", "val")
    assert result.returncode == 0, result.stderr
    assert '"split": "val"' in result.stdout and '"accuracy"' in result.stdout
    assert '"acc_at_0_5"' in result.stdout  # the 0.5-threshold accuracy is named as such


def test_a_committed_run_without_checkpoints_says_so_and_how_to_get_one(finished_run, tmp_path):
    import shutil

    run = shutil.copytree(
        finished_run, tmp_path / "committed", ignore=shutil.ignore_patterns("*.pt")
    )
    for command in ("evaluate", "export", "robustness"):
        _assert_one_clear_line(
            _cli(command, run), "finished run whose checkpoints are not here", "--config"
        )


def test_predict_shows_its_progress_bar_on_a_terminal(finished_run, tiny_data, monkeypatch):
    from pneumo_utils.app import predict

    seen = {}
    monkeypatch.setattr(predict, "predict_command", lambda *a: seen.setdefault("progress", a[-1]))
    monkeypatch.setattr("sys.stderr.isatty", lambda: True, raising=False)
    main(["predict", str(finished_run), str(tiny_data)])
    assert seen["progress"] is True
    seen.clear()
    main(["predict", str(finished_run), str(tiny_data), "--no-progress"])
    assert seen["progress"] is False


def test_pretrained_without_weights_is_one_line(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    # An unroutable proxy keeps the download attempt off any real network.
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    result = _cli("train", "--model", "pretrained", "--data", tiny_data, "--out", tmp_path / "r")
    _assert_one_clear_line(result, "ImageNet weights", "resnet18-f37072fd.pth", "--weights FILE")


@pytest.mark.parametrize("argv", [["train", "--model", "vgg"], ["frobnicate"], ["train"]])
def test_argument_mistakes_exit_non_zero(argv, capsys):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_no_progress_and_logs_get_one_line_per_epoch(tiny_data, tmp_path):
    args = ["train", "--data", tiny_data, "--epochs", "2", "--batch-size", "16"]
    args += ["--image-size", "32", "--cache-dir", tmp_path / "cache"]
    quiet = _cli(*args, "--out", tmp_path / "a", "--no-progress")
    assert quiet.returncode == 0, quiet.stderr
    assert "\r" not in quiet.stderr + quiet.stdout and "batch/s" not in quiet.stderr
    assert [line[:11] for line in quiet.stdout.splitlines() if line.startswith("epoch")] == [
        "epoch   1/2",
        "epoch   2/2",
    ]
    # Without a terminal (a log file) the bars are off by default too.
    logged = _cli(*args, "--out", tmp_path / "b")
    assert "batch/s" not in logged.stderr and "\r" not in logged.stderr


def test_progress_follows_tqdm_disable(monkeypatch):
    from pneumo_utils.training.epoch_log import show_progress

    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert show_progress() is False
    assert show_progress(True) is True


def test_train_reads_the_dataset_from_pneumo_data(tmp_path):
    import os

    env = dict(os.environ, PNEUMO_DATA=str(tmp_path / "where-my-data-is"))
    result = subprocess.run(
        [sys.executable, "-m", "pneumo_utils", "train", "--recipe", "smoke", "--out",
         tmp_path / "r"],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    _assert_one_clear_line(result, "where-my-data-is does not exist")


def test_a_mistyped_recipe_gets_a_suggestion_not_a_usage_wall(tmp_path):
    result = _cli("train", "--recipe", "shortcut_all", "--out", tmp_path / "r")
    _assert_one_clear_line(result, "unknown recipe 'shortcut_all'", "did you mean 'shortcut-all'")
    assert "usage:" not in result.stderr


@pytest.mark.parametrize(
    "flags, fragments",
    [
        (["--epochs", "0"], ["--epochs 0 is out of range", "at least 1"]),
        (["--val-fraction", "0.45"], ["cannot be carved", "0.500"]),
        (["--class-weighting", "--weighted-sampling"], ["over-correct"]),
    ],
)
def test_impossible_settings_say_what_would_work(flags, fragments, tmp_path, tiny_data):
    result = _cli("train", "--data", tiny_data, "--out", tmp_path / "r", *flags)
    _assert_one_clear_line(result, *fragments)
