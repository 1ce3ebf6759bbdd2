import os
from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from torch import nn
from torchvision.models import ResNet18_Weights

from pneumo_utils import UserError, build_model
from pneumo_utils.model import (
    count_parameters,
    load_imagenet_weights,
    official_weights_path,
    train_mode,
)
from pneumo_utils.runtime.errors import WeightsUnavailable


def _trainable(model):
    return {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}


def test_scratch_has_dropout_then_two_way_fc():
    model = build_model("scratch", dropout=0.3)
    assert isinstance(model.fc[0], nn.Dropout) and model.fc[0].p == 0.3
    assert model.fc[1].out_features == 2 and model.fc[1].in_features == 512
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 2)


def test_pretrained_loads_torchvision_cache(monkeypatch):
    path = official_weights_path()
    assert path == Path(os.environ["TORCH_HOME"]) / "hub/checkpoints/resnet18-f37072fd.pth"
    model = build_model("pretrained")
    _, provenance = load_imagenet_weights()
    stand_in = torch.load(path, weights_only=True)
    assert torch.equal(model.conv1.weight, stand_in["conv1.weight"])
    assert provenance["source"] == "torchvision cache"
    assert provenance["official"] is False  # the stand-in is not torchvision's file
    assert model.fc[1].out_features == 2


def test_explicit_weights_file(tmp_path):
    state = build_model("scratch").state_dict()
    torch.save(state, tmp_path / "mine.pth")
    imagenet, provenance = load_imagenet_weights(tmp_path / "mine.pth")
    model = build_model("pretrained", imagenet=imagenet)
    assert provenance["source"] == "file" and provenance["path"].endswith("mine.pth")
    assert torch.equal(model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])


def test_missing_weights_fail_at_once_with_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    tries = []

    def offline(*args, **kwargs):
        tries.append(1)
        raise URLError("no network")

    monkeypatch.setattr(ResNet18_Weights.DEFAULT.__class__, "get_state_dict", offline)
    for _ in range(2):  # the second time without trying the network again
        with pytest.raises(WeightsUnavailable, match=r"not at .*f37072fd.pth.*(no network).*FILE"):
            load_imagenet_weights()
    assert len(tries) == 1
    with pytest.raises(UserError, match="does not exist"):
        load_imagenet_weights(tmp_path / "nope.pth")


def test_weights_that_are_not_resnet18_are_refused(tmp_path):
    torch.save({"weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="not a ResNet-18 state_dict"):
        load_imagenet_weights(tmp_path / "other.pth")


def test_freeze_backbone_leaves_only_the_head():
    model = build_model("pretrained", freeze="backbone")
    assert _trainable(model) == {"fc"}


def test_freeze_below_a_stage():
    model = build_model("pretrained", freeze="layer3")
    assert _trainable(model) == {"layer3", "layer4", "fc"}
    counts = count_parameters(model)
    assert 0 < counts["trainable"] < counts["total"]
    train_mode(model)
    assert not model.bn1.training and not model.layer2[0].bn1.training
    assert model.layer3[0].bn1.training


def test_unknown_model_and_freeze():
    with pytest.raises(UserError, match="unknown model"):
        build_model("vgg")
    with pytest.raises(UserError, match="unknown --freeze"):
        build_model("pretrained", freeze="layer9")
