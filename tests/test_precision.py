"""Mixed precision must not change what the model learns on a problem it can solve."""

import json
from dataclasses import replace

import pytest
import torch

from pneumo_utils import train
from pneumo_utils.runtime.device import autocast_dtype


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


def test_fp16_where_bf16_is_only_emulated(monkeypatch):
    """A T4 or V100 reports bf16 'supported' by counting emulation: it must get fp16."""
    asked = {}

    def is_bf16_supported(including_emulation=True):
        asked["including_emulation"] = including_emulation
        return including_emulation  # emulated only

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    assert autocast_dtype(torch.device("cuda")) == torch.float16
    assert asked["including_emulation"] is False
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert autocast_dtype(torch.device("cuda")) == torch.bfloat16
    assert autocast_dtype(torch.device("cuda"), enabled=False) is None


def test_cudnn_autotunes_unless_deterministic(monkeypatch):
    from pneumo_utils.runtime.device import tune_backends

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(torch, "use_deterministic_algorithms", lambda flag: None)
    tune_backends(torch.device("cuda"), deterministic=False)
    assert torch.backends.cudnn.benchmark is True
    tune_backends(torch.device("cuda"), deterministic=True)
    assert torch.backends.cudnn.benchmark is False


def test_a_resume_that_would_change_precision_is_refused(tiny_config, tmp_path):
    from pneumo_utils.runtime.device import dtype_name
    from pneumo_utils.runtime.errors import UserError

    out = train(replace(tiny_config, epochs=1), tmp_path / "run", progress=False)
    saved = json.loads((out / "config.json").read_text())
    here = dtype_name(autocast_dtype(torch.device("cpu")))
    assert saved["environment"]["autocast"] == here  # recorded
    (out / "metrics.json").unlink()  # as if it had stopped before finishing
    saved["environment"]["autocast"] = "float16" if here != "float16" else "bfloat16"
    (out / "config.json").write_text(json.dumps(saved))
    with pytest.raises(UserError, match="was trained with autocast .* change its numbers"):
        train(replace(tiny_config, epochs=1), out, progress=False)
    assert not (out / "metrics.json").exists()
