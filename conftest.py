"""Test-session environment, for unit tests and for the notebooks that nbval runs.

Unit tests get isolated caches and stand-in ResNet-18 weights in a temporary TORCH_HOME.
The notebooks run as a fresh clone shows them: the full profile, the committed runs in runs/,
no dataset (PNEUMO_DATA=none: the committed dataset summary and the embedded sample), and
their figures in a temporary folder, so that `pytest --nbval` compares their outputs with the
committed ones and leaves figures/ alone (tests/test_figures.py checks those).
"""

import os
import shutil
import tempfile
from pathlib import Path

import torch
from torchvision.models import resnet18


def save_stand_in_weights(torch_home: Path) -> Path:
    """A randomly initialised ResNet-18 state_dict under torchvision's cache name: NOT ImageNet."""
    path = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1234)
    torch.save(resnet18().state_dict(), path)
    return path


def pytest_configure(config):
    scratch = Path(tempfile.mkdtemp(prefix="pneumo-tests-"))
    config._pneumo_scratch = scratch
    os.environ["PNEUMO_CACHE"] = str(scratch / "cache")
    os.environ["TORCH_HOME"] = str(scratch / "torch_home")
    save_stand_in_weights(scratch / "torch_home")
    # What the notebooks see under nbval: the committed files only.
    os.environ["PNEUMO_PROFILE"] = "full"
    os.environ["PNEUMO_DATA"] = "none"
    os.environ["PNEUMO_FIGURES"] = str(scratch / "figures")
    os.environ.pop("PNEUMO_WEIGHTS", None)
    # PNEUMO_TEST_RUNS: other runs in their place, for the test that a changed run fails nbval.
    if os.environ.get("PNEUMO_TEST_RUNS"):
        os.environ["PNEUMO_RUNS"] = os.environ["PNEUMO_TEST_RUNS"]
    else:
        os.environ.pop("PNEUMO_RUNS", None)


def pytest_unconfigure(config):
    shutil.rmtree(getattr(config, "_pneumo_scratch", ""), ignore_errors=True)
