"""What a training is built from, once, before its first epoch: device and precision (checked
against a resumed run), seeds, model, data, config.json, optimiser, schedule, loss, and the
splits held on the device."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch

from pneumo_utils import model as models
from pneumo_utils.config import TrainConfig
from pneumo_utils.data.augment import Augmentation
from pneumo_utils.data.batches import TrainingBatches, hold, hold_for_evaluation
from pneumo_utils.data.dataset import XrayData, block_families, load_run_data, split_frame
from pneumo_utils.runtime.device import (
    autocast_dtype,
    dtype_name,
    hardware_summary,
    pick_device,
    seed_everything,
    tune_backends,
)
from pneumo_utils.runtime.distributed import World
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.splits import BLOCKS_OF_RULE, EVALUATED_SPLITS, FAMILY_RULES, POOLED_VAL
from pneumo_utils.tasks import get_task
from pneumo_utils.training import averaging, resume, runs, schedule
from pneumo_utils.training.loop import Parts
from pneumo_utils.training.metrics import family_blocks, worst_block_scores


def build(cfg: TrainConfig, run_dir: Path, world: World, progress: bool):
    """The parts of a training (loop.Parts), in the order they depend on each other, the data
    they were taken from, and where ImageNet weights came from (None for scratch)."""
    device, amp_dtype = _device_and_precision(cfg, run_dir, world)
    seed_everything(cfg.seed)
    # Rank 0 fetches ImageNet weights and builds the cache; the other ranks then read them.
    model, provenance = world.main_first(lambda: _new_model(cfg))
    data = world.main_first(lambda: load_run_data(cfg, progress=progress))
    if world.is_main:  # on a resume, the weights the run started from (config.json's)
        provenance = resume.write_config_if_new(
            cfg, run_dir, data, provenance, device, amp_dtype, world
        )
    model = model.to(device, memory_format=torch.channels_last if cfg.channels_last else None)
    if cfg.sync_bn and world.distributed:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    average = averaging.new_average(model) if cfg.ema else None
    parts = Parts(
        cfg=cfg,
        device=device,
        amp_dtype=amp_dtype,
        model=model,
        forward_model=world.wrap(model, device, cfg.compile),
        average=average,
        scored=average if average is not None else model,
        optimizer=optimizer,
        scheduler=schedule.build(cfg, optimizer),
        scaler=torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16),
        criterion=_criterion(cfg, data, device),
        batches=TrainingBatches(
            hold(data, "train", device),
            world.batch_per_process(cfg.batch_size),
            Augmentation(cfg),
            weighted=cfg.weighted_sampling,
            views=2 if cfg.consistency else 1,
            world=world,
        ),
        eval_sets=hold_for_evaluation(cfg, data, EVALUATED_SPLITS, device),
        select=partial(selection_scores, families=block_families(data)),
        class_names=data.class_names,
        world=world,
    )
    return parts, data, provenance


def selection_scores(row: dict, predictions: dict, families: dict[str, np.ndarray]) -> dict:
    """What the checkpoint may be chosen by (splits.SELECT_METRICS), beyond each split's own
    loss: the mean loss of the pooled validation sets, and each worst-block rule's balanced
    accuracy (training/metrics.py) over its blocks (splits.BLOCKS_OF_RULE), the family rules'
    split by NORMAL file family (`families`: each block's, by block)."""
    pooled = sum(row[f"{split}_loss"] for split in POOLED_VAL) / len(POOLED_VAL)
    scores = dict(pooled_val_loss=pooled)
    for rule, splits in BLOCKS_OF_RULE.items():
        blocks = [predictions[split] for split in splits]
        if rule in FAMILY_RULES:
            blocks = family_blocks(blocks, [families[split] for split in splits])
        scores.update(worst_block_scores(blocks, rule))
    return scores


def _device_and_precision(cfg: TrainConfig, run_dir: Path, world: World):
    """This process's device and autocast dtype; a resumed run must keep both, and its world."""
    device = world.device(pick_device(cfg.device))
    amp_dtype = autocast_dtype(device, cfg.amp)
    resume.check_same_precision(run_dir, amp_dtype)
    resume.check_same_world(run_dir, world)
    if cfg.sync_bn and world.distributed and device.type != "cuda":
        raise UserError("--sync-bn needs CUDA (PyTorch's SyncBatchNorm runs on GPUs only)")
    tune_backends(device, cfg.deterministic)
    return device, amp_dtype


def _new_model(cfg: TrainConfig):
    """ResNet-18 for the run's task: the model and where its starting weights came from."""
    imagenet, provenance = None, None
    if cfg.model == "pretrained":
        imagenet, provenance = models.load_imagenet_weights(cfg.weights)
    model = models.build_model(
        cfg.model,
        dropout=cfg.dropout,
        imagenet=imagenet,
        freeze=cfg.freeze,
        num_classes=len(get_task(cfg.task).class_names),
    )
    return model, provenance


def _criterion(cfg: TrainConfig, data: XrayData, device: torch.device) -> torch.nn.Module:
    """Cross-entropy, each class weighted by its inverse frequency in training if asked."""
    weights = None
    if cfg.class_weighting:
        labels = data.splits["train"]["label"].to_numpy()
        weights = class_weights(labels, len(data.class_names)).to(device)
    return torch.nn.CrossEntropyLoss(weight=weights)


def describe(parts: Parts, data: XrayData) -> str:
    """The line a new run starts with: model, machine, precision, processes, split sizes."""
    splits = ("train", *EVALUATED_SPLITS)
    sizes = " / ".join(f"{len(split_frame(data, s))} {s}" for s in splits)
    world = parts.world
    processes = (
        f", {world.size} processes of {world.batch_per_process(parts.cfg.batch_size)} images "
        "per batch"
        if world.distributed
        else ""
    )
    line = (
        f"training {parts.cfg.model} on {hardware_summary(parts.device)} ({parts.device}, "
        f"autocast {dtype_name(parts.amp_dtype)}{processes}): {sizes} images"
    )
    root, n_images = data.records.attrs["root"], sum(map(len, data.splits.values()))
    if reasons := runs.not_a_result(parts.cfg, None, root, n_images):
        line += f"\nnot a result: {reasons}"
    return line


def class_weights(labels: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights, scaled so that they average to 1 over the samples."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    weights = len(labels) / (n_classes * counts)
    return torch.as_tensor(weights, dtype=torch.float32)
