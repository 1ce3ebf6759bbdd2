"""Real signals on a real training process, then the same command again."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest

from pneumo_utils import train
from pneumo_utils.training.runs import read_history

# In the child: make the second write of last.pt hang after its bytes are out, so the test can
# kill the process in the middle of a checkpoint write.
HANG_IN_CHECKPOINT_WRITE = """
import sys, time, torch
real_save = torch.save
writes = []
def hanging_save(obj, f, *args, **kwargs):
    real_save(obj, f, *args, **kwargs)
    if isinstance(obj, dict) and "optimizer" in obj:
        writes.append(1)
        if len(writes) == 2:
            print("WRITING-CHECKPOINT", flush=True)
            time.sleep(600)
torch.save = hanging_save
from pneumo_utils.app.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture
def fault_config(tiny_config):
    return replace(tiny_config, epochs=4, augment=True)


def _command(config, out):
    return [
        "train",
        "--model",
        config.model,
        "--data",
        config.data,
        "--out",
        str(out),
        "--epochs",
        str(config.epochs),
        "--batch-size",
        str(config.batch_size),
        "--image-size",
        str(config.image_size),
        "--cache-dir",
        config.cache_dir,
        "--augment",
    ]


def _start(args, script=None):
    code = script or (
        "import sys; from pneumo_utils.app.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _wait_for_epochs(out, epochs, process, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (out / "history.csv").exists() and len(read_history(out)) >= epochs:
            return
        assert process.poll() is None, process.stdout.read()
        time.sleep(0.02)
    raise AssertionError("training made no progress")


def _finish(config, out):
    result = subprocess.run(
        [sys.executable, "-m", "pneumo_utils", *_command(config, out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture
def reference(fault_config, tmp_path):
    return train(fault_config, tmp_path / "reference", progress=False)


@pytest.mark.parametrize("signal_number", [signal.SIGINT, signal.SIGKILL])
def test_killed_mid_run_resumes_to_the_same_history(
    fault_config, reference, tmp_path, signal_number
):
    out = tmp_path / "run"
    process = _start(_command(fault_config, out))
    _wait_for_epochs(out, 1, process)
    process.send_signal(signal_number)
    output = process.communicate(timeout=60)[0]
    assert process.returncode != 0
    if signal_number == signal.SIGINT:
        assert "interrupted: run the same command again to resume" in output
        assert "Traceback" not in output
    assert "resuming" in _finish(fault_config, out)
    assert (out / "history.csv").read_text() == (reference / "history.csv").read_text()
    assert (out / "metrics.json").read_text() == (reference / "metrics.json").read_text()


def test_killed_during_a_checkpoint_write(fault_config, reference, tmp_path):
    out = tmp_path / "run"
    process = _start(_command(fault_config, out), HANG_IN_CHECKPOINT_WRITE)
    for line in process.stdout:
        if "WRITING-CHECKPOINT" in line:
            break
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert "resuming" in _finish(fault_config, out)
    assert (out / "history.csv").read_text() == (reference / "history.csv").read_text()
    assert not list(out.glob(".*tmp-*")), "temporary files left behind"
