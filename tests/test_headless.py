"""The notebook runner on throwaway notebooks (a real kernel; a few seconds)."""

import nbformat
import pytest

from pneumo_utils.app.cli import main
from pneumo_utils.app.headless import run_notebooks
from pneumo_utils.runtime.errors import UserError


def _notebook(path, *sources):
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(notebook, path)


def test_missing_dataset_is_one_line_before_any_work(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("PNEUMO_DATA", str(tmp_path / "nowhere"))
    assert main(["notebooks"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--download" in error and "nowhere" in error


@pytest.fixture
def notebooks(monkeypatch, tmp_path, tiny_data):
    """An empty notebooks folder, with the tiny dataset and a private runs folder set."""
    monkeypatch.setenv("PNEUMO_DATA", str(tiny_data))
    monkeypatch.setenv("PNEUMO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("PNEUMO_PROFILE", "smoke")
    folder = tmp_path / "notebooks"
    folder.mkdir()
    return folder


def test_runs_in_order_echoes_progress_and_names_failures(notebooks, capsys):
    _notebook(notebooks / "01_first.ipynb", "print('epoch 1/2 summary')")
    _notebook(
        notebooks / "02_weights.ipynb",
        "class WeightsUnavailable(Exception): pass\nraise WeightsUnavailable('no weights')",
    )
    _notebook(notebooks / "03_broken.ipynb", "1 / 0")
    _notebook(notebooks / "04_last.ipynb", "print('still ran')")
    with pytest.raises(UserError, match="03_broken.ipynb failed"):
        run_notebooks(notebooks)
    out = capsys.readouterr().out
    assert out.index("epoch 1/2 summary") < out.index("still ran")
    assert "02_weights.ipynb stopped: WeightsUnavailable" in out
    executed = notebooks.parent / "runs" / "smoke" / "executed"
    assert sorted(p.name for p in executed.iterdir()) == [
        "01_first.ipynb",
        "02_weights.ipynb",
        "03_broken.ipynb",
        "04_last.ipynb",
    ]


def test_kernels_make_no_noise(notebooks, capfd):
    """No warning about unencrypted TCP per notebook, and no kernel left to die with us."""
    _notebook(notebooks / "01_a.ipynb", "print('a')")
    _notebook(notebooks / "02_b.ipynb", "print('b')")
    run_notebooks(notebooks)
    import time

    time.sleep(1)
    err = capfd.readouterr().err
    assert "TCP" not in err and "Parent appears to have exited" not in err, err
