"""The two ResNet-18 variants of the report, ImageNet weight loading and layer freezing."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from urllib.error import URLError

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from pneumo_utils.resnet import (
    FREEZE_CHOICES,
    IMAGENET_WEIGHTS_FILE,
    MODEL_NAMES,
    OFFICIAL_SHA256_PREFIX,
    STAGES,
    TORCHVISION_HEAD_PREFIX,
)
from pneumo_utils.runtime.errors import UserError, WeightsUnavailable
from pneumo_utils.runtime.fileio import load_checkpoint


def official_weights_path() -> Path:
    """Where torchvision caches ResNet-18's ImageNet weights ($TORCH_HOME/hub/checkpoints)."""
    file_name = Path(ResNet18_Weights.DEFAULT.url).name
    return Path(torch.hub.get_dir()) / "checkpoints" / file_name


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# A download that failed, by path, and why: tried once a process (a notebook asks three times,
# and without a network each try can wait on a timeout).
_FAILED_DOWNLOADS: dict[Path, str] = {}


def load_imagenet_weights(weights_file: str | os.PathLike | None = None):
    """ResNet-18 ImageNet weights and where they came from.

    With `weights_file`, that file. Otherwise torchvision's own path: the cached file under
    $TORCH_HOME, downloaded there first when missing and a network is reachable.
    """
    if weights_file is not None:
        path = Path(weights_file).expanduser()
        if not path.is_file():
            raise UserError(f"weights file {path} does not exist: check the --weights path")
        source = "file"
    else:
        path = official_weights_path()
        source = "torchvision cache" if path.is_file() else "torchvision download"
        why = None if path.is_file() else _FAILED_DOWNLOADS.get(path)
        if not path.is_file() and why is None:
            try:
                ResNet18_Weights.DEFAULT.get_state_dict(progress=True)
            except (URLError, OSError) as error:
                why = _FAILED_DOWNLOADS[path] = str(getattr(error, "reason", error))
        if why is not None:
            raise WeightsUnavailable(
                f"ImageNet weights for ResNet-18 are not at {path} and could not be "
                f"downloaded ({why}): copy {IMAGENET_WEIGHTS_FILE} there (from "
                f"https://download.pytorch.org/models/{IMAGENET_WEIGHTS_FILE}) or pass "
                "--weights FILE (in a notebook: set PNEUMO_WEIGHTS=FILE)"
            )
    state = load_checkpoint(path)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # a pneumo_utils checkpoint also works as a starting point
    _check_resnet18(state, path)
    sha256 = _sha256(path)
    provenance = dict(
        source=source,
        path=str(path),
        sha256=sha256,
        official=sha256.startswith(OFFICIAL_SHA256_PREFIX),
    )
    return state, provenance


def _backbone(state: dict) -> dict:
    """A ResNet-18 state_dict without its head (ImageNet's 1000-way FC is replaced)."""
    return {k: v for k, v in state.items() if not k.startswith(TORCHVISION_HEAD_PREFIX)}


def _check_resnet18(state, path: Path) -> None:
    """A weights file must hold every ResNet-18 weight below the head, in its shape."""
    if not isinstance(state, dict):
        raise UserError(f"{path} is not a ResNet-18 state_dict: pass a .pth of one")
    reference = resnet18(weights=None)
    try:
        reference.load_state_dict(_backbone(state), strict=False)
    except RuntimeError as error:
        raise UserError(
            f"{path} is not a ResNet-18 state_dict ({str(error).splitlines()[0]})"
        ) from error
    missing = [k for k in _backbone(reference.state_dict()) if k not in state]
    if missing:
        raise UserError(
            f"{path} is not a ResNet-18 state_dict: {len(missing)} weights missing, e.g. "
            f"{missing[0]}"
        )


def build_model(
    name: str,
    *,
    dropout: float = 0.5,
    imagenet: dict | None = None,
    freeze: str = "none",
    num_classes: int = 2,
) -> nn.Module:
    """ResNet-18 with a Dropout + linear head (2-way, or one output per class of the task).

    `scratch` starts from random weights; `pretrained` from ImageNet weights (`imagenet`, as
    load_imagenet_weights returns them; torchvision's own when not given), with the 1000-way
    FC replaced and the layers chosen by `freeze` frozen.
    """
    if name not in MODEL_NAMES:
        raise UserError(f"unknown model {name!r}: choose one of {', '.join(MODEL_NAMES)}")
    model = resnet18(weights=None)
    if name == "pretrained":
        state = imagenet if imagenet is not None else load_imagenet_weights()[0]
        model.load_state_dict(_backbone(state), strict=False)
    model.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(model.fc.in_features, num_classes))
    set_frozen(model, freeze)
    return model


def _frozen_modules(model: nn.Module, freeze: str) -> list[nn.Module]:
    if freeze == "none":
        return []
    if freeze == "backbone":
        return [m for name, m in model.named_children() if name != "fc"]
    if freeze not in STAGES[1:]:
        raise UserError(f"unknown --freeze {freeze!r}: choose one of {', '.join(FREEZE_CHOICES)}")
    below = STAGES[: STAGES.index(freeze)]
    return [model.conv1, model.bn1] + [getattr(model, s) for s in below if s != "conv1"]


def set_frozen(model: nn.Module, freeze: str) -> None:
    """Freeze the parameters chosen by `freeze` and unfreeze all others."""
    frozen = {id(p) for module in _frozen_modules(model, freeze) for p in module.parameters()}
    for parameter in model.parameters():
        parameter.requires_grad_(id(parameter) not in frozen)


def train_mode(model: nn.Module) -> None:
    """model.train(), but frozen parts keep their BatchNorm statistics fixed (eval mode)."""
    model.train()
    for module in model.modules():
        # _BatchNorm: BatchNorm2d, and SyncBatchNorm under --sync-bn, which does not subclass it.
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not module.weight.requires_grad:
            module.eval()


def count_parameters(model: nn.Module) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return dict(total=total, trainable=trainable)
