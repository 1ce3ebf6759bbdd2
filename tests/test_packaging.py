"""pyproject.toml and environment.yml must ask for the same packages; docs/architecture.md
names every module."""

import json
import re
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
# conda-forge names that differ from PyPI's
CONDA_NAMES = {"torch": "pytorch", "grad-cam": "grad-cam"}


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[]", requirement.strip(), maxsplit=1)[0].lower()


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    wanted = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    text = (REPO / "environment.yml").read_text().split("dependencies:", 1)[1]
    entries = [line.strip()[2:] for line in text.splitlines() if line.strip().startswith("- ")]
    listed = {_name(entry) for entry in entries if entry != "pip:" and not entry.startswith("-e")}
    listed = {next((pypi for pypi, conda in CONDA_NAMES.items() if conda == n), n) for n in listed}
    assert wanted <= listed, f"missing from environment.yml: {sorted(wanted - listed)}"
    assert listed - {"python", "pip"} <= wanted, (
        f"only in environment.yml: {sorted(listed - wanted)}"
    )


def test_torch_is_not_pinned_to_one_release():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        if _name(requirement) in ("torch", "torchvision"):
            assert "==" not in requirement and ">=" in requirement


def test_notebook_cell_ids_are_unique():
    # nbformat only warns on a repeated id and renumbers it, so the file changes on every save.
    for path in sorted((REPO / "notebooks").glob("*.ipynb")):
        ids = [cell["id"] for cell in json.loads(path.read_text())["cells"]]
        assert len(ids) == len(set(ids)), f"{path.name} repeats a cell id"


def test_console_script_license_and_notebook_dependencies_are_declared():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["scripts"]["pneumo"] == "pneumo_utils.app.cli:main"
    assert project["license"] == "MIT" and (REPO / "LICENSE").is_file()
    names = {_name(r) for r in project["dependencies"]}
    assert {"ipywidgets", "nbformat", "filelock", "safetensors"} <= names


def test_the_architecture_page_names_every_module():
    page = (REPO / "docs" / "architecture.md").read_text()
    package = REPO / "pneumo_utils"
    modules = {p.relative_to(package).as_posix() for p in package.rglob("*.py")}
    modules -= {m for m in modules if m.endswith("__init__.py")} - {"__init__.py"}
    missing = sorted(m for m in modules if m not in page)
    assert not missing, f"docs/architecture.md does not name {missing}"
