"""Test-session environment, for unit tests and for the notebooks that nbval runs.

The notebooks run in the smoke profile on ../shared/data/chest_xray_sample (or PNEUMO_DATA),
with stand-in ResNet-18 weights in a temporary TORCH_HOME, and write runs and figures to a
temporary folder; they are skipped, with the reason, where no dataset is present.
"""

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import torch
from torchvision.models import resnet18

REPO = Path(__file__).resolve().parent
SAMPLE_DATA = (REPO / ".." / "shared" / "data" / "chest_xray_sample").resolve()
NO_SAMPLE = f"needs the original-resolution sample dataset at {SAMPLE_DATA}"


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
    # What the notebooks see under nbval: the smoke profile, runs and figures out of the repo.
    os.environ["PNEUMO_PROFILE"] = "smoke"
    os.environ["PNEUMO_RUNS"] = str(scratch / "runs")
    os.environ.setdefault("PNEUMO_DATA", str(SAMPLE_DATA))
    os.environ.pop("PNEUMO_WEIGHTS", None)


def pytest_unconfigure(config):
    shutil.rmtree(getattr(config, "_pneumo_scratch", ""), ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    if Path(os.environ["PNEUMO_DATA"]).is_dir():
        return
    skip = pytest.mark.skip(reason=f"notebooks need a dataset: {NO_SAMPLE} (or set PNEUMO_DATA)")
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(skip)
