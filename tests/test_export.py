"""export: the best model as weights plain torchvision loads, with a model card."""

import torch
from safetensors.torch import load_file
from torchvision.models import resnet18

from pneumo_utils.export import export_run
from pneumo_utils.models import load_trained_model


def test_exported_weights_load_into_plain_torchvision(finished_run, tmp_path):
    out = export_run(finished_run, tmp_path / "export")
    ours, _, _ = load_trained_model(finished_run, torch.device("cpu"))
    inputs = torch.randn(2, 3, 32, 32)
    for state in (
        torch.load(out / "resnet18_pneumonia.pth", weights_only=True),
        load_file(out / "resnet18_pneumonia.safetensors"),
    ):
        plain = resnet18(num_classes=2)
        plain.load_state_dict(state)  # strict: every key matches torchvision's own
        with torch.inference_mode():
            expected = ours.float().to(memory_format=torch.contiguous_format)(inputs)
            assert torch.allclose(plain.eval()(inputs), expected, atol=1e-4)
    card = (out / "MODEL_CARD.md").read_text()
    for words in ("Not for clinical use", "shortcut audit", "95% interval", "16 images"):
        assert words in card
