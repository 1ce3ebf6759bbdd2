"""`python -m pneumo_utils notebooks`: executes the numbered notebooks headless, in order
(getting the data first if asked), leaving their figures in figures/ (smoke: runs/smoke/).
With `--save`, executes them on the committed files alone (the committed runs, the dataset
summary, the embedded sample) and saves them with their outputs in place: the outputs that
`pytest --nbval` compares, redrawn after new runs are committed."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import nbformat
from jupyter_core.utils import run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from pneumo_utils.app.download import MENDELEY_URL, download_dataset
from pneumo_utils.app.settings import NO_DATASET, notebook_settings
from pneumo_utils.runtime.errors import UserError


class _EchoingClient(NotebookClient):
    """Also prints what the notebooks print (one summary line per training epoch), so the
    terminal shows progress during hours of headless training."""

    def output(self, outs, msg, display_id, cell_index):
        if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
            print(msg["content"]["text"], end="", flush=True)
        return super().output(outs, msg, display_id, cell_index)


def _kernel_manager(sockets: Path):
    """A kernel that talks over local sockets in `sockets` where the OS has them (no TCP, so
    no warning about unencrypted TCP for every notebook); TCP on Windows."""
    from jupyter_client.manager import AsyncKernelManager

    if os.name != "posix":
        return AsyncKernelManager(kernel_name="python3")
    return AsyncKernelManager(kernel_name="python3", transport="ipc", ip=str(sockets / "kernel"))


def run_notebooks(notebooks_dir: Path, download: bool = False, save: bool = False) -> None:
    if save:  # what a fresh clone shows, whatever data and settings are here
        os.environ.update(PNEUMO_PROFILE="full", PNEUMO_DATA=NO_DATASET)
        for variable in ("PNEUMO_RUNS", "PNEUMO_FIGURES", "PNEUMO_WEIGHTS"):
            os.environ.pop(variable, None)
    settings = notebook_settings()
    if not settings.has_data and not settings.committed_files_only:
        if not download:
            raise UserError(
                f"no dataset at {settings.data}: set PNEUMO_DATA to it, or add --download to fetch "
                "it (about 1.2 GB) into data/"
            )
        download_dataset(MENDELEY_URL, settings.data.parent)
    notebooks = sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb"))
    if not notebooks:
        raise UserError(f"no numbered notebooks in {notebooks_dir}: run from the repository folder")
    executed_dir = notebooks_dir if save else settings.runs / settings.profile / "executed"
    executed_dir.mkdir(parents=True, exist_ok=True)
    failures = []
    print(
        f"training progress: tensorboard --logdir {settings.runs / settings.profile}, or the "
        f"history.csv of each run there"
    )
    sockets = Path(tempfile.mkdtemp(prefix="pneumo-kernel-"))
    try:
        for path in notebooks:
            if not _run_one(path, settings, executed_dir, sockets):
                failures.append(path.name)
    finally:
        shutil.rmtree(sockets, ignore_errors=True)
    print(f"executed notebooks in {executed_dir}; figures in {settings.figures}")
    if save:
        megabytes = sum(path.stat().st_size for path in notebooks) / 1e6
        print(f"the notebooks with their outputs: {megabytes:.1f} MB")
    if failures:
        raise UserError(f"{', '.join(failures)} failed: open the executed copies in {executed_dir}")


def _run_one(path: Path, settings, executed_dir: Path, sockets: Path) -> bool:
    """Execute one notebook, save the executed copy, shut its kernel down; False if it failed
    (a notebook stopped for want of ImageNet weights counts as skipped, not failed)."""
    print(f"running {path} (profile {settings.profile}, data {settings.data}) ...", flush=True)
    notebook = nbformat.read(path, as_version=4)
    kernel = _kernel_manager(sockets)
    client = _EchoingClient(
        notebook,
        km=kernel,
        timeout=None,
        kernel_name="python3",
        record_timing=False,  # no execution times in the saved outputs
        coalesce_streams=True,  # one output per stream, however the kernel chunked the text
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        client.execute()
        return True
    except CellExecutionError as error:
        optional = error.ename == "WeightsUnavailable"
        print(
            f"{path.name} stopped: {error.ename}: {error.evalue}"
            + (" (the pretrained model is skipped)" if optional else "")
        )
        return optional
    finally:
        nbformat.write(notebook, executed_dir / path.name)
        if run_sync(kernel.is_alive)():
            run_sync(kernel.shutdown_kernel)(now=True)
