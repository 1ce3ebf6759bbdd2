"""The recipes: named sets of changes to the course report's protocol (the TrainConfig
defaults), each a row of the results or a notebook's run, and the headline recipe.

Every recipe is data, written down before its runs; docs/shortcuts.md, docs/frame.md and
docs/medmnist.md give the rule each screening chose by.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, fields, replace

from pneumo_utils.config import TrainConfig
from pneumo_utils.runtime.errors import UserError

# The settings a recipe may change; the rest (data, device, cache...) do not define it.
RECIPE_SETTINGS = tuple(f.name for f in fields(TrainConfig) if f.metadata["recipe"])

_IMPROVED = dict(
    image_size=128, augment=True, class_weighting=True, scheduler="cosine", weight_decay=1e-4
)
# The shortcut issue's selection rule (docs/shortcuts.md), the same for every lever.
_SHORTCUT_BASE = dict(
    _IMPROVED, epochs=20, select_metric="stressed_val_loss", threshold_on="stressed_val"
)
_GEOMETRY = dict(aspect_jitter=0.4)
_INTENSITY = dict(intensity_norm="percentile", intensity_jitter=0.1)
_ENCODING = dict(jpeg_quality_min=30)
_SHORTCUT_ALL = dict(_SHORTCUT_BASE, **_GEOMETRY, **_INTENSITY, **_ENCODING)
# The frame issue's selection rule (docs/frame.md): checkpoint and threshold on the
# frame-stressed validation set, every lever on top of shortcut-all.
_FRAME_RULE = dict(select_metric="frame_val_loss", threshold_on="frame_val")
_COUNTER = dict(counter_framing=0.5)
_FRAME_JITTER = dict(frame_jitter=0.35)
_SENSOR = dict(blur_noise=0.3, intensity_jitter=0.2)
# The crop issue's selection rule (docs/frame.md): checkpoint on the mean loss of the clean, the
# stressed and the reframed validation sets; threshold by Youden's J on the three pooled.
_POOLED_RULE = dict(select_metric="pooled_val_loss", threshold_on="pooled_val")
_CROP = dict(_SHORTCUT_ALL, **_POOLED_RULE, crop_to_body=True)
# The view round's rule (docs/frame.md, round 4): checkpoint and threshold by the worst of the
# clean, stressed and view validation blocks, scored at the operating point.
_WORST_BLOCK_RULE = dict(select_metric="worst_block_bacc", threshold_on="worst_block")
_VIEW = dict(_CROP, **_WORST_BLOCK_RULE)
_VIEW_VARIETY = dict(_VIEW, view_jitter=0.5, epochs=40)
# The family round's rule (docs/frame.md, round 5): the same, each block split by NORMAL file
# family, on the view round's winner's settings.
_FAMILY = dict(_VIEW_VARIETY, select_metric="worst_family_block_bacc",
               threshold_on="worst_family_block")  # fmt: skip
# The consistency round (docs/frame.md, round 6): round 5's winner's settings and rule, each
# image twice per batch in two random views, at the compute of its 40 epochs at batch 32.
_CONSISTENCY = dict(_FAMILY, batch_size=16, epochs=20)
# The averaging round's pick (docs/frame.md, round 7): round 5's winner scored, chosen and saved
# as an average of its weights and BatchNorm statistics over about 100 steps.
_AVERAGED = dict(_FAMILY, ema=0.99)
# The far round (docs/frame.md, round 8): round 7's pick chosen by the far rule: the family rule
# with the far tighter view among its blocks.
_FAR = dict(_AVERAGED, select_metric="far_family_block_bacc", threshold_on="far_family_block")
_MEDMNIST = dict(
    image_size=28, epochs=100, batch_size=128, scheduler="step", dropout=0.0,
    select_metric="val_auc", threshold_on="val",
)  # fmt: skip

RECIPES: dict[str, dict] = {
    # The course report's protocol: the TrainConfig defaults (224 px, 40 epochs).
    "baseline-224px": {},
    "baseline-128px": dict(image_size=128),
    # Augmentation, class-weighted loss, cosine schedule, weight decay, fixed before training.
    "improved-128px": _IMPROVED,
    # The per-change validation ablation of the improved recipe.
    "improved-no-class-weighting": dict(_IMPROVED, class_weighting=False),
    "improved-no-augment": dict(_IMPROVED, augment=False),
    "improved-no-scheduler": dict(_IMPROVED, scheduler="none"),
    "improved-dropout0.2": dict(_IMPROVED, dropout=0.2),
    # The shortcut screening: the improved recipe chosen on the stressed validation set, then
    # one lever at a time, then all of them (docs/shortcuts.md).
    "improved-stressed-val": _SHORTCUT_BASE,
    "shortcut-geometry": dict(_SHORTCUT_BASE, **_GEOMETRY),
    "shortcut-intensity": dict(_SHORTCUT_BASE, **_INTENSITY),
    "shortcut-encoding": dict(_SHORTCUT_BASE, **_ENCODING),
    "shortcut-all": _SHORTCUT_ALL,
    # The frame screening: shortcut-all chosen on the frame-stressed validation set with
    # counter-framing, with framing variety alike for both classes, and with everything
    # (counter-framing, variety, blur and noise, stronger exposure jitter) (docs/frame.md).
    "frame-counter": dict(_SHORTCUT_ALL, **_FRAME_RULE, **_COUNTER),
    "frame-jitter": dict(_SHORTCUT_ALL, **_FRAME_RULE, **_FRAME_JITTER),
    "frame-all": dict(_SHORTCUT_ALL, **_FRAME_RULE, **_COUNTER, **_FRAME_JITTER, **_SENSOR),
    # The crop screening (docs/frame.md): every image cropped to the body, in training and
    # wherever it is scored, on top of shortcut-all, chosen by the pooled rule; alone, with
    # framing variety alike for both classes, with the sensor lever too, with twice the
    # epochs, with wider framing variety; and the control: framing variety without the crop.
    "crop-only": _CROP,
    "crop-jitter": dict(_CROP, **_FRAME_JITTER),
    "crop-jitter-sensor": dict(_CROP, **_FRAME_JITTER, **_SENSOR),
    "crop-jitter-40ep": dict(_CROP, **_FRAME_JITTER, epochs=40),
    "crop-jitter-wide": dict(_CROP, frame_jitter=0.6),
    "nocrop-jitter": dict(_SHORTCUT_ALL, **_POOLED_RULE, **_FRAME_JITTER),
    # The view screening (docs/frame.md, round 4): crop-only's settings chosen by the worst-block
    # rule; with framing variety after the input pipeline (40 epochs), with the percentiles of
    # the normalisation taken in the centre, and with the thorax alone in view.
    "view-control": _VIEW,
    "view-variety": _VIEW_VARIETY,
    "view-centre-norm": dict(_VIEW, intensity_norm="percentile-centre"),
    "view-thorax": dict(_VIEW, thorax_mask=True),
    # The family screening (docs/frame.md, round 5): view-variety chosen by the family rule;
    # with framing variety up to 1.8 times tighter, with blur, noise and stronger exposure
    # jitter, and with the normalisation's percentiles taken in the centre.
    "family-control": _FAMILY,
    "family-view-wide": dict(_FAMILY, view_jitter=0.8),
    "family-sensor": dict(_FAMILY, **_SENSOR),
    "family-centre-norm": dict(_FAMILY, intensity_norm="percentile-centre"),
    # The consistency screening (docs/frame.md, round 6): the shift of a view trained away at
    # two weights of the term, against round 5's winner (family-control).
    "consistency-1": dict(_CONSISTENCY, consistency=1.0),
    "consistency-4": dict(_CONSISTENCY, consistency=4.0),
    # The averaging screening (docs/frame.md, round 7): round 5's winner scored, chosen and
    # saved as an average of its weights and BatchNorm statistics over about 100 steps (under
    # an epoch: the statistics of the last batches) and 1,000 (about 7 epochs: the weights too).
    "ema-short": _AVERAGED,
    "ema-long": dict(_FAMILY, ema=0.999),
    # The far screening (docs/frame.md, round 8): round 7's pick under the far rule; with the
    # view varied up to 2 times tighter (across the far block); with the consistency term at a
    # quarter, at the compute of 40 epochs at batch 32 (as round 6's arms).
    "far-control": _FAR,
    "far-view-wide": dict(_FAR, view_jitter=1.0),
    "far-consistency": dict(_FAR, consistency=0.25, batch_size=16, epochs=20),
    # The crop screening's winner with the task changed, chosen by the same rule (docs/frame.md).
    "bacterial-viral-crop": dict(_CROP, task="bacterial-viral"),
    # PneumoniaMNIST (docs/medmnist.md): MedMNIST v2's protocol for ResNet-18 from scratch
    # (Adam lr 0.001, batch 128, 100 epochs, x0.1 at epochs 50 and 75, no augmentation,
    # checkpoint on val AUC), at 28 px and upsampled to 224; counter-framing's levers at 28 px.
    "medmnist-protocol": _MEDMNIST,
    "medmnist-protocol-224px": dict(_MEDMNIST, image_size=224),
    "medmnist-headline": dict(_SHORTCUT_ALL, **_FRAME_RULE, **_COUNTER, image_size=28),
    # Kermany et al.'s second result and the three classes at once (docs/tasks.md): the then
    # headline, frame-counter, with the task changed, chosen by its rule (frame-stressed val).
    "bacterial-viral": dict(_SHORTCUT_ALL, **_FRAME_RULE, **_COUNTER, task="bacterial-viral"),
    "three-class": dict(_SHORTCUT_ALL, **_FRAME_RULE, **_COUNTER, task="three-class"),
    # The same two tasks on the view round's winner's input (`view-variety`), chosen by its
    # worst-block rule (docs/frame.md, round 4).
    "bacterial-viral-view": dict(_VIEW_VARIETY, task="bacterial-viral"),
    "three-class-view": dict(_VIEW_VARIETY, task="three-class"),
    # Notebook 03: the course report's protocol from ImageNet (FC replaced, nothing frozen, no
    # dropout), and the headline recipe's settings and rule (ema-short), frozen below layer3.
    "pretrained-protocol": dict(model="pretrained", dropout=0.0),
    "pretrained": dict(_AVERAGED, model="pretrained", freeze="layer3", dropout=0.0),
    # Seconds instead of hours: applied on top of another recipe by the smoke profile.
    "smoke": dict(image_size=64, epochs=2, batch_size=16, max_batches=2),
}
# The recipe of notebook 02, the main job and the README's headline row: chosen by the averaging
# screening's rule (docs/frame.md, round 7); before it, the shortcut, frame, crop, view and
# family screenings' choices, which keep their rows.
HEADLINE = "ema-short"
FORMER_HEADLINES = ("shortcut-all", "frame-counter", "crop-only", "view-variety", "family-control")

# What each recipe of the results tables is, in a few words; the headline's row says so too.
RECIPE_TITLES = {
    "baseline-128px": "the course report's protocol at 128 px",
    "baseline-224px": "the course report's protocol",
    "improved-128px": "improved recipe",
    "shortcut-all": "acquisition shortcuts broken",
    "frame-counter": "counter-framing",
    "crop-only": "cropped to the body",
    "view-variety": "cropped, framing variety after it",
    "family-control": "cropped, framing variety, chosen by NORMAL file family",
    "ema-short": "the same, its weights averaged over about 100 steps",
    "bacterial-viral": "bacterial vs viral (PNEUMONIA images; positive VIRAL)",
    "bacterial-viral-crop": "bacterial vs viral, cropped to the body",
    "bacterial-viral-view": "bacterial vs viral, cropped, framing variety",
    "three-class": "three classes (sensitivity, specificity: NORMAL vs the rest)",
    "three-class-view": "three classes, cropped, framing variety",
    "medmnist-protocol": "MedMNIST's protocol, 28 px",
    "medmnist-headline": "counter-framing's levers, 28 px",
}


def titled(recipes: tuple[str, ...]) -> dict[str, str]:
    """Each recipe with its title (RECIPE_TITLES), in order; the headline marked as such."""
    return {r: RECIPE_TITLES[r] + (" (headline)" if r == HEADLINE else "") for r in recipes}


# The recipes that start from ImageNet weights (notebook 03), and what their rows say without.
PRETRAINED_RECIPES = ("pretrained-protocol", "pretrained")
NEEDS_WEIGHTS = (
    "needs ImageNet weights: run notebooks/03 with internet access, or with PNEUMO_WEIGHTS "
    "naming a copy of the weights file"
)
# Notebook 02's last section: Kermany et al.'s second task, and the three classes at once, on
# the headline's input (docs/tasks.md).
TASK_RECIPES = ("bacterial-viral-view", "three-class-view")


def recipe_config(name: str, **overrides) -> TrainConfig:
    """The TrainConfig of a named recipe, with `overrides` (data, seed, ...) on top."""
    if name not in RECIPES:
        close = difflib.get_close_matches(name, RECIPES, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise UserError(
            f"unknown recipe {name!r}: {hint}choose one of {', '.join(RECIPES)} "
            "(pneumo_utils/recipes.py defines them)"
        )
    return replace(TrainConfig(), **{**RECIPES[name], **overrides})


# The course report's hyperparameters, which a table of a run's settings always shows.
REPORT_HYPERPARAMETERS = ("model", "epochs", "batch_size", "lr", "image_size", "dropout")


def protocol_of(config: TrainConfig) -> TrainConfig:
    """The course report's protocol for `config`'s model (the TrainConfig defaults)."""
    return TrainConfig(model=config.model)


def changed_settings(config: TrainConfig) -> list[str]:
    """The recipe settings in which `config` differs from the course report's protocol."""
    protocol, values = asdict(protocol_of(config)), asdict(config)
    return [key for key in RECIPE_SETTINGS if values[key] != protocol[key]]


def recipe_changes(config: TrainConfig) -> str:
    """The recipe settings that differ from the course report's protocol, as one line."""
    values = asdict(config)
    changed = [f"{key}={values[key]}" for key in changed_settings(config)]
    return ", ".join(changed) or "the report's protocol"
