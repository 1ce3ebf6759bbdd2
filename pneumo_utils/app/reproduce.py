"""`python -m pneumo_utils reproduce`: train every run the results table reports (skipping the
finished ones, resuming the partial ones), then render the results (the `results` command)
and run the notebooks."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

from pneumo_utils.app.settings import (
    COMMITTED_DATASET,
    default_data,
    default_runs,
    no_dataset_folder,
    repo_root,
)
from pneumo_utils.data.files import find_dataset_root
from pneumo_utils.data.pneumoniamnist import is_npz
from pneumo_utils.recipes import RECIPES
from pneumo_utils.results.folders import results_dir, run_folder
from pneumo_utils.results.tables import reported_runs
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.training import runs


@dataclass(frozen=True)
class PlannedRun:
    recipe: str
    seed: int
    folder: Path

    @property
    def state(self) -> str:
        return runs.run_state(self.folder)

    @property
    def log(self) -> Path:
        return self.folder.parent / "logs" / f"{self.folder.name}.log"


def plan(data: str | os.PathLike, only: list[str] | None = None) -> list[PlannedRun]:
    """The runs of the results table on `data`, in table order."""
    reported = reported_runs(data)
    unknown = sorted(set(only or ()) - set(reported))
    if unknown:
        raise UserError(
            f"--only {', '.join(unknown)}: not a recipe of the results table; choose from "
            f"{', '.join(reported)}"
        )
    return [
        PlannedRun(recipe, seed, run_folder(default_runs(), data, recipe, seed))
        for recipe, seeds in reported.items()
        if not only or recipe in only
        for seed in seeds
    ]


def _launch(run: PlannedRun, data: Path, threads: int, gpu: int | None) -> int:
    """One training in its own process, its output in the run's log file."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    command = [
        sys.executable, "-m", "pneumo_utils", "train", "--recipe", run.recipe,
        "--seed", str(run.seed), "--data", str(data), "--out", str(run.folder), "--no-progress",
    ]  # fmt: skip
    run.log.parent.mkdir(parents=True, exist_ok=True)
    print(f"start {run.folder.name} (log: {run.log})", flush=True)
    with open(run.log, "a") as log:
        code = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, env=env).returncode
    print(f"{'done' if code == 0 else f'FAILED (exit {code})'}: {run.folder.name}", flush=True)
    return code


def reproduce(
    data: str | os.PathLike | None = None,
    dry_run: bool = False,
    parallel: int = 1,
    only: list[str] | None = None,
    render: bool = True,
) -> None:
    data = Path(data).expanduser() if data else default_data()
    if data == no_dataset_folder():  # PNEUMO_DATA=none: the committed runs, nothing to train
        data = Path(COMMITTED_DATASET)
    planned = plan(data, only)
    print(f"the results table's runs on {data}:")
    for run in planned:
        print(f"{run.state:<8} {run.folder}")
    todo = [run for run in planned if run.state != "done"]
    print(f"{len(planned) - len(todo)} of {len(planned)} runs done; {len(todo)} to train")
    if not data.exists():
        results = results_dir(default_runs(), data).parent
        kept = sorted(p.name for p in results.glob("*") if any(p.glob("*/metrics.json")))
        hint = (f"no dataset at {data}: --data (or PNEUMO_DATA) names one; the runs kept here "
                f"are of {', '.join(kept) or 'no dataset'} ({results})")  # fmt: skip
        if dry_run:
            print(hint)
            return
        raise UserError(hint)
    if dry_run:
        return
    for run in todo:  # every recipe exists before hours of training start
        if run.recipe not in RECIPES:
            raise UserError(f"the results table names {run.recipe!r}, which is not in RECIPES")
    _train_all(todo, data, parallel)
    if render:
        _render(data)


def _train_all(todo: list[PlannedRun], data: Path, parallel: int) -> None:
    """The runs, `parallel` at once, each on a free GPU where there are several; a failed run
    stops nothing else and is named at the end."""
    gpus = torch.cuda.device_count()
    # Two trainings on two cores: one thread each beats two threads fighting in each.
    threads = max(1, (os.cpu_count() or 1) // parallel)
    # Several GPUs: each training takes a free one and gives it back when it ends, so no two
    # share a GPU while another idles.
    free_gpus: queue.Queue = queue.Queue()
    for gpu in range(gpus if gpus > 1 else 0):
        free_gpus.put(gpu)

    def launch(run: PlannedRun) -> int:
        gpu = free_gpus.get() if gpus > 1 else None
        try:
            return _launch(run, data, threads, gpu)
        finally:
            if gpu is not None:
                free_gpus.put(gpu)

    with ThreadPoolExecutor(max_workers=min(parallel, gpus) if gpus > 1 else parallel) as pool:
        codes = list(pool.map(launch, todo))
    failed = [run for run, code in zip(todo, codes, strict=True) if code != 0]
    if failed:
        raise UserError(
            f"{len(failed)} run(s) failed: {', '.join(run.folder.name for run in failed)}; see "
            f"{failed[0].log}, fix the cause and run the same command again (runs resume)"
        )


def _render(data: Path) -> None:
    """The results page and figures (the `results` command), then the notebooks."""
    if is_npz(find_dataset_root(data)):
        print("PneumoniaMNIST runs done: `python -m pneumo_utils results` renders them beside the "
              "chest_xray_224 runs")  # fmt: skip
        return
    from pneumo_utils.app.headless import run_notebooks
    from pneumo_utils.app.render import render_results
    from pneumo_utils.app.settings import notebook_settings

    os.environ["PNEUMO_DATA"] = str(data)
    render_results(notebook_settings())  # `python -m pneumo_utils results`
    run_notebooks(repo_root() / "notebooks")
