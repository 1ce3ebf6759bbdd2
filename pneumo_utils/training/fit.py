"""One run of a TrainConfig into a run folder, around the loop (loop.py): claim and lock the
folder, build the parts (setup.py), resume from last.pt, run the epochs, and record a
non-finite loss. Under torchrun, one run over every process of the launch. Running the same
command again resumes; a finished run is left as it is."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pneumo_utils.config import TrainConfig
from pneumo_utils.data.dataset import XrayData
from pneumo_utils.runtime import distributed
from pneumo_utils.runtime.distributed import World
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.runtime.fileio import atomic_write_csv
from pneumo_utils.runtime.interrupt import StopAtNextBatch
from pneumo_utils.training import checkpoints, epoch_log, resume, runs, setup
from pneumo_utils.training.checkpoints import BestEpoch
from pneumo_utils.training.epoch_log import HISTORY
from pneumo_utils.training.loop import NonFiniteLoss, Parts, TrainState, train_epochs


@dataclass
class Run:
    """One run in memory, as training leaves it for the steps composed after it (`then`):
    its folder and configuration and, in the process that has just trained it to the end, the
    data and device it used, where its starting weights came from, its history and its best
    epoch (`best`: the weights and every evaluation set's predictions) where this process
    trained that epoch; after a resume past the best epoch, `best` is None and the scoring
    loads best.pt."""

    run_dir: Path
    config: TrainConfig
    already_finished: bool = False
    data: XrayData | None = None
    device: torch.device | None = None
    progress: bool = False
    weights_provenance: dict | None = None  # where ImageNet weights came from (config.json's)
    history: list[dict] = field(default_factory=list)
    best: BestEpoch | None = None

    @property
    def not_a_result(self) -> str | None:
        """Why its numbers are not a result (smoke run, stand-in weights, a sample), or None."""
        n_images = sum(map(len, self.data.splits.values()))
        root = self.data.records.attrs["root"]
        return runs.not_a_result(self.config, self.weights_provenance, root, n_images)


def train(
    cfg: TrainConfig,
    out: str | os.PathLike,
    *,
    new_run: bool = False,
    fallback_checkpoint: bool = False,
    progress: bool | None = None,
    then: Callable[[Run], object] | None = None,
) -> Path:
    """Train (or resume) a run into the run folder `out`, then hand the run in memory to `then`
    (the scoring, which the package's top wires in: app/pipeline.py); a finished run is left as
    it is. Under torchrun, `then` runs in rank 0 alone, every image once. Returns the folder."""
    started = time.perf_counter()
    run = _fit(cfg, out, new_run, fallback_checkpoint, progress)
    if run.already_finished:
        return run.run_dir
    if then is not None and run.data is not None:  # rank 0 of a launch, or the only process
        then(run)
    print(f"total wall time: {time.perf_counter() - started:.1f} s")
    return run.run_dir


def _fit(cfg: TrainConfig, out, new_run: bool, fallback_checkpoint: bool, progress) -> Run:
    """The training alone, into the run folder `out`: the run in memory, as `then` takes it."""
    cfg = resume.resolved_paths(cfg)
    cfg.check()
    world = distributed.join(cfg.device)
    progress = epoch_log.show_progress(progress) and world.is_main
    run_dir = Path(out).expanduser()
    try:
        with contextlib.ExitStack() as held:
            # Rank 0 checks the batch split and the folder and takes its lock; the others learn
            # the outcome (and stop without a word when it fails: rank 0 has said why).
            def claim() -> str:
                world.batch_per_process(cfg.batch_size)
                return resume.claim(cfg, run_dir, new_run, held)

            if world.from_main(claim) == "finished":
                return Run(run_dir, cfg, already_finished=True)
            run = _train_locked(cfg, run_dir, world, fallback_checkpoint, progress)
    finally:
        distributed.leave(world)
    return run if world.is_main else Run(run_dir, cfg)


def _train_locked(
    cfg: TrainConfig, run_dir: Path, world: World, fallback: bool, progress: bool
) -> Run:
    """Build, resume and train; every rank computes the same rows, rank 0 alone writes."""
    if world.is_main:
        checkpoints.remove_leftovers(run_dir)
    parts, data, provenance = setup.build(cfg, run_dir, world, progress)
    state = _resume(parts, run_dir, fallback)
    if state.epochs_done == 0:
        print(setup.describe(parts, data))
    # A Ctrl-C stops at the next batch (runtime/interrupt.py); torchrun passes it on itself.
    with contextlib.nullcontext() if world.distributed else StopAtNextBatch() as interrupt:
        try:
            best = train_epochs(parts, run_dir, state, progress, interrupt)
        except NonFiniteLoss as failure:
            _record_non_finite(run_dir, state, failure.args[0], world)
    return Run(run_dir, cfg, data=data, device=parts.device, progress=progress,
               weights_provenance=provenance, history=state.history, best=best)  # fmt: skip


def _resume(parts: Parts, run_dir: Path, fallback_checkpoint: bool) -> TrainState:
    """The loop state and weights of last.pt, or a fresh state; history.csv cut back to it."""
    state = TrainState()
    checkpoint = checkpoints.load_last(run_dir, fallback_checkpoint)
    if checkpoint is not None:
        parts.model.load_state_dict(checkpoint["model"])
        parts.optimizer.load_state_dict(checkpoint["optimizer"])
        if parts.scheduler is not None:
            parts.scheduler.load_state_dict(checkpoint["scheduler"])
        parts.scaler.load_state_dict(checkpoint["scaler"])
        if parts.average is not None:
            parts.average.load_state_dict(checkpoint["average"])
        state = TrainState(**checkpoint["state"])
        print(f"resuming {run_dir} after epoch {state.epochs_done} of {parts.cfg.epochs}")
    if parts.world.is_main and (state.history or (run_dir / HISTORY).exists()):
        atomic_write_csv(run_dir / HISTORY, state.history)  # drops rows after the checkpoint
    return state


def _record_non_finite(run_dir: Path, state: TrainState, step: int, world: World) -> None:
    """A non-finite loss: its epoch recorded in history.csv, and the run stopped with a line
    that says what to do. last.pt still holds the epoch before."""
    epoch = state.epochs_done + 1
    row = dict(epoch=epoch, status=f"non-finite loss at step {step + 1}")
    if world.is_main:
        atomic_write_csv(run_dir / HISTORY, [*state.history, row])
    raise UserError(
        f"training stopped: non-finite loss at epoch {epoch}, step {step + 1} "
        f"(recorded in {run_dir / HISTORY}); the last good checkpoint is intact: "
        "lower --lr, then rerun with --new-run"
    ) from None
