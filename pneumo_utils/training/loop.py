"""The training loop: epochs of training steps, each followed by scoring the evaluation sets,
choosing the checkpoint and saving last.pt, so that a run resumes after any stop. What it works
on is one Parts, built above it (setup.py); what it carries between epochs is one TrainState."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import torch
from tqdm.auto import tqdm

from pneumo_utils import model as models
from pneumo_utils.config import TrainConfig
from pneumo_utils.data.model_input import to_model_input
from pneumo_utils.runtime.device import autocast
from pneumo_utils.runtime.distributed import SINGLE, World
from pneumo_utils.training import averaging, checkpoints, epoch_log, objective, schedule
from pneumo_utils.training.metrics import auc_score, epoch_stats, predict_logits

# Steps between reads of the per-step numbers on the device, so that a GPU never waits for us.
READ_EVERY = 50


@dataclass(frozen=True)
class Parts:
    """What one training works on, built once before the first epoch (setup.py)."""

    cfg: TrainConfig
    device: torch.device
    amp_dtype: torch.dtype | None
    model: torch.nn.Module
    forward_model: torch.nn.Module  # the model, or its DDP / torch.compile wrapper
    average: torch.nn.Module | None  # --ema: the model's average (averaging.py), after each step
    scored: torch.nn.Module  # what is scored, chosen and saved: the model, or its average
    optimizer: torch.optim.Optimizer
    scheduler: object | None
    scaler: torch.amp.GradScaler
    criterion: torch.nn.Module
    batches: object  # data/batches.TrainingBatches: start_epoch, batch_size, iteration
    eval_sets: dict  # name -> data/batches.HeldSplit: in_order(batch_size, world)
    select: Callable[[dict, dict], dict]  # (row, {name: (labels, logits)}) -> selection scores
    class_names: tuple[str, ...]
    world: World = SINGLE  # this process among torchrun's


@dataclass
class TrainState:
    """Everything the loop carries from one epoch to the next, apart from the weights."""

    epochs_done: int = 0
    history: list[dict] = field(default_factory=list)  # one row per epoch, as history.csv
    timing: list[dict] = field(default_factory=list)  # one row per epoch, as timing.csv
    best_score: float = float("inf")  # the select_metric of best.pt, lower is better
    best_epoch: int = 0
    stale_epochs: int = 0  # epochs since best.pt improved
    stopped: bool = False  # early stopping fired

    def record(self, row: dict, seconds: float, images_per_s: float) -> None:
        self.epochs_done = row["epoch"]
        self.history.append(row)
        speed = dict(seconds=round(seconds, 2), train_images_per_s=round(images_per_s, 1))
        self.timing.append(dict(epoch=row["epoch"], **speed))

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


class NonFiniteLoss(Exception):
    """The loss was not finite at training step `args[0]` (0-based) of this epoch."""


def train_epochs(parts: Parts, run_dir, state: TrainState, progress: bool, interrupt):
    """Epochs after state.epochs_done to cfg.epochs (or early stopping): a BestEpoch, or None."""
    cfg, world, best = parts.cfg, parts.world, None
    writer = epoch_log.tensorboard(run_dir, state.epochs_done) if world.is_main else None
    for epoch in range(state.epochs_done + 1, cfg.epochs + 1):
        if state.stopped:
            break
        started = time.perf_counter()
        seed = cfg.seed * 100_003 + epoch - 1  # a resumed run repeats the epoch's randomness
        torch.manual_seed(seed + 1_000_003 * world.rank)
        parts.batches.start_epoch(seed, world.rank)
        if cfg.unfreeze_after is not None and epoch > cfg.unfreeze_after:
            parts = unfreeze(parts)
        logits, labels = world.gather(*train_one_epoch(parts, progress, interrupt))
        train_seconds = time.perf_counter() - started
        row = dict(epoch=epoch, status="ok", lr=parts.optimizer.param_groups[0]["lr"])
        row.update(epoch_stats(logits, labels, "train", parts.class_names))
        predictions = evaluate(parts, row)
        schedule.step(parts.scheduler, row["val_loss"])
        score = row[cfg.select_metric] * (1 if cfg.select_metric.endswith("loss") else -1)
        if state.improve(score, epoch):
            best = checkpoints.keep_best(parts.scored, epoch, predictions)
            if world.is_main:
                checkpoints.save_best(run_dir, best)
        state.stopped = state.out_of_patience(cfg.early_stopping)
        seconds = time.perf_counter() - started
        state.record(row, seconds, images_per_s=len(labels) / train_seconds)
        if world.is_main:
            checkpoints.save_last(run_dir, dict(
                model=parts.model.state_dict(), optimizer=parts.optimizer.state_dict(),
                scheduler=parts.scheduler.state_dict() if parts.scheduler else None,
                scaler=parts.scaler.state_dict(), state=asdict(state),
                average=parts.average.state_dict() if parts.average is not None else None,
            ))  # fmt: skip
            epoch_log.write_epoch(run_dir, state.history, state.timing, writer)
        print(epoch_log.summary_line(row, cfg, seconds, state.best_epoch == epoch,
                                     state.stopped), flush=True)  # fmt: skip
    if world.is_main:
        epoch_log.close_tensorboard(writer, cfg, state.best_epoch, state.best_score)
    return best


def train_one_epoch(parts: Parts, progress: bool, interrupt=None):
    """One pass over the training batches; the logits and labels it saw. The per-step numbers stay
    on the device, read every READ_EVERY steps: a non-finite loss is found there (the epoch is
    not saved). `interrupt` (runtime/interrupt.py) raises a recorded Ctrl-C before a batch."""
    cfg, world = parts.cfg, parts.world
    models.train_mode(parts.model)
    all_logits, all_labels, finite, losses = [], [], [], []
    total = min(len(parts.batches), cfg.max_batches or len(parts.batches))
    batches = tqdm(parts.batches, desc="train", total=total, leave=False, disable=not progress)
    for step, (images, labels) in enumerate(batches):
        if step >= total:
            break
        if interrupt is not None:
            interrupt.check()
        inputs = to_model_input(images, parts.device, cfg.channels_last)
        labels = labels.to(parts.device, non_blocking=True)
        with autocast(parts.device, parts.amp_dtype):
            logits = parts.forward_model(inputs)
            loss = world.batch_loss(parts.criterion, logits.float(), labels)
            loss = loss + objective.consistency_loss(logits.float(), cfg.consistency)
        parts.optimizer.zero_grad(set_to_none=True)
        parts.scaler.scale(loss).backward()
        parts.scaler.step(parts.optimizer)
        parts.scaler.update()
        if parts.average is not None:
            averaging.update_average(parts.average, parts.model, cfg.ema)
        all_logits.append(logits.detach().float())
        all_labels.append(labels)
        losses.append(loss.detach())
        finite.append(torch.isfinite(losses[-1]))
        if (step + 1) % READ_EVERY == 0 or step + 1 == total:
            _stop_if_non_finite(world, finite, first_step=step + 1 - len(finite))
            batches.set_postfix(loss=f"{torch.stack(losses[-len(finite):]).mean():.3f}",
                                refresh=False)  # fmt: skip
            finite = []
    return torch.cat(all_logits).cpu().numpy(), torch.cat(all_labels).cpu().numpy()


def _stop_if_non_finite(world: World, finite: list[torch.Tensor], first_step: int) -> None:
    """Raise NonFiniteLoss at this window's first step whose loss was not finite on any rank."""
    flags = torch.stack(finite)
    if world.all_true(flags.all()):
        return
    local = torch.where(flags.all(), len(finite), (~flags).int().argmax())
    raise NonFiniteLoss(first_step + world.smallest(local))


def evaluate(parts: Parts, row: dict) -> dict:
    """Loss, accuracy (overall and per class) and AUC of every evaluation set and the selection
    scores of parts.scored, into `row`; the predictions, name -> (labels, logits), gathered."""
    # Under torchrun each rank scores its share with the bare model (DDP would wait at each
    # batch); with --ema the average is scored, which no wrapper runs.
    bare = parts.world.distributed or parts.average is not None
    model = parts.scored if bare else parts.forward_model
    parts.world.share_buffers(model)
    predictions = {}
    for name, held in parts.eval_sets.items():
        batches = held.in_order(2 * parts.batches.batch_size, parts.world)
        logits, labels = parts.world.gather_in_order(*predict_logits(
            model, batches, parts.device, parts.amp_dtype, parts.cfg.channels_last))  # fmt: skip
        row.update(epoch_stats(logits, labels, name, parts.class_names))
        row[f"{name}_auc"] = auc_score(labels, logits)
        predictions[name] = (labels, logits)
    row.update(parts.select(row, predictions))
    return predictions


def unfreeze(parts: Parts) -> Parts:
    """Train every layer from now on; under DDP, which syncs only what it wrapped, wrap again."""
    if all(p.requires_grad for p in parts.model.parameters()):
        return parts
    models.set_frozen(parts.model, "none")
    if not parts.world.distributed:
        return parts
    wrapped = parts.world.wrap(parts.model, parts.device, parts.cfg.compile)
    return replace(parts, forward_model=wrapped)
