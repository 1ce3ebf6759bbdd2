"""export: the best model as weights plain torchvision loads, with a model card."""

from pathlib import Path

import torch
from safetensors.torch import load_file
from torchvision.models import resnet18

from pneumo_utils.app.export import export_run
from pneumo_utils.training.runs import load_trained_model


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
    modes = {path.suffix: path.stat().st_mode & 0o777 for path in out.iterdir()}
    assert modes[".safetensors"] == modes[".pth"] == modes[".md"]  # readable like the rest
    card = (out / "MODEL_CARD.md").read_text()
    for words in ("Not for clinical use", "shortcut audit", "95% interval", "16 images"):
        assert words in card


def test_the_model_card_states_the_runs_own_numbers(finished_run, tmp_path):
    import json
    import shutil

    from pneumo_utils.analysis import robustness

    run = shutil.copytree(finished_run, tmp_path / "run")
    assert (run / robustness.ROBUSTNESS_JSON).exists()  # finalize wrote it
    (run / robustness.ROBUSTNESS_JSON).unlink()
    card = (export_run(run, tmp_path / "a") / "MODEL_CARD.md").read_text()
    test = json.loads((run / "metrics.json").read_text())["test"]
    for metric in ("accuracy", "sensitivity", "specificity", "roc_auc"):
        assert f"| {metric} | {test[metric]:.3f} |" in card
    assert "none of the levers" in card  # the tiny run uses none: the card must not claim any
    assert "No robustness report" in card
    robustness.robustness_report(run, n_resamples=20, progress=False)
    card = (export_run(run, tmp_path / "b") / "MODEL_CARD.md").read_text()
    assert "| zoom in | 1.25 |" in card and "lungs covered" in card and "ECE" in card


def test_the_model_cards_snippet_runs_as_written_and_equals_predict(
    tiny_config, tmp_path, monkeypatch
):
    """The card's code, run as it stands in the export folder on a test file, gives predict's
    probabilities to 1e-6 (an fp32 run: predict computes in the run's precision)."""
    import contextlib
    import io
    import json
    import re
    from dataclasses import replace

    from pneumo_utils import train
    from pneumo_utils.app.predict import predict_files

    config = replace(tiny_config, epochs=1, amp=False, crop_to_body=True,
                     intensity_norm="percentile")  # fmt: skip
    run = train(config, tmp_path / "run", progress=False)
    out = export_run(run, tmp_path / "export")
    card = (out / "MODEL_CARD.md").read_text()
    snippet = re.search(r"```python\n(.*?)```", card, re.S).group(1)
    image = sorted(Path(config.data).glob("test/PNEUMONIA/*.jpeg"))[0]
    monkeypatch.chdir(out)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(snippet.replace('"chest.jpeg"', repr(str(image))), {})
    from_card = json.loads(printed.getvalue())
    row = next(predict_files(run, [image]))
    assert abs(from_card[1] - row["p_pneumonia"]) <= 1e-6
