"""Mixed precision must not change what the model learns on a problem it can solve."""

import json
from dataclasses import replace

import pytest
import torch

from pneumo_utils import train
from pneumo_utils.device import autocast_dtype


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_autocast_reaches_the_accuracy_of_fp32(tiny_config, tmp_path, device):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    if autocast_dtype(torch.device(device)) is None:
        pytest.skip(f"{device} has no fast reduced-precision path (no native bf16)")
    config = replace(tiny_config, device=device, epochs=3)
    accuracy = {}
    for amp in (True, False):
        out = train(replace(config, amp=amp), tmp_path / f"amp-{amp}", progress=False)
        accuracy[amp] = json.loads((out / "metrics.json").read_text())["test"]["accuracy"]
    assert accuracy[False] >= 0.8
    assert abs(accuracy[True] - accuracy[False]) <= 0.125  # two of the 16 test images
