"""The configuration of a run: TrainConfig, every setting with its limits.

Every setting is a TrainConfig field; its metadata (help text, choices, group) is all the
command line needs, so `python -m pneumo_utils train` has one flag per field, generated.
The defaults are the course report's protocol; recipes.py names sets of changes to them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from pneumo_utils.resnet import FREEZE_CHOICES, IMAGENET_WEIGHTS_FILE, MODEL_NAMES
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.splits import SELECT_METRICS, THRESHOLD_SPLITS
from pneumo_utils.tasks import TASKS

SCHEDULERS = ("none", "cosine", "plateau", "step")
RESIZE_MODES = ("squash", "pad", "crop")
INTENSITY_NORMS = ("none", "percentile", "percentile-centre", "equalize")
DEVICE_HELP = "auto (cuda, then mps, then cpu), cpu, mps, cuda or cuda:N"
# Settings that change how fast a run goes or where it reads from, not what it computes.
NOT_COMPARED_ON_RESUME = {"data", "device", "cache_dir"}
# Settings that older runs saved and that no longer exist: they changed how fast a run went, not
# what it computed (training now holds its images on the device, with no loader processes), so
# a saved config that has them is read without them.
RETIRED_SETTINGS = {"workers", "pin_memory"}
# Setting groups that define a recipe; other groups (data, run) hold where and how fast.
RECIPE_GROUPS = ("model", "optimisation", "shortcuts", "selection")


def _setting(
    default,
    help: str,
    group: str = "run",
    choices=None,
    flag: str | None = None,
    recipe: bool | None = None,
):
    """A TrainConfig field with what its command-line flag needs, and whether it defines a
    recipe (by default: when its group is one of RECIPE_GROUPS)."""
    recipe = group in RECIPE_GROUPS if recipe is None else recipe
    metadata = dict(help=help, group=group, choices=choices, flag=flag, recipe=recipe)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Every setting of a run. The defaults are the course report's protocol."""

    model: str = _setting(
        "scratch",
        "scratch: random init, Dropout(p) + 2-way FC; pretrained: ImageNet weights, new FC",
        "model",
        MODEL_NAMES,
    )
    task: str = _setting(
        "pneumonia",
        "pneumonia: NORMAL vs PNEUMONIA; bacterial-viral: PNEUMONIA images only, positive class "
        "VIRAL; three-class: NORMAL vs BACTERIAL vs VIRAL",
        "data",
        tuple(TASKS),
        recipe=True,
    )
    data: str = _setting(
        "data/chest_xray",
        "dataset folder (Kaggle or Mendeley layout); $PNEUMO_DATA if set, else the default",
        "data",
    )
    epochs: int = _setting(40, "training epochs", "optimisation")
    batch_size: int = _setting(32, "images per training batch", "optimisation")
    lr: float = _setting(1e-3, "Adam learning rate", "optimisation")
    weight_decay: float = _setting(0.0, "Adam weight decay", "optimisation")
    scheduler: str = _setting(
        "none",
        "learning-rate schedule: cosine over all epochs, x0.3 when val loss stalls 3 epochs, "
        "or step: x0.1 at half and at three quarters of the epochs (MedMNIST's)",
        "optimisation",
        SCHEDULERS,
    )
    ema: float = _setting(
        0.0,
        "score, choose and save an exponential moving average of the weights and BatchNorm "
        "statistics in place of the weights themselves, updated after every step with this "
        "decay (an average over about 1/(1-X) steps; docs/frame.md, round 7); the validation "
        "scores, and so a plateau schedule and early stopping, are the average's; 0 is off",
        "optimisation",
    )
    image_size: int = _setting(
        224, "side of the square the images are resized to", "data", recipe=True
    )
    dropout: float = _setting(0.5, "dropout before the final FC", "model")
    freeze: str = _setting(
        "none",
        "pretrained only: freeze nothing, the whole backbone, or every stage below the one named",
        "model",
        FREEZE_CHOICES,
    )
    unfreeze_after: int | None = _setting(None, "unfreeze everything after N epochs", "model")
    weights: str | None = _setting(
        None,
        "ImageNet weights file for --model pretrained (default: torchvision's cache, "
        f"$TORCH_HOME/hub/checkpoints/{IMAGENET_WEIGHTS_FILE})",
        "model",
        recipe=False,
    )
    augment: bool = _setting(
        False, "small rotations, shifts, zoom and exposure changes (no flips)", "data", recipe=True
    )
    resize: str = _setting(
        "squash",
        "how an original becomes a square: squash (aspect lost), pad with black, or centre-crop",
        "shortcuts",
        RESIZE_MODES,
    )
    crop_to_body: bool = _setting(
        False,
        "every split, predict and export: crop each decoded image to the body's bounding box "
        "before it is made square (data/body.py), so the frame's margin never reaches the model",
        "shortcuts",
    )
    aspect_jitter: float = _setting(
        0.0,
        "training: stretch the anatomy by a random factor in [1/(1+A), 1+A] along x or y "
        "(breaks the aspect-ratio shortcut); 0 is off",
        "shortcuts",
    )
    counter_framing: float = _setting(
        0.0,
        "training: with this probability, frame a NORMAL image tighter (central 67-91%% "
        "enlarged) and shrink a PNEUMONIA image into a black margin (65-92%% of the side), "
        "against the framing shortcut; 0 is off",
        "shortcuts",
    )
    frame_jitter: float = _setting(
        0.0,
        "training, every class alike: field of view up to (1+F) times tighter or wider, margins "
        "of a random grey, and one time in two an outer band of up to F/2 erased; 0 is off",
        "shortcuts",
    )
    view_jitter: float = _setting(
        0.0,
        "training, every class alike, after the input pipeline: field of view from 1.1 times "
        "wider to (1+V) times tighter, off-centre, and one time in two an outer band of up to "
        "14%% a random grey between the median and white (docs/frame.md); 0 is off",
        "shortcuts",
    )
    consistency: float = _setting(
        0.0,
        "training: each image twice in its batch, in two random views, and this weight on how "
        "far its outputs differ between them (the squared change of its centred logits; for "
        "two classes half the squared change of the log odds), so that a view moves no "
        "output; needs random augmentation; doubles each step's work; 0 is off",
        "shortcuts",
    )
    thorax_mask: bool = _setting(
        False,
        "every split, predict and export: paint everything outside the ellipse inscribed in the "
        "square black, hiding the corners where the body's outline shows",
        "shortcuts",
    )
    blur_noise: float = _setting(
        0.0,
        "training: with this probability each, Gaussian blur (sigma 0.3-1.5 px at 128 px) and "
        "Gaussian noise (sd up to 4%% of the grey range); 0 is off",
        "shortcuts",
    )
    intensity_jitter: float = _setting(
        0.0,
        "training: move black and white points by up to J of the grey range and gamma within "
        "[exp(-2J), exp(2J)]; 0 is off",
        "shortcuts",
    )
    jpeg_quality_min: int | None = _setting(
        None,
        "training: re-save each image as JPEG at a random quality in [Q, 95] (breaks the "
        "encoding shortcut)",
        "shortcuts",
    )
    intensity_norm: str = _setting(
        "none",
        "per-image grey-level normalisation, every split: percentile stretch (0.5-99.5%%), the "
        "same with the percentiles of the central half of each side, or histogram equalisation",
        "shortcuts",
        INTENSITY_NORMS,
    )
    class_weighting: bool = _setting(
        False, "weight the loss by inverse class frequency", "data", recipe=True
    )
    weighted_sampling: bool = _setting(
        False, "draw training images so both classes are equally frequent", "data", recipe=True
    )
    val_fraction: float = _setting(0.1, "share of train patients carved out for validation", "data")
    keep_official_val: bool = _setting(
        False, "validate on the official 16-image val/ instead", "data"
    )
    select_metric: str = _setting(
        "val_loss",
        "validation score that picks best.pt (a loss: lowest; AUC, balanced accuracy: highest)",
        "selection",
        SELECT_METRICS,
    )
    threshold_on: str = _setting(
        "val",
        "validation split whose predictions pick the decision threshold (Youden's J); "
        "worst_block: the threshold whose worst validation block is best; worst_family_block: "
        "the same with each block split by NORMAL file family; far_family_block: that with the "
        "far tighter view among the blocks (docs/frame.md)",
        "selection",
        THRESHOLD_SPLITS,
    )
    early_stopping: int | None = _setting(
        None, "stop after N epochs without a better validation score", "selection"
    )
    seed: int = _setting(0, "seed of the validation carve, initial weights and batches")
    device: str = _setting("auto", DEVICE_HELP)
    amp: bool = _setting(
        True,
        "mixed precision: bf16 autocast where the hardware runs it natively, else fp16 with a "
        "gradient scaler on CUDA, else fp32 (--no-amp: always fp32)",
        flag="--no-amp",
    )
    channels_last: bool = _setting(
        True,
        "channels-last memory layout, faster convolutions on GPUs and recent CPUs "
        "(--no-channels-last: NCHW)",
        flag="--no-channels-last",
    )
    compile: bool = _setting(False, "torch.compile the model")
    deterministic: bool = _setting(False, "bit-identical CUDA runs (slower kernels)")
    sync_bn: bool = _setting(
        False,
        "under torchrun: BatchNorm statistics over the global batch (SyncBatchNorm, CUDA only); "
        "off: each process normalises its own share of the batch",
    )
    skip_bad_images: bool = _setting(
        False, "leave out unreadable files (listed in a warning) instead of stopping", "data"
    )
    cache_dir: str | None = _setting(
        None, "decoded-image cache (default $PNEUMO_CACHE or ~/.cache/pneumo_utils)", "data"
    )
    max_batches: int | None = _setting(
        None, "stop each pass after N batches (smoke runs only)", recipe=True
    )

    def _limits(self) -> dict[str, tuple[bool, str]]:
        """Each setting with a limit: whether it holds, and the limit as the error states it."""
        return {
            "epochs": (self.epochs >= 1, "at least 1"),
            "batch_size": (self.batch_size >= 1, "at least 1"),
            "lr": (self.lr > 0, "above 0"),
            "image_size": (28 <= self.image_size <= 1024, "28 (PneumoniaMNIST) to 1024"),
            "dropout": (0 <= self.dropout < 1, "0 to below 1"),
            "val_fraction": (0.02 <= self.val_fraction <= 0.5, "0.02 to 0.5"),
            "weight_decay": (self.weight_decay >= 0, "0 or more"),
            "ema": (0 <= self.ema < 1, "0 (off) or a decay below 1, e.g. 0.999"),
            "aspect_jitter": (0 <= self.aspect_jitter <= 1, "0 to 1"),
            "intensity_jitter": (0 <= self.intensity_jitter <= 0.3, "0 to 0.3"),
            "counter_framing": (0 <= self.counter_framing <= 1, "0 to 1"),
            "frame_jitter": (0 <= self.frame_jitter <= 1, "0 to 1"),
            "view_jitter": (0 <= self.view_jitter <= 1, "0 to 1"),
            "blur_noise": (0 <= self.blur_noise <= 1, "0 to 1"),
            "consistency": (0 <= self.consistency <= 100, "0 to 100"),
            "jpeg_quality_min": (
                self.jpeg_quality_min is None or 1 <= self.jpeg_quality_min <= 95,
                "1 to 95",
            ),
            "max_batches": (self.max_batches is None or self.max_batches >= 1, "at least 1"),
            "early_stopping": (
                self.early_stopping is None or self.early_stopping >= 1,
                "at least 1",
            ),
        }

    def check(self) -> None:
        """Refuse impossible settings before any work starts."""
        for name, (ok, limits) in self._limits().items():
            if not ok:
                raise UserError(
                    f"--{name.replace('_', '-')} {getattr(self, name)} is out of range: use "
                    f"{limits}"
                )
        for f in fields(self):
            choices = f.metadata["choices"]
            value = getattr(self, f.name)
            if choices and value not in choices:
                raise UserError(
                    f"unknown --{f.name.replace('_', '-')} {value!r}: choose one of "
                    f"{', '.join(choices)}"
                )
        if self.model == "scratch" and (self.weights or self.freeze != "none"):
            raise UserError("--weights and --freeze need --model pretrained")
        carved = 1 / validation_folds(self.val_fraction)
        if abs(carved - self.val_fraction) > 0.1 * self.val_fraction:
            raise UserError(
                f"--val-fraction {self.val_fraction} cannot be carved: validation is one of k "
                f"folds of the patients, so this would give {carved:.3f}; use a fraction near "
                "1/k, e.g. 0.5, 0.333, 0.25, 0.2, 0.1 or 0.05"
            )
        if self.consistency and not self.random_views:
            raise UserError(
                "--consistency compares two random views of each image, and these settings "
                "draw none: add random augmentation (--view-jitter, --augment, --frame-jitter, "
                "--blur-noise, --intensity-jitter, --aspect-jitter, --counter-framing or "
                "--jpeg-quality-min)"
            )
        if self.class_weighting and self.weighted_sampling:
            raise UserError(
                "--class-weighting and --weighted-sampling both correct the class imbalance, "
                "so together they over-correct it: pass one of them"
            )

    @property
    def random_views(self) -> bool:
        """Whether training draws each image's view at random (two passes of an image differ):
        the settings of data/augment.py that draw; the rest of its steps are fixed."""
        return bool(self.augment or self.view_jitter or self.frame_jitter or self.blur_noise
                    or self.intensity_jitter or self.aspect_jitter or self.counter_framing
                    or self.jpeg_quality_min is not None)  # fmt: skip

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """The settings of a dict (a run's config.json holds them under "config"). A key that
        is not a setting is refused, never dropped: dropping it would fall back to a default
        silently (a whole config.json read as settings trains at 224 px)."""
        known = {f.name for f in fields(cls)}
        if isinstance(values.get("config"), dict):
            raise UserError(
                'these are a whole run\'s config.json, not its settings: pass its "config" '
                'part (TrainConfig.from_dict(saved["config"])), or use '
                "pneumo_utils.open_run(RUN_DIR).config"
            )
        values = {k: v for k, v in values.items() if k not in RETIRED_SETTINGS}
        unknown = sorted(set(values) - known)
        if unknown:
            raise UserError(
                f"unknown setting(s) {', '.join(unknown)}: a TrainConfig has "
                f"{', '.join(sorted(known))}"
            )
        return cls(**values)

    def differences(self, other: TrainConfig) -> list[str]:
        """What `other` changes in the settings that define a run's results, as 'key: a -> b'."""
        mine, theirs = asdict(self), asdict(other)
        return [
            f"{k}: {mine[k]!r} -> {theirs[k]!r}"
            for k in mine
            if k not in NOT_COMPARED_ON_RESUME and mine[k] != theirs[k]
        ]


def validation_folds(val_fraction: float) -> int:
    """Validation is one of k patient folds of the training pool: the k nearest 1/fraction."""
    return max(2, round(1 / val_fraction))
