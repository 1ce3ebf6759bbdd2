"""Training: the configuration, the run directory, and the epoch loop.

A run directory holds everything a run produced:

    config.json            configuration, data fingerprint, weights provenance, machine
    history.csv            one row per epoch: loss/accuracy overall and per class, train/val/test
    timing.csv             seconds and images/s per epoch (kept apart so history is reproducible)
    metrics.json           the best checkpoint on test, at a threshold chosen on validation
    {val,test}_predictions.csv
    last.pt, best.pt       checkpoints (last.prev.pt is the one before last.pt)
    tb/                    TensorBoard events

Running the same command again resumes from last.pt; a finished run is left as it is.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from . import models
from .data import (
    CLASS_NAMES,
    RESIZE_MODES,
    STRESSED_VAL,
    XrayData,
    class_weights,
    find_dataset_root,
    load_data,
    make_loader,
    split_frame,
    to_model_input,
)
from .device import (
    autocast,
    autocast_dtype,
    environment_info,
    hardware_summary,
    make_deterministic,
    pick_device,
    seed_everything,
)
from .errors import UserError
from .evaluate import (
    binary_metrics,
    choose_threshold,
    epoch_stats,
    pneumonia_probability,
    predict_logits,
    safe_auc,
)
from .fileio import atomic_torch_save, atomic_write_text, load_checkpoint
from .transforms import INTENSITY_NORMS, evaluation_transform, training_transform

SCHEDULERS = ("none", "cosine", "plateau")
# The validation score that picks best.pt (lowest loss or highest AUC), and the split whose
# predictions pick the decision threshold (Youden's J).
SELECT_METRICS = ("val_loss", "val_auc", "stressed_val_loss", "stressed_val_auc")
THRESHOLD_SPLITS = ("val", STRESSED_VAL)
# Every split scored after each epoch, in this order.
EVALUATED_SPLITS = ("val", STRESSED_VAL, "test")
# Settings that change how fast a run goes or where it reads from, not what it computes.
NOT_COMPARED_ON_RESUME = {"data", "workers", "device", "cache_dir", "pin_memory"}


@dataclass
class TrainConfig:
    """Every setting of a run. The defaults are the course report's protocol."""

    model: str = "scratch"
    data: str = "data/chest_xray"
    epochs: int = 40
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: str = "none"
    image_size: int = 224
    dropout: float = 0.5
    freeze: str = "none"
    unfreeze_after: int | None = None
    weights: str | None = None
    augment: bool = False
    resize: str = "squash"
    aspect_jitter: float = 0.0
    intensity_jitter: float = 0.0
    jpeg_quality_min: int | None = None
    intensity_norm: str = "none"
    class_weighting: bool = False
    weighted_sampling: bool = False
    val_fraction: float = 0.1
    keep_official_val: bool = False
    select_metric: str = "val_loss"
    threshold_on: str = "val"
    early_stopping: int | None = None
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    channels_last: bool = True
    pin_memory: bool = True  # CUDA only
    compile: bool = False
    deterministic: bool = False
    workers: int | None = None
    skip_bad_images: bool = False
    cache_dir: str | None = None
    max_batches: int | None = None

    def check(self) -> None:
        """Refuse impossible settings before any work starts."""
        problems = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "image_size": 32 <= self.image_size <= 1024,
            "dropout": 0 <= self.dropout < 1,
            "val_fraction": 0 < self.val_fraction < 0.5,
            "weight_decay": self.weight_decay >= 0,
            "aspect_jitter": 0 <= self.aspect_jitter <= 1,
            "intensity_jitter": 0 <= self.intensity_jitter <= 0.3,
            "jpeg_quality_min": self.jpeg_quality_min is None or 1 <= self.jpeg_quality_min <= 95,
        }
        for name, ok in problems.items():
            if not ok:
                raise UserError(f"--{name.replace('_', '-')} {getattr(self, name)} is out of range")
        for name, value, choices in [
            ("model", self.model, models.MODEL_NAMES),
            ("scheduler", self.scheduler, SCHEDULERS),
            ("select-metric", self.select_metric, SELECT_METRICS),
            ("freeze", self.freeze, models.FREEZE_CHOICES),
            ("resize", self.resize, RESIZE_MODES),
            ("intensity-norm", self.intensity_norm, INTENSITY_NORMS),
            ("threshold-on", self.threshold_on, THRESHOLD_SPLITS),
        ]:
            if value not in choices:
                raise UserError(f"unknown --{name} {value!r}: choose one of {', '.join(choices)}")
        if self.model == "scratch" and (self.weights or self.freeze != "none"):
            raise UserError("--weights and --freeze need --model pretrained")

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


class NonFiniteLoss(Exception):
    def __init__(self, step: int):
        super().__init__(step)
        self.step = step


# --------------------------------------------------------------------------- run directory


class RunLock:
    """An exclusive lock on a run directory, released by the OS when the process dies."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / ".lock"
        self.handle = None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks, run unguarded
            return self
        self.handle = open(self.path, "a+")
        try:
            fcntl.flock(self.handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            owner = self.handle.read().strip() or "another process"
            self.handle.close()
            raise UserError(
                f"{self.path.parent} is in use by another training ({owner}): wait for it to "
                "finish, or pass another --out"
            ) from None
        self.handle.truncate(0)
        self.handle.write(f"pid {os.getpid()}")
        self.handle.flush()
        return self

    def __exit__(self, *exc):
        if self.handle:
            self.handle.close()


def _config_differences(saved: dict, wanted: dict) -> list[str]:
    keys = (set(saved) | set(wanted)) - NOT_COMPARED_ON_RESUME
    return [
        f"{k}: {saved.get(k)!r} -> {wanted.get(k)!r}"
        for k in sorted(keys)
        if saved.get(k) != wanted.get(k)
    ]


def _set_aside(run_dir: Path) -> Path:
    """Move an existing run out of the way (nothing is deleted) and return where it went."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = run_dir.with_name(f"{run_dir.name}.old-{stamp}")
    run_dir.rename(target)
    return target


def _save_last(run_dir: Path, state: dict) -> None:
    """Write last.pt atomically, keeping the previous one as last.prev.pt."""
    last, previous = run_dir / "last.pt", run_dir / "last.prev.pt"
    temporary = run_dir / "last.next.pt"
    atomic_torch_save(temporary, state)
    if last.exists():
        os.replace(last, previous)
    os.replace(temporary, last)


def _load_last(run_dir: Path, fallback: bool) -> dict | None:
    last, previous = run_dir / "last.pt", run_dir / "last.prev.pt"
    if not last.exists():
        # A kill between the two renames of _save_last leaves only the previous checkpoint.
        return load_checkpoint(previous) if previous.exists() else None
    try:
        return load_checkpoint(last)
    except UserError:
        if not (fallback and previous.exists()):
            raise
        print(f"{last} is unreadable; resuming from {previous} as asked (--fallback-checkpoint)")
        return load_checkpoint(previous)


def _write_history(run_dir: Path, rows: list[dict], name: str = "history.csv") -> None:
    atomic_write_text(run_dir / name, pd.DataFrame(rows).to_csv(index=False))


def load_run_data(cfg: TrainConfig, data_dir: str | None = None, progress: bool = True) -> XrayData:
    """The dataset and splits of a run's configuration (from `data_dir` if given)."""
    return load_data(
        data_dir or cfg.data,
        cfg.image_size,
        val_fraction=cfg.val_fraction,
        seed=cfg.seed,
        keep_official_val=cfg.keep_official_val,
        skip_bad_images=cfg.skip_bad_images,
        cache_dir=cfg.cache_dir,
        progress=progress,
        resize=cfg.resize,
    )


def read_history(run_dir: str | os.PathLike) -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / "history.csv")


def completed_epochs(run_dir: str | os.PathLike) -> pd.DataFrame:
    """history.csv less the epochs that stopped on a non-finite loss: they have no metrics."""
    history = read_history(run_dir)
    return history[history["status"] == "ok"]


def read_config(run_dir: str | os.PathLike) -> dict:
    return json.loads((Path(run_dir) / "config.json").read_text())


def read_metrics(run_dir: str | os.PathLike) -> dict:
    return json.loads((Path(run_dir) / "metrics.json").read_text())


def read_predictions(run_dir: str | os.PathLike, split: str = "test") -> pd.DataFrame:
    return pd.read_csv(Path(run_dir) / f"{split}_predictions.csv")


def is_finished(run_dir: str | os.PathLike) -> bool:
    return (Path(run_dir) / "metrics.json").exists()


# --------------------------------------------------------------------------- the loop


def train_one_epoch(model, loader, criterion, optimizer, scaler, device, amp_dtype, cfg, progress):
    """One pass over the training set; returns per-sample-mean statistics like epoch_stats."""
    models.train_mode(model)
    all_logits, all_labels = [], []
    batches = tqdm(loader, desc="train", leave=False, disable=not progress, unit="batch")
    for step, (images, labels) in enumerate(batches):
        if cfg.max_batches is not None and step >= cfg.max_batches:
            break
        inputs = to_model_input(images, device, cfg.channels_last)
        labels = labels.to(device, non_blocking=True)
        with autocast(device, amp_dtype):
            logits = model(inputs)
            loss = criterion(logits.float(), labels)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(step)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        all_logits.append(logits.detach().float().cpu())
        all_labels.append(labels.cpu())
        batches.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    return torch.cat(all_logits).numpy(), torch.cat(all_labels).numpy()


def train(
    cfg: TrainConfig,
    out: str | os.PathLike,
    *,
    new_run: bool = False,
    fallback_checkpoint: bool = False,
    progress: bool = True,
) -> Path:
    """Train (or resume, or do nothing for a finished run) into the run directory `out`."""
    started = time.perf_counter()
    cfg.check()
    find_dataset_root(cfg.data)  # a wrong --data fails here, before the run folder exists
    run_dir = Path(out).expanduser()
    wanted = asdict(cfg)
    if (run_dir / "config.json").exists():
        saved = asdict(TrainConfig.from_dict(read_config(run_dir)["config"]))
        differences = _config_differences(saved, wanted)
        if differences and not new_run:
            raise UserError(
                f"{run_dir} holds a run with another configuration ({'; '.join(differences)}): "
                "rerun with its settings to resume, pass another --out, or pass --new-run to set "
                "the old run aside and start again"
            )
        if new_run:
            print(f"previous run moved to {_set_aside(run_dir)}")
        elif is_finished(run_dir):
            print(f"{run_dir} is already complete; nothing to do")
            return run_dir
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create run folder {run_dir} ({error.strerror})") from error

    with RunLock(run_dir):
        _train_locked(cfg, run_dir, fallback_checkpoint, progress)
    print(f"total wall time: {time.perf_counter() - started:.1f} s")
    return run_dir


def _train_locked(cfg: TrainConfig, run_dir: Path, fallback_checkpoint: bool, progress: bool):
    for leftover in run_dir.glob(".*.tmp-*"):  # from a write that a kill cut short
        leftover.unlink()
    device = pick_device(cfg.device)
    if cfg.deterministic:
        make_deterministic()
    seed_everything(cfg.seed)
    model, provenance = models.build_model(
        cfg.model, dropout=cfg.dropout, weights_file=cfg.weights, freeze=cfg.freeze
    )
    data = load_run_data(cfg, progress=progress)
    _check_or_write_config(cfg, run_dir, data, provenance, device)

    model = model.to(device, memory_format=torch.channels_last if cfg.channels_last else None)
    amp_dtype = autocast_dtype(device, cfg.amp)
    forward_model = torch.compile(model) if cfg.compile else model
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = _make_scheduler(cfg, optimizer)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    loss_weights = (
        class_weights(data.splits["train"]["label"].to_numpy()) if cfg.class_weighting else None
    )
    criterion = torch.nn.CrossEntropyLoss(
        weight=None if loss_weights is None else loss_weights.to(device)
    )

    history, timing = [], []
    best = dict(score=math.inf, epoch=-1, stale=0)
    start_epoch, stopped = 0, False
    state = _load_last(run_dir, fallback_checkpoint)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        history, timing, best = state["history"], state["timing"], state["best"]
        start_epoch, stopped = state["epoch"] + 1, state["stopped"]
        print(f"resuming {run_dir} after epoch {start_epoch} of {cfg.epochs}")
    if history or (run_dir / "history.csv").exists():
        _write_history(run_dir, history)  # drops rows written after the checkpoint was saved

    generator = torch.Generator()
    loaders = _make_loaders(cfg, data, device, generator)
    writer = _tensorboard(run_dir, start_epoch)
    if start_epoch == 0:
        print(
            f"training {cfg.model} on {hardware_summary(device)} ({device}, "
            f"autocast {amp_dtype or 'off'}), {len(data.splits['train'])} train / "
            f"{len(data.splits['val'])} val / {len(data.splits['test'])} test images"
        )

    for epoch in range(start_epoch, cfg.epochs):
        if stopped:
            break
        epoch_started = time.perf_counter()
        # Each epoch's randomness depends only on (seed, epoch): a resumed run repeats it exactly.
        torch.manual_seed(cfg.seed * 100_003 + epoch)
        generator.manual_seed(cfg.seed * 100_003 + epoch)
        if cfg.unfreeze_after is not None and epoch >= cfg.unfreeze_after:
            models.set_frozen(model, "none")
        try:
            logits, labels = train_one_epoch(
                forward_model,
                loaders["train"],
                criterion,
                optimizer,
                scaler,
                device,
                amp_dtype,
                cfg,
                progress,
            )
        except NonFiniteLoss as failure:
            row = dict(epoch=epoch + 1, status=f"non-finite loss at step {failure.step + 1}")
            _write_history(run_dir, [*history, row])
            raise UserError(
                f"training stopped: non-finite loss at epoch {epoch + 1}, step {failure.step + 1} "
                f"(recorded in {run_dir / 'history.csv'}); the last good checkpoint is intact: "
                "lower --lr, then rerun with --new-run"
            ) from None
        train_seconds, images_seen = time.perf_counter() - epoch_started, len(labels)
        row = dict(epoch=epoch + 1, status="ok", lr=optimizer.param_groups[0]["lr"])
        row.update(epoch_stats(logits, labels, "train"))
        for split in EVALUATED_SPLITS:
            logits, labels = predict_logits(
                forward_model, loaders[split], device, amp_dtype, cfg.channels_last, cfg.max_batches
            )
            row.update(epoch_stats(logits, labels, split))
            row[f"{split}_auc"] = safe_auc(labels, pneumonia_probability(logits))
        _step_scheduler(scheduler, row["val_loss"])

        score = row[cfg.select_metric] * (1 if cfg.select_metric.endswith("loss") else -1)
        if score < best["score"]:
            best = dict(score=score, epoch=epoch + 1, stale=0)
            atomic_torch_save(run_dir / "best.pt", dict(model=model.state_dict(), epoch=epoch + 1))
        else:
            best["stale"] += 1
        stopped = cfg.early_stopping is not None and best["stale"] >= cfg.early_stopping
        seconds = time.perf_counter() - epoch_started
        history.append(row)
        timing.append(
            dict(
                epoch=epoch + 1,
                seconds=round(seconds, 2),
                train_images_per_s=round(images_seen / train_seconds, 1),
            )
        )
        _save_last(
            run_dir,
            dict(
                model=model.state_dict(),
                optimizer=optimizer.state_dict(),
                scheduler=scheduler.state_dict() if scheduler else None,
                scaler=scaler.state_dict(),
                epoch=epoch,
                history=history,
                timing=timing,
                best=best,
                stopped=stopped,
            ),
        )
        _write_history(run_dir, history)
        _write_history(run_dir, timing, "timing.csv")
        for key, value in row.items():
            if key not in ("epoch", "status"):
                writer.add_scalar(key.replace("_", "/", 1), value, epoch + 1)
        writer.flush()
        print(_summary_line(row, cfg.epochs, seconds, best["epoch"] == epoch + 1), flush=True)
        if stopped:
            print(f"early stopping: no better {cfg.select_metric} for {cfg.early_stopping} epochs")
    writer.close()
    finalize(run_dir, data=data, device=device, progress=progress)


def _check_or_write_config(cfg, run_dir: Path, data: XrayData, provenance, device) -> None:
    """A new run records what produced it; a resumed one must be on the same dataset."""
    config_path = run_dir / "config.json"
    if config_path.exists():
        saved = read_config(run_dir)["data"]["fingerprint"]
        if saved != data.fingerprint:
            raise UserError(
                f"the dataset at {cfg.data} differs from the one {run_dir} was trained on (files "
                "added, removed or changed): point --data at the original, or pass --new-run"
            )
        return
    record = dict(
        config=asdict(cfg),
        data=dict(
            root=data.records.attrs["root"],
            fingerprint=data.fingerprint,
            splits={k: len(v) for k, v in data.splits.items()},
            skipped=data.skipped,
        ),
        weights=provenance,
        environment=environment_info(device),
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    atomic_write_text(config_path, json.dumps(record, indent=2))


def _make_loaders(cfg, data: XrayData, device, generator: torch.Generator) -> dict:
    """Train (shuffled by `generator`, transformed as configured) and the evaluated splits
    (in order, 2x batch, normalised only)."""
    workers = cfg.workers if cfg.workers is not None else (0 if device.type == "cpu" else 6)
    pin_memory = cfg.pin_memory and device.type == "cuda"
    loaders = dict(
        train=make_loader(
            data,
            "train",
            cfg.batch_size,
            transform=training_transform(cfg),
            shuffle=True,
            weighted_sampling=cfg.weighted_sampling,
            workers=workers,
            generator=generator,
            pin_memory=pin_memory,
        )
    )
    for split in EVALUATED_SPLITS:
        loaders[split] = make_loader(
            data,
            split,
            2 * cfg.batch_size,
            transform=evaluation_transform(cfg),
            workers=workers,
            generator=generator,
            pin_memory=pin_memory,
        )
    return loaders


def _make_scheduler(cfg: TrainConfig, optimizer):
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    if cfg.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.3, patience=3)
    return None


def _step_scheduler(scheduler, val_loss: float) -> None:
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(val_loss)
    elif scheduler is not None:
        scheduler.step()


def _tensorboard(run_dir: Path, start_epoch: int):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(run_dir / "tb"), purge_step=start_epoch + 1)


def _summary_line(row: dict, epochs: int, seconds: float, is_best: bool) -> str:
    return (
        f"epoch {row['epoch']:>3}/{epochs}  "
        f"train loss {row['train_loss']:.3f} acc {row['train_acc']:.3f} | "
        f"val loss {row['val_loss']:.3f} acc {row['val_acc']:.3f} | "
        f"stressed val loss {row['stressed_val_loss']:.3f} acc {row['stressed_val_acc']:.3f} | "
        f"test loss {row['test_loss']:.3f} acc {row['test_acc']:.3f} | "
        f"lr {row['lr']:.1e}  {seconds:.0f}s{'  *best*' if is_best else ''}"
    )


# --------------------------------------------------------------------------- after training


def load_trained_model(run_dir: str | os.PathLike, device: torch.device | None = None):
    """The best checkpoint of a run as an eval-mode model, with its config."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise UserError(
            f"{run_dir} is not a run folder (no config.json): pass the --out of a training"
        )
    if not (run_dir / "best.pt").exists():
        raise UserError(f"{run_dir} has no best.pt yet: let the training finish at least one epoch")
    cfg = TrainConfig.from_dict(read_config(run_dir)["config"])
    device = device or pick_device("auto")
    # Both models share one architecture; the checkpoint replaces any starting weights.
    model, _ = models.build_model("scratch", dropout=cfg.dropout)
    model.load_state_dict(load_checkpoint(run_dir / "best.pt")["model"])
    model = model.to(device, memory_format=torch.channels_last if cfg.channels_last else None)
    return model.eval(), cfg, device


def finalize(
    run_dir: Path,
    data: XrayData | None = None,
    device: torch.device | None = None,
    progress: bool = True,
) -> dict:
    """Evaluate the best checkpoint: threshold on cfg.threshold_on, metrics on test,
    predictions of every evaluated split saved."""
    model, cfg, device = load_trained_model(run_dir, device)
    data = data or load_run_data(cfg, progress=progress)
    amp_dtype = autocast_dtype(device, cfg.amp)
    probs, labels = {}, {}
    for split in EVALUATED_SPLITS:
        loader = make_loader(data, split, 2 * cfg.batch_size, transform=evaluation_transform(cfg))
        logits, labels[split] = predict_logits(
            model, loader, device, amp_dtype, cfg.channels_last, cfg.max_batches
        )
        probs[split] = pneumonia_probability(logits)
        frame = split_frame(data, split).iloc[: len(labels[split])]
        atomic_write_text(
            run_dir / f"{split}_predictions.csv",
            pd.DataFrame(
                dict(
                    relpath=frame["relpath"].to_numpy(),
                    label=labels[split],
                    p_pneumonia=probs[split],
                )
            ).to_csv(index=False),
        )
    threshold = choose_threshold(labels[cfg.threshold_on], probs[cfg.threshold_on])
    best_epoch = int(load_checkpoint(run_dir / "best.pt")["epoch"])
    metrics = dict(
        best_epoch=best_epoch,
        selected_on=cfg.select_metric,
        threshold_chosen_on=f"{cfg.threshold_on} (Youden's J)",
        test=binary_metrics(labels["test"], probs["test"], threshold),
        test_at_0_5=binary_metrics(labels["test"], probs["test"], 0.5),
        class_names=list(CLASS_NAMES),
    )
    atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=2))
    test = metrics["test"]
    print(
        f"best epoch {best_epoch}: test accuracy {test['accuracy']:.3f}, sensitivity "
        f"{test['sensitivity']:.3f}, specificity {test['specificity']:.3f}, AUC "
        f"{test['roc_auc']:.3f} (threshold {threshold:.3f} from {cfg.threshold_on})"
    )
    return metrics


def training_curves(run_dir: str | os.PathLike) -> pd.DataFrame:
    """history.csv in long form (epoch, split, class, metric, value) for plotting."""
    history = completed_epochs(run_dir)
    records = []
    for column in history.columns:
        parts = column.split("_")
        if parts[0] not in ("train", "val", "test") or parts[1] not in ("loss", "acc"):
            continue
        class_name = parts[2] if len(parts) > 2 else "overall"
        for epoch, value in zip(history["epoch"], history[column], strict=True):
            records.append(
                dict(epoch=epoch, split=parts[0], metric=parts[1], cls=class_name, value=value)
            )
    return pd.DataFrame(records)
