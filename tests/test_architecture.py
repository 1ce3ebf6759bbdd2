"""The package's layers hold (import-linter's contracts in pyproject.toml), a wrong-way import
breaks them, the package has the shape docs/architecture.md draws, and a wheel installed
without the source tree carries every subpackage."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "pneumo_utils"
LINT_IMPORTS = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")


def _contracts() -> list[dict]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    """lint-imports on the package under `root`, found there before any installed copy."""
    env = dict(os.environ, PYTHONPATH=str(root))
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache"], cwd=root, env=env, capture_output=True, text=True
    )


def test_the_layers_contract_has_at_least_five_layers_and_the_page_draws_them():
    layers = next(c for c in _contracts() if c["type"] == "layers")["layers"]
    assert len(layers) >= 5
    picture = (REPO / "docs" / "architecture.md").read_text().split("```")[1]
    modules = [module.strip() for layer in layers for module in layer.split("|")]
    names = [module.removeprefix("pneumo_utils.") for module in modules]
    drawn = [f"{name}/" if (PACKAGE / name).is_dir() else f"{name}.py" for name in names]
    positions = [picture.find(f" {name}") for name in drawn]
    assert -1 not in positions, f"docs/architecture.md's picture lacks a layer of {drawn}"
    assert positions == sorted(positions), "the picture's layers are not in the contract's order"


def test_the_contracts_hold():
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout[-3000:]
    assert "broken" in result.stdout and " 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "planted"),
    [
        ("data/dataset.py", "from pneumo_utils.app import cli"),  # a lower layer imports the app
        ("training/loop.py", "from pneumo_utils.analysis import robustness"),  # the loop, an extra
        ("training/checkpoints.py", "from pneumo_utils.training import loop"),  # a cycle
        ("training/loop.py", "from pneumo_utils.data import stresses"),  # the loop, the dataset
    ],
)
def test_a_wrong_way_import_breaks_the_contracts(tmp_path, module, planted):
    shutil.copytree(
        PACKAGE, tmp_path / "pneumo_utils", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(REPO / "pyproject.toml", tmp_path)
    target = tmp_path / "pneumo_utils" / module
    target.write_text(f"{planted}  # planted by the test\n{target.read_text()}")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout[-2000:]
    assert "BROKEN" in result.stdout
    assert Path(module).stem in result.stdout  # the report names the module that broke it


def _import_closure(module: str) -> dict[str, int]:
    """The package's modules that `module` imports, directly or not (the packages on the way
    included), each with its line count: what a reader of `module` may have to read."""
    import ast

    def source(name: str) -> Path | None:
        path = REPO / name.replace(".", "/")
        return next((p for p in (path.with_suffix(".py"), path / "__init__.py") if p.exists()),
                    None)  # fmt: skip

    closure, waiting = {}, [module]
    while waiting:
        name = waiting.pop()
        path = source(name)
        if name in closure or path is None:
            continue
        closure[name] = len(path.read_text().splitlines())
        parts = name.split(".")
        waiting += [".".join(parts[:i]) for i in range(1, len(parts))]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                waiting += [a.name for a in node.names if a.name.startswith("pneumo_utils")]
            elif isinstance(node, ast.ImportFrom) and "pneumo_utils" in (node.module or ""):
                waiting += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    return closure


def test_the_training_loop_reads_in_at_most_2500_lines():
    """Issue 33: loop.py and everything it imports inside the package, without the extras."""
    closure = _import_closure("pneumo_utils.training.loop")
    assert closure["pneumo_utils.training.loop"] <= 200
    assert sum(closure.values()) <= 2500, sorted(closure.items(), key=lambda kv: -kv[1])
    extras = ("analysis", "results", "plots", "app", "data.stresses", "data.pneumoniamnist",
              "data.dataset", "training.runs", "training.setup")  # fmt: skip
    assert not [m for m in closure if m.removeprefix("pneumo_utils.").startswith(extras)]
    assert "import_module" not in (PACKAGE / "training" / "loop.py").read_text()


def test_the_import_closure_counts_indirect_imports():
    closure = _import_closure("pneumo_utils.training.fit")
    assert "pneumo_utils.data.stresses" in closure  # fit -> setup -> dataset -> stresses
    assert "pneumo_utils.training.loop" in closure and "pneumo_utils" in closure


def test_the_top_level_holds_at_most_eight_modules_and_the_rest_is_in_subpackages():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 8, top
    subpackages = sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py"))
    assert subpackages == ["analysis", "app", "data", "plots", "results", "runtime", "training"]


def test_notebook_04_has_no_branch_and_builds_no_path():
    cells = json.loads((REPO / "notebooks" / "04_compare.ipynb").read_text())["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    lines = [line.strip() for line in code.splitlines()]
    assert not [line for line in lines if line.startswith(("if ", "elif ", "else"))]
    assert " if " not in code and "Path(" not in code and " / " not in code


def test_a_wheel_installed_without_the_source_tree_carries_every_subpackage(tmp_path):
    """A non-editable install from the wheel, in a fresh virtual environment; the dependencies
    come from this environment (by a path entry), the package only from the wheel."""
    source = tmp_path / "source"  # a copy: building writes build/ beside pyproject.toml
    shutil.copytree(PACKAGE, source / "pneumo_utils", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(wheels), str(source)],
        check=True, cwd=tmp_path,
    )  # fmt: skip
    wheel = next(wheels.glob("pneumo_utils-*.whl"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
    )
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    ours = [p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir()]
    # Plain path entries: .pth files there (this checkout's editable install) are not read.
    (Path(site) / "dependencies.pth").write_text("\n".join(ours) + "\n")
    check = textwrap.dedent(
        """
        import importlib, pkgutil, sys
        import pneumo_utils
        assert "site-packages" in pneumo_utils.__file__, pneumo_utils.__file__
        names = [m.name for m in pkgutil.walk_packages(pneumo_utils.__path__, "pneumo_utils.")
                 if not m.name.endswith("__main__")]
        for name in names:
            importlib.import_module(name)
        from importlib import resources
        assert resources.files("pneumo_utils.results").joinpath("published.csv").is_file()
        print(len(names))
        """
    )
    done = subprocess.run(
        [str(python), "-c", check], cwd=tmp_path, capture_output=True, text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    modules = {p for p in PACKAGE.rglob("*.py") if p.name != "__main__.py"}
    assert int(done.stdout.split()[-1]) == len(modules) - 1  # walk_packages omits the root
