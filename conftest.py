"""Test-session environment, for unit tests and for the notebooks that nbval runs.

The notebooks run in the smoke profile, with stand-in ResNet-18 weights in a temporary
TORCH_HOME, and write runs and figures to a temporary folder. Their dataset is the first of:
PNEUMO_TEST_DATA, PNEUMO_DATA, ../shared/data/chest_xray_sample (this project's machines),
data/chest_xray (the README's folder), data/embedded_sample (76 images that ship with the code,
so a fresh clone runs every notebook).
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
NOTEBOOK_DATA_VARIABLES = ("PNEUMO_TEST_DATA", "PNEUMO_DATA")


def notebook_dataset(environ=os.environ, repo: Path = REPO, sample: Path = SAMPLE_DATA):
    """(dataset folder, None) for the notebooks under nbval, or (None, why they are skipped:
    only a PNEUMO_*DATA that names no folder, since the embedded sample ships with the code)."""
    for variable in NOTEBOOK_DATA_VARIABLES:
        if environ.get(variable):
            path = Path(environ[variable]).expanduser()
            if path.is_dir():
                return path, None
            return None, f"{variable}={path} is not a folder: point it at a dataset"
    readme_folder = repo / "data" / "chest_xray"
    for path in (sample, readme_folder, repo / "data" / "embedded_sample"):
        if path.is_dir():
            return path, None
    return None, (
        f"the notebooks need a dataset: none at {readme_folder} (the README's folder); get it "
        "with `python -m pneumo_utils download`, or set PNEUMO_DATA (or PNEUMO_TEST_DATA, for "
        "the tests only) to a dataset folder"
    )


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
    dataset, config._pneumo_no_data = notebook_dataset()
    if dataset is not None:
        os.environ["PNEUMO_DATA"] = str(dataset)
    os.environ.pop("PNEUMO_WEIGHTS", None)


def pytest_unconfigure(config):
    shutil.rmtree(getattr(config, "_pneumo_scratch", ""), ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    if config._pneumo_no_data is None:
        return
    skip = pytest.mark.skip(reason=config._pneumo_no_data)
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(skip)
