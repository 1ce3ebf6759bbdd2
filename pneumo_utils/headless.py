"""`python -m pneumo_utils notebooks`: executes the numbered notebooks headless, in order
(getting the data first if asked), leaving their figures in figures/ (smoke: runs/smoke/)."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from .download import MENDELEY_URL, download_dataset
from .errors import UserError
from .settings import notebook_settings


class _EchoingClient(NotebookClient):
    """Also prints what the notebooks print (one summary line per training epoch), so the
    terminal shows progress during hours of headless training."""

    def output(self, outs, msg, display_id, cell_index):
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            print(msg["content"]["text"], end="", flush=True)
        return super().output(outs, msg, display_id, cell_index)


def run_notebooks(notebooks_dir: Path, download: bool = False) -> None:
    settings = notebook_settings()
    if not settings.data.exists():
        if not download:
            raise UserError(
                f"no dataset at {settings.data}: set PNEUMO_DATA to it, or add --download to fetch "
                "it (about 1.2 GB) into data/"
            )
        download_dataset(MENDELEY_URL, settings.data.parent)
    notebooks = sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise UserError(f"no numbered notebooks in {notebooks_dir}: run from the repository folder")
    executed_dir = settings.runs / settings.profile / "executed"
    executed_dir.mkdir(parents=True, exist_ok=True)
    failures = []
    print(
        f"training progress: tensorboard --logdir {settings.runs / settings.profile}, or the "
        f"history.csv of each run there"
    )
    for path in notebooks:
        print(f"running {path} (profile {settings.profile}, data {settings.data}) ...", flush=True)
        notebook = nbformat.read(path, as_version=4)
        client = _EchoingClient(
            notebook,
            timeout=None,
            kernel_name="python3",
            resources={"metadata": {"path": str(path.parent)}},
        )
        try:
            client.execute()
        except CellExecutionError as error:
            optional = error.ename == "WeightsUnavailable"
            print(
                f"{path.name} stopped: {error.ename}: {error.evalue}"
                + (" (the pretrained model is skipped)" if optional else "")
            )
            if not optional:
                failures.append(path.name)
        finally:
            nbformat.write(notebook, executed_dir / path.name)
    print(f"executed notebooks in {executed_dir}; figures in {settings.figures}")
    if failures:
        raise UserError(f"{', '.join(failures)} failed: open the executed copies in {executed_dir}")
