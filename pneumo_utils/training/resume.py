"""Starting or resuming a run in its folder: the settings, data, precision and number of
processes it must share with the run found there, its lock, and the config.json of a new run.

A finished run of the same settings and data is reused, never trained again; a different
one is refused unless --new-run sets it aside. Reporting code never needs this module.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

from pneumo_utils.config import TrainConfig
from pneumo_utils.data.dataset import XrayData, dataset_fingerprint
from pneumo_utils.data.files import find_dataset_root
from pneumo_utils.runtime.device import dtype_name, environment_info
from pneumo_utils.runtime.distributed import World
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.training import runs


def resolved_paths(cfg: TrainConfig) -> TrainConfig:
    """The configuration with absolute data, cache and weights paths, so that config.json
    means the same wherever a later step (train's scoring, evaluate, robustness, Grad-CAM)
    starts."""
    absolute = {
        name: str(Path(value).expanduser().resolve())
        for name in ("data", "cache_dir", "weights")
        if (value := getattr(cfg, name))
    }
    return replace(cfg, **absolute)


def claim(cfg: TrainConfig, run_dir: Path, new_run: bool, held: contextlib.ExitStack) -> str:
    """Check `run_dir` against the settings, then hold its lock (in `held`) and return "train",
    or return "finished" for a finished run of the same settings and data."""
    find_dataset_root(cfg.data)  # a wrong --data fails here, before the run folder exists
    if (run_dir / runs.CONFIG).exists():
        saved = runs.open_run(run_dir)
        differences = saved.config.differences(cfg)
        if differences and not new_run:
            raise UserError(
                f"{run_dir} holds a run with another configuration ({'; '.join(differences)}): "
                "rerun with its settings to resume, pass another --out, or pass --new-run to set "
                "the old run aside and start again"
            )
        if new_run:
            with runs.RunLock(run_dir):  # a training still running there keeps its folder
                print(f"previous run moved to {runs.set_aside(run_dir)}")
        else:
            # Before "already complete": a finished run on other data is no result of this data.
            check_same_data(cfg, run_dir, saved)
            if runs.is_finished(run_dir):
                print(
                    f"reusing the finished run {run_dir}: nothing is trained, its history.csv "
                    "and metrics.json are read (pass --new-run, or new_run=True, to train again)"
                )
                return "finished"
    created = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create run folder {run_dir} ({error.strerror})") from error

    def remove_if_empty(failure, *_):
        if failure and created and all(p.name == runs.LOCK for p in run_dir.iterdir()):
            # A run that failed before writing anything leaves no folder behind.
            (run_dir / runs.LOCK).unlink(missing_ok=True)
            run_dir.rmdir()

    held.push(remove_if_empty)  # runs after the lock below is released
    held.enter_context(runs.RunLock(run_dir))
    return "train"


def check_same_data(cfg: TrainConfig, run_dir: Path, saved: runs.SavedRun) -> None:
    """A run is only ever shown as a result of the data it was trained on."""
    fingerprint = dataset_fingerprint(cfg.data, saved.data.get("skipped"), cfg.task)
    if fingerprint != saved.data["fingerprint"]:
        raise UserError(
            f"the dataset at {cfg.data} differs from the one {run_dir} was trained on "
            f"({saved.data['root']}, {sum(saved.data['splits'].values())} images in its splits; "
            "files added, removed or changed): point --data at that dataset, pass another --out, "
            "or pass --new-run to set the old run aside and train on this data"
        )


def check_same_precision(run_dir: Path, amp_dtype) -> None:
    """A run resumes in the precision it started in: a silent switch would change its numbers
    mid-run (and a CPU or bf16 run has no GradScaler state for an fp16 device to load)."""
    if not (run_dir / runs.CONFIG).exists():
        return
    saved = runs.open_run(run_dir).environment.get("autocast")
    if saved is not None and saved != dtype_name(amp_dtype):
        raise UserError(
            f"{run_dir} was trained with autocast {saved}; {dtype_name(amp_dtype)} here would "
            "change its numbers mid-run: resume it on the kind of device it started on (its "
            "config.json names it), pass another --out, or pass --new-run to start again here"
        )


def check_same_world(run_dir: Path, world: World) -> None:
    """A run resumes with the number of processes it started with: its sampler shards and
    per-process batches (so its numbers) depend on it."""
    if not (run_dir / runs.CONFIG).exists():
        return
    record = json.loads((run_dir / runs.CONFIG).read_text())
    saved = record.get("distributed", {}).get("world_size", 1)  # runs from before torchrun: 1
    if saved != world.size:
        raise UserError(
            f"{run_dir} was trained on {saved} process(es) and this launch has {world.size}: "
            f"resume it with torchrun --nproc_per_node={saved} (1: without torchrun), pass "
            "another --out, or pass --new-run to start again"
        )


def write_config_if_new(
    cfg, run_dir: Path, data: XrayData, provenance, device, amp_dtype, world: World
) -> dict | None:
    """A new run records what produced it. A resumed one was checked against its config.json
    (settings and dataset) before the lock was taken, and on its precision and world size.
    Where the run's starting weights came from, as its config.json records it."""
    if (run_dir / runs.CONFIG).exists():
        return runs.open_run(run_dir).weights
    runs.write_config(
        run_dir,
        dict(
            config=asdict(cfg),
            data=dict(
                root=data.records.attrs["root"],
                fingerprint=data.fingerprint,
                splits={k: len(v) for k, v in data.splits.items()},
                skipped=data.skipped,
            ),
            weights=provenance,
            environment=environment_info(device, amp_dtype, runs_folder=run_dir.parent),
            distributed=world.record(cfg.batch_size),
            created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        ),
    )
    return provenance
