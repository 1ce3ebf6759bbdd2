"""The training loop: one run of a TrainConfig into a run folder, resumable after any stop.

The loop's state (epochs done, history, timing, the best epoch so far, whether early stopping
fired) is one TrainState, saved with the weights after every epoch and restored as a unit.
Running the same command again resumes from last.pt; a finished run is left as it is.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

from pneumo_utils import model as models
from pneumo_utils.config import TrainConfig
from pneumo_utils.data.dataset import XrayData
from pneumo_utils.data.loaders import to_model_input
from pneumo_utils.runtime import distributed
from pneumo_utils.runtime.device import autocast
from pneumo_utils.runtime.distributed import SINGLE, World
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.runtime.interrupt import StopAtNextBatch
from pneumo_utils.splits import EVALUATED_SPLITS, POOLED_VAL, WORST_BLOCKS
from pneumo_utils.training import checkpoints, epoch_log, resume, runs, setup
from pneumo_utils.training.metrics import (
    auc_score,
    epoch_stats,
    predict_logits,
    worst_block_scores,
)
from pneumo_utils.training.setup import Parts


@dataclass
class TrainState:
    """Everything the loop carries from one epoch to the next, apart from the weights."""

    epochs_done: int = 0
    history: list[dict] = field(default_factory=list)  # one row per epoch, as history.csv
    timing: list[dict] = field(default_factory=list)  # one row per epoch, as timing.csv
    best_score: float = math.inf  # the select_metric of best.pt, lower is better
    best_epoch: int = 0
    stale_epochs: int = 0  # epochs since best.pt improved
    stopped: bool = False  # early stopping fired

    def record(self, row: dict, seconds: float, images_per_s: float) -> None:
        """An epoch done: its history row and its timing."""
        self.epochs_done = row["epoch"]
        self.history.append(row)
        self.timing.append(
            dict(epoch=row["epoch"], seconds=round(seconds, 2),
                 train_images_per_s=round(images_per_s, 1))
        )  # fmt: skip

    def out_of_patience(self, patience: int | None) -> bool:
        """Early stopping: `patience` epochs without a better score (never when None)."""
        return patience is not None and self.stale_epochs >= patience

    def improve(self, score: float, epoch: int) -> bool:
        """Record an epoch's score; True when it is the best so far."""
        if score < self.best_score:
            self.best_score, self.best_epoch, self.stale_epochs = score, epoch, 0
            return True
        self.stale_epochs += 1
        return False


# Steps between the loop's reads of the per-step numbers on the device (finite-loss check,
# progress bar).
READ_EVERY = 50


class NonFiniteLoss(Exception):
    def __init__(self, step: int):
        super().__init__(step)
        self.step = step


# ----------------------------------------------------------------------------- the loop


def train_one_epoch(
    model, loader, criterion, optimizer, scaler, device, amp_dtype, cfg, progress, world=SINGLE,
    interrupt=None,
):  # fmt: skip
    """One pass over the training set; returns the logits and labels it saw. `interrupt`
    (interrupt.StopAtNextBatch) raises a recorded Ctrl-C before the next batch.

    The per-step numbers stay on the device: the loop reads them every READ_EVERY steps (the
    finite-loss check and the progress bar), not after every step, so a GPU is not made to
    wait for the host hundreds of times a second. (fp16 autocast on CUDA still waits once a
    step: GradScaler checks the gradients for inf.) A non-finite loss is found at the next
    read: the steps taken after it change nothing that lasts, since the epoch is not saved."""
    models.train_mode(model)
    all_logits, all_labels, finite, losses = [], [], [], []
    total = len(loader) if cfg.max_batches is None else min(len(loader), cfg.max_batches)
    batches = tqdm(loader, desc="train", total=total, leave=False, disable=not progress)
    for step, (images, labels) in enumerate(batches):
        if step >= total:
            break
        if interrupt is not None:
            interrupt.check()
        inputs = to_model_input(images, device, cfg.channels_last)
        labels = labels.to(device, non_blocking=True)
        with autocast(device, amp_dtype):
            logits = model(inputs)
            loss = world.batch_loss(criterion, logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        all_logits.append(logits.detach().float())
        all_labels.append(labels)
        losses.append(loss.detach())
        finite.append(torch.isfinite(losses[-1]))
        if (step + 1) % READ_EVERY == 0 or step + 1 == total:
            _stop_if_non_finite(world, finite, first_step=step + 1 - len(finite))
            window = torch.stack(losses[-len(finite) :]).mean()
            batches.set_postfix(loss=f"{window:.3f}", refresh=False)
            finite = []
    return torch.cat(all_logits).cpu().numpy(), torch.cat(all_labels).cpu().numpy()


def _stop_if_non_finite(world: World, finite: list[torch.Tensor], first_step: int) -> None:
    """Raise NonFiniteLoss at the first step of this window whose loss was not finite on any
    rank (every rank stops at the same step). Its epoch is never saved, so the steps taken after
    it change nothing that lasts."""
    flags = torch.stack(finite)
    if world.all_true(flags.all()):
        return
    # This rank's first non-finite step in the window (its length where there is none).
    local = torch.where(flags.all(), len(finite), (~flags).int().argmax())
    raise NonFiniteLoss(first_step + world.smallest(local))


@dataclass
class Fitted:
    """What `fit` leaves for the steps composed after it (app/pipeline.py): the run folder,
    and, in the process that has just trained it to the end, the data and device it used."""

    run_dir: Path
    already_finished: bool = False
    data: XrayData | None = None
    device: torch.device | None = None
    progress: bool = False


def fit(
    cfg: TrainConfig,
    out: str | os.PathLike,
    *,
    new_run: bool = False,
    fallback_checkpoint: bool = False,
    progress: bool | None = None,
) -> Fitted:
    """Train (or resume, or do nothing for a finished run) into the run folder `out`; under
    torchrun, one run over every process of the launch (runtime/distributed.py)."""
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
                return Fitted(run_dir, already_finished=True)
            parts = _train_locked(cfg, run_dir, world, fallback_checkpoint, progress)
    finally:
        distributed.leave(world)
    if not world.is_main:  # the run's scoring is rank 0's alone, every image once
        return Fitted(run_dir)
    return Fitted(run_dir, data=parts.data, device=parts.device, progress=progress)


def _train_locked(
    cfg: TrainConfig, run_dir: Path, world: World, fallback: bool, progress: bool
) -> Parts:
    """The epoch loop: train, score every evaluated split, select, save. Every rank computes
    the same row from gathered predictions; rank 0 alone writes."""
    if world.is_main:
        checkpoints.remove_leftovers(run_dir)
    parts = setup.build(cfg, run_dir, world, progress)
    state = _resume(parts, run_dir, fallback)
    writer = epoch_log.tensorboard(run_dir, state.epochs_done) if world.is_main else None
    # A Ctrl-C stops at the next batch (runtime/interrupt.py); torchrun passes it on itself.
    with contextlib.nullcontext() if world.distributed else StopAtNextBatch() as interrupt:
        for epoch in range(state.epochs_done + 1, cfg.epochs + 1):
            if state.stopped:
                break
            started = time.perf_counter()
            _seed_epoch(parts, epoch)
            if cfg.unfreeze_after is not None and epoch > cfg.unfreeze_after:
                parts = _unfreeze(parts)
            trained = _train_epoch(parts, run_dir, state, epoch, progress, interrupt)
            logits, labels = world.gather(*trained)
            train_seconds = time.perf_counter() - started
            row = dict(epoch=epoch, status="ok", lr=parts.optimizer.param_groups[0]["lr"])
            row.update(epoch_stats(logits, labels, "train", parts.data.class_names))
            row.update(_evaluate_splits(parts))
            _step_scheduler(parts.scheduler, row["val_loss"])
            score = row[cfg.select_metric] * (1 if cfg.select_metric.endswith("loss") else -1)
            if state.improve(score, epoch) and world.is_main:
                checkpoints.save_best(run_dir, parts.model.state_dict(), epoch)
            state.stopped = state.out_of_patience(cfg.early_stopping)
            seconds = time.perf_counter() - started
            state.record(row, seconds, images_per_s=len(labels) / train_seconds)
            if world.is_main:
                _save_epoch(parts, run_dir, state, writer)
            print(epoch_log.summary_line(row, cfg, seconds, state.best_epoch == epoch,
                                         state.stopped), flush=True)  # fmt: skip
    if world.is_main:
        epoch_log.close_tensorboard(writer, cfg, state.best_epoch, state.best_score)
    return parts


def _seed_epoch(parts: Parts, epoch: int) -> None:
    """Each epoch's randomness depends only on (seed, epoch, rank): a resumed run repeats it."""
    seed = parts.cfg.seed * 100_003 + epoch - 1 + 1_000_003 * parts.world.rank
    torch.manual_seed(seed)
    parts.generator.manual_seed(seed)
    if isinstance(parts.loaders["train"].sampler, DistributedSampler):
        parts.loaders["train"].sampler.set_epoch(epoch)


def _unfreeze(parts: Parts) -> Parts:
    """Train every layer from now on. DDP only averages the gradients of the parameters that
    were trainable when it wrapped the model, so the model is wrapped again (new parts)."""
    if all(p.requires_grad for p in parts.model.parameters()):
        return parts
    models.set_frozen(parts.model, "none")
    if not parts.world.distributed:
        return parts
    wrapped = setup.forward_model(parts.cfg, parts.world, parts.model, parts.device)
    return replace(parts, forward_model=wrapped)


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
        state = TrainState(**checkpoint["state"])
        print(f"resuming {run_dir} after epoch {state.epochs_done} of {parts.cfg.epochs}")
    if parts.world.is_main and (state.history or (run_dir / runs.HISTORY).exists()):
        runs.write_table(run_dir, runs.HISTORY, state.history)  # drops rows after the checkpoint
    if state.epochs_done == 0:
        print(setup.describe(parts))
    return state


def _train_epoch(
    parts: Parts, run_dir: Path, state: TrainState, epoch: int, progress: bool, interrupt=None
):
    """One pass over the training set; a non-finite loss is recorded and stops the run."""
    try:
        return train_one_epoch(
            parts.forward_model, parts.loaders["train"], parts.criterion, parts.optimizer,
            parts.scaler, parts.device, parts.amp_dtype, parts.cfg, progress, parts.world,
            interrupt,
        )  # fmt: skip
    except NonFiniteLoss as failure:
        row = dict(epoch=epoch, status=f"non-finite loss at step {failure.step + 1}")
        if parts.world.is_main:
            runs.write_table(run_dir, runs.HISTORY, [*state.history, row])
        raise UserError(
            f"training stopped: non-finite loss at epoch {epoch}, step {failure.step + 1} "
            f"(recorded in {run_dir / runs.HISTORY}); the last good checkpoint is intact: "
            "lower --lr, then rerun with --new-run"
        ) from None


def _evaluate_splits(parts: Parts) -> dict[str, float]:
    """Loss, accuracy (overall and per class, at 0.5) and AUC of every evaluated split. Under
    torchrun each rank scores its share with the bare model (DDP would wait for the others at
    every batch) and the predictions are gathered."""
    model = parts.model if parts.world.distributed else parts.forward_model
    parts.world.share_buffers(parts.model)
    row, blocks = {}, []
    for split in EVALUATED_SPLITS:
        logits, labels = parts.world.gather(*predict_logits(
            model, parts.loaders[split], parts.device, parts.amp_dtype, parts.cfg.channels_last,
        ))  # fmt: skip
        row.update(epoch_stats(logits, labels, split, parts.data.class_names))
        row[f"{split}_auc"] = auc_score(labels, logits)
        if split in WORST_BLOCKS:
            blocks.append((labels, logits))
    row["pooled_val_loss"] = sum(row[f"{split}_loss"] for split in POOLED_VAL) / len(POOLED_VAL)
    row.update(worst_block_scores(blocks))
    return row


def _save_epoch(parts: Parts, run_dir: Path, state: TrainState, writer) -> None:
    """last.pt (weights, optimiser, schedule, scaler and loop state as one unit), then the
    tables and TensorBoard: a kill at any point resumes from a consistent epoch."""
    checkpoints.save_last(
        run_dir,
        dict(
            model=parts.model.state_dict(),
            optimizer=parts.optimizer.state_dict(),
            scheduler=parts.scheduler.state_dict() if parts.scheduler else None,
            scaler=parts.scaler.state_dict(),
            state=asdict(state),
        ),
    )
    runs.write_table(run_dir, runs.HISTORY, state.history)
    runs.write_table(run_dir, runs.TIMING, state.timing)
    epoch_log.log_scalars(writer, state.history[-1])


def _step_scheduler(scheduler, val_loss: float) -> None:
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(val_loss)
    elif scheduler is not None:
        scheduler.step()
