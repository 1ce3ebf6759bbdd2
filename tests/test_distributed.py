"""One run on 2 CPU processes under torchrun (gloo): the run folder written once, exact
evaluation, a kill and resume, one average of the weights (--ema) scored and saved, and the
first step's gradients equal to one process's."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from pneumo_utils import model as models
from pneumo_utils.analysis.scoring import evaluate_run
from pneumo_utils.app.pipeline import train
from pneumo_utils.config import TrainConfig
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.training.loop import Parts, train_one_epoch
from pneumo_utils.training.runs import read_history, read_metrics

pytestmark = pytest.mark.skipif(
    not torch.distributed.is_available(), reason="this torch build has no torch.distributed"
)
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
# Each process one thread: two torch processes on 2 cores are otherwise slower than one.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}


def _train_args(data, out, cache, epochs):
    return [
        "train", "--data", str(data), "--out", str(out), "--cache-dir", str(cache),
        "--epochs", str(epochs), "--batch-size", "16", "--image-size", "32", "--no-amp",
    ]  # fmt: skip


def _wait_for_epochs(out, epochs, process, timeout=120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (out / "history.csv").exists() and len(read_history(out)) >= epochs:
            return
        assert process.poll() is None, process.communicate()[0]
        time.sleep(0.05)
    raise AssertionError("the torchrun training made no progress")


def test_two_processes_write_one_run_exactly_and_resume_after_a_kill(tiny_copy, tmp_path):
    # 15 test images: an odd split, which a padding sampler would count one image twice in.
    next((tiny_copy / "test" / "NORMAL").iterdir()).unlink()
    out, cache = tmp_path / "run", tmp_path / "cache"
    args = _train_args(tiny_copy, out, cache, epochs=3)
    first = subprocess.Popen(
        [*TORCHRUN, "-m", "pneumo_utils", *args], env=ENV,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    _wait_for_epochs(out, 1, first)
    # What a scheduler does at the time limit: torchrun passes SIGTERM on to both workers.
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=60)
    assert first.returncode != 0
    assert len(read_history(out)) < 3, "the run ended before it was killed"

    # One process may not resume a two-process run: its shards and batches would differ.
    alone = TrainConfig(data=str(tiny_copy), cache_dir=str(cache), epochs=3, batch_size=16,
                        image_size=32, amp=False)  # fmt: skip
    with pytest.raises(UserError, match=r"trained on 2 process\(es\) and this launch has 1"):
        train(alone, out, progress=False)

    resumed = subprocess.run(
        [*TORCHRUN, "-m", "pneumo_utils", *args], env=ENV, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.count("resuming") == 1  # rank 0 alone prints
    assert resumed.stdout.count("epoch   3/3") == 1

    history = read_history(out)
    assert list(history["epoch"]) == [1, 2, 3]
    config = json.loads((out / "config.json").read_text())
    assert config["distributed"] == dict(world_size=2, backend="gloo", batch_size_per_process=8)
    assert len((out / "test_predictions.csv").read_text().splitlines()) == 1 + 15
    assert not list(out.glob(".*.tmp-*"))
    # rank 0 alone: one event file per launch, and one for the hparams at the end
    assert len(list((out / "tb").glob("events.*"))) == 3

    # The epochs were scored over both ranks' shares; one process scoring best.pt agrees.
    metrics = read_metrics(out)
    selected = history.set_index("epoch").loc[metrics["best_epoch"]]
    scored = evaluate_run(out, split="test")
    assert scored["n"] == 15
    assert selected["test_loss"] == pytest.approx(scored["loss"], rel=1e-5)
    assert selected["test_acc"] == pytest.approx(scored["acc_at_0_5"], abs=1e-12)
    assert metrics["test"]["accuracy"] == pytest.approx(scored["accuracy"], abs=1e-12)
    assert metrics["test"]["roc_auc"] == pytest.approx(scored["roc_auc"], abs=1e-12)


def test_two_processes_score_the_average_that_best_pt_saves(tiny_data, tmp_path):
    # --ema: each rank keeps its own copy of the average, and each rank's BatchNorm statistics
    # follow its own share of the batch; before scoring, rank 0's statistics are broadcast
    # (World.share_buffers), so the ranks score one average, and best.pt saves that one.
    out = tmp_path / "run"
    args = [*_train_args(tiny_data, out, tmp_path / "cache", epochs=1), "--ema", "0.5"]
    result = subprocess.run(
        [*TORCHRUN, "-m", "pneumo_utils", *args], env=ENV, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr

    metrics = read_metrics(out)
    selected = read_history(out).set_index("epoch").loc[metrics["best_epoch"]]
    scored = evaluate_run(out, split="test")  # one process, best.pt
    assert selected["test_loss"] == pytest.approx(scored["loss"], rel=1e-5)
    assert metrics["test"]["roc_auc"] == pytest.approx(scored["roc_auc"], abs=1e-12)
    # One epoch: best.pt is the average at its end, not the weights.
    best = torch.load(out / "best.pt", weights_only=True)["model"]
    last = torch.load(out / "last.pt", weights_only=True)
    assert all(torch.equal(value, last["average"][name]) for name, value in best.items())
    assert any(not torch.equal(value, last["model"][name]) for name, value in best.items())


# Each rank: the first step of the real loop under DDP on its DistributedSampler share, with a
# class-weighted loss; saves the gradients (averaged over the ranks by DDP) and its images.
FIRST_STEP = textwrap.dedent(
    """
    import sys, torch
    from pneumo_utils.runtime import distributed
    from pneumo_utils import model as models
    from pneumo_utils.config import TrainConfig
    from pneumo_utils.data.dataset import load_run_data
    from pneumo_utils.data.augment import Augmentation
    from pneumo_utils.data.batches import TrainingBatches, hold
    from pneumo_utils.training.loop import Parts, train_one_epoch

    data_dir, cache, out = sys.argv[1:4]
    WEIGHTS = torch.tensor([2.0, 0.5])  # class-weighted, as the headline recipes train
    cfg = TrainConfig(data=data_dir, cache_dir=cache, batch_size=16, image_size=32,
                      dropout=0.0, max_batches=1)
    world = distributed.join("cpu")
    torch.manual_seed(0)
    model = models.build_model("scratch", dropout=0.0)
    for module in model.modules():  # BatchNorm on fixed statistics, see the test
        if isinstance(module, torch.nn.BatchNorm2d):
            module.requires_grad_(False)
    data = world.main_first(lambda: load_run_data(cfg, progress=False))
    batches = TrainingBatches(hold(data, "train", torch.device("cpu")),
                              world.batch_per_process(16), Augmentation(cfg), world=world)
    batches.start_epoch(1, world.rank)
    images, labels = next(iter(batches))
    parts = Parts(
        cfg=cfg, device=torch.device("cpu"), amp_dtype=None, model=model,
        forward_model=world.wrap(model, torch.device("cpu")),
        average=None, scored=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.0), scheduler=None,
        scaler=torch.amp.GradScaler("cpu", enabled=False),
        criterion=torch.nn.CrossEntropyLoss(weight=WEIGHTS), batches=[(images, labels)],
        eval_sets={}, select=dict, class_names=("NORMAL", "PNEUMONIA"), world=world,
    )
    train_one_epoch(parts, progress=False)
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    torch.save(dict(grads=grads, images=images, labels=labels), f"{out}/rank{world.rank}.pt")
    distributed.leave(world)
    """
)


def test_the_first_step_averages_to_one_process_on_the_same_global_batch(tiny_data, tmp_path):
    script = tmp_path / "first_step.py"
    script.write_text(FIRST_STEP)
    result = subprocess.run(
        [*TORCHRUN, str(script), str(tiny_data), str(tmp_path / "cache"), str(tmp_path)],
        env=ENV, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]
    assert all(len(r["labels"]) == 8 for r in ranks)  # the global 16, split evenly
    assert not torch.equal(ranks[0]["images"], ranks[1]["images"])  # different shares

    # One process, the same initial weights, on the union of the two shares. BatchNorm runs on
    # fixed statistics in both: in training mode each process normalises its own share (DDP's
    # documented difference; --sync-bn, CUDA only, removes it), and that is not what is tested.
    torch.manual_seed(0)
    model = models.build_model("scratch", dropout=0.0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.requires_grad_(False)
    batch = (torch.cat([r["images"] for r in ranks]), torch.cat([r["labels"] for r in ranks]))
    cfg = TrainConfig(batch_size=16, image_size=32, dropout=0.0, max_batches=1)
    weighted = torch.nn.CrossEntropyLoss(weight=torch.tensor([2.0, 0.5]))
    parts = Parts(
        cfg=cfg, device=torch.device("cpu"), amp_dtype=None, model=model, forward_model=model,
        average=None, scored=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.0), scheduler=None,
        scaler=torch.amp.GradScaler("cpu", enabled=False), criterion=weighted, batches=[batch],
        eval_sets={}, select=dict, class_names=("NORMAL", "PNEUMONIA"),
    )  # fmt: skip
    train_one_epoch(parts, progress=False)
    alone = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert alone.keys() == ranks[0]["grads"].keys() == ranks[1]["grads"].keys()
    for name, grad in alone.items():
        torch.testing.assert_close(ranks[0]["grads"][name], grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(ranks[1]["grads"][name], grad, rtol=1e-4, atol=1e-6)


def test_evaluation_predictions_gathered_over_ranks_line_up_with_the_split(monkeypatch):
    """Each rank scores images rank, rank + size, ... of a split (HeldSplit.in_order); gathered,
    the predictions are in the split's order, so that <split>_predictions.csv pairs each file
    with its own probability (11 images over 3 ranks: shares of 4, 4 and 3)."""
    import numpy as np

    from pneumo_utils.runtime import distributed
    from pneumo_utils.runtime.distributed import World

    labels = np.arange(11)
    logits = np.stack([labels * 10.0, -labels * 1.0], axis=1)
    shares = [(logits[rank::3], labels[rank::3]) for rank in range(3)]

    def all_gather_object(parts, _):
        parts[:] = shares

    monkeypatch.setattr(distributed.dist, "all_gather_object", all_gather_object)
    ordered_logits, ordered_labels = World(rank=1, size=3).gather_in_order(*shares[1])
    assert (ordered_labels == labels).all() and (ordered_logits == logits).all()
