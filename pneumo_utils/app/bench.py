"""`python -m pneumo_utils bench`: training images/s for three pipelines, in one process.

(a) baseline  the course report's style: ImageFolder + PIL decode, Resize, ToTensor on every
              item of every epoch; fp32, NCHW, a default DataLoader
(b) pipeline  pneumo_utils as training runs it: the decoded-image cache held on the device,
              batches augmented there (the classic augmentation, per-image parameters),
              channels_last, autocast (bf16 on capable CPUs, AMP on CUDA)
(c) ceiling   (b)'s training step on random tensors already on the device: no data loading
"""

from __future__ import annotations

import copy
import itertools
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from pneumo_utils.config import TrainConfig
from pneumo_utils.data.augment import Augmentation
from pneumo_utils.data.batches import TrainingBatches, hold
from pneumo_utils.data.dataset import load_data
from pneumo_utils.data.files import find_dataset_root
from pneumo_utils.data.model_input import to_model_input
from pneumo_utils.data.pneumoniamnist import is_npz
from pneumo_utils.model import build_model
from pneumo_utils.runtime.device import (
    autocast,
    autocast_dtype,
    hardware_summary,
    pick_device,
)
from pneumo_utils.runtime.errors import UserError
from pneumo_utils.training.metrics import predict_logits


def _train_steps(
    model, batches, device, amp_dtype, channels_last, prepare, count, warmup=1
) -> float:
    """Images/s over `count` training steps, after `warmup` untimed steps."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    images_seen, started = 0, None
    for step, (images, labels) in enumerate(itertools.islice(batches, count + warmup)):
        if step == warmup:
            _sync(device)
            started = time.perf_counter()
        inputs = prepare(images)
        with autocast(device, amp_dtype):
            loss = torch.nn.functional.cross_entropy(model(inputs).float(), labels.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        images_seen += len(labels) if step >= warmup else 0
    _sync(device)
    return images_seen / (time.perf_counter() - started)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _forever(loader):
    while True:
        yield from loader


def _epochs(batches: TrainingBatches):
    """Training batches without end, each epoch in a new order."""
    for epoch in itertools.count():
        batches.start_epoch(epoch)
        yield from batches


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak_kb / 1024 if sys.platform != "darwin" else peak_kb / 2**20


def run_benchmark(
    data_dir: str,
    image_size: int = 224,
    batch_size: int = 32,
    batches: int = 8,
    device: str = "auto",
    json_path: Path | None = None,
) -> dict:
    root = find_dataset_root(data_dir)
    if is_npz(root):
        raise UserError(
            f"bench times decoding image files (the course report's ImageFolder pipeline against "
            f"the decoded-image cache), and {root} holds decoded 28 px arrays: pass a dataset "
            "folder of image files, such as data/chest_xray"
        )
    device = pick_device(device)
    amp_dtype = autocast_dtype(device)
    model = build_model("scratch")
    results = dict(
        data=str(root),
        image_size=image_size,
        batch_size=batch_size,
        batches=batches,
        device=str(device),
        hardware=hardware_summary(device),
        autocast=str(amp_dtype) if amp_dtype else "off",
        torch=torch.__version__,
    )
    print(
        f"bench on {results['hardware']} ({device}), {image_size}px, batch {batch_size}, "
        f"{batches} timed batches per pipeline"
    )

    results["a_baseline"] = _baseline_pipeline(root, model, device, image_size, batch_size, batches)
    results.update(_our_pipeline(root, model, device, amp_dtype, image_size, batch_size, batches))
    results["b_over_a"] = results["b_pipeline"] / results["a_baseline"]
    results["b_over_c"] = results["b_pipeline"] / results["c_ceiling"]
    results["peak_memory_mb"] = _peak_memory_mb(device)

    print(format_table(results))
    if json_path:
        json_path.write_text(json.dumps(results, indent=2))
        print(f"wrote {json_path}")
    return results


def _baseline_pipeline(root: Path, model, device, image_size: int, batch_size: int, batches: int):
    """(a) The seed's pipeline: ImageFolder, PIL resize and ToTensor every step, fp32."""
    baseline_set = datasets.ImageFolder(
        str(root / "train"),
        transforms.Compose([transforms.Resize((image_size, image_size)), transforms.ToTensor()]),
    )
    baseline_loader = DataLoader(baseline_set, batch_size=batch_size, shuffle=True)
    return _train_steps(
        copy.deepcopy(model).to(device),
        _forever(baseline_loader),
        device,
        None,
        False,
        lambda images: images.to(device),
        batches,
    )


def _our_pipeline(root: Path, model, device, amp_dtype, image_size, batch_size, batches) -> dict:
    """(b) pneumo_utils' pipeline, the cache built in a fresh folder so its cost is measured
    too; (c) the same step with no data loading at all; and evaluation speed."""
    results = {}
    with tempfile.TemporaryDirectory() as cache_dir:
        started = time.perf_counter()
        data = load_data(root, image_size, cache_dir=cache_dir, progress=False)
        results["cache_build_s"] = time.perf_counter() - started
        results["cache_images"] = len(data.records)
        fast_model = copy.deepcopy(model).to(device, memory_format=torch.channels_last)
        train = TrainingBatches(
            hold(data, "train", device), batch_size, Augmentation(TrainConfig(augment=True))
        )
        results["b_pipeline"] = _train_steps(
            fast_model,
            _epochs(train),
            device,
            amp_dtype,
            True,
            lambda images: to_model_input(images, device),
            batches,
        )

        # (c) the same step with no data loading at all
        fixed = torch.randn(batch_size, 3, image_size, image_size, device=device)
        fixed = fixed.contiguous(memory_format=torch.channels_last)
        labels = torch.randint(0, 2, (batch_size,))
        results["c_ceiling"] = _train_steps(
            fast_model,
            itertools.repeat((fixed, labels)),
            device,
            amp_dtype,
            True,
            lambda images: images,
            batches,
        )

        eval_loader = hold(data, "test", device).in_order(2 * batch_size)
        started = time.perf_counter()
        logits, _ = predict_logits(
            fast_model, eval_loader, device, amp_dtype, True, max_batches=max(1, batches // 2)
        )
        _sync(device)
        results["eval_images_per_s"] = len(logits) / (time.perf_counter() - started)
    return results


def format_table(results: dict) -> str:
    rows = [
        ("(a) baseline: PIL decode every epoch, fp32, NCHW", f"{results['a_baseline']:8.1f} img/s"),
        ("(b) pneumo_utils: on the device, batched augment", f"{results['b_pipeline']:8.1f} img/s"),
        (
            "(c) ceiling: (b)'s step on device-resident tensors",
            f"{results['c_ceiling']:8.1f} img/s",
        ),
        ("b / a (target >= 2.5 on the 2-core CPU)", f"{results['b_over_a']:8.2f}"),
        ("b / c (target >= 0.9)", f"{results['b_over_c']:8.2f}"),
        ("evaluation, pipeline (b)", f"{results['eval_images_per_s']:8.1f} img/s"),
        (
            f"cache build ({results['cache_images']} images, once)",
            f"{results['cache_build_s']:8.1f} s",
        ),
        ("peak memory", f"{results['peak_memory_mb']:8.0f} MB"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
