"""One run on several processes under torchrun (DistributedDataParallel): the process group,
what each rank does, and the collectives the training loop needs.

    torchrun --nproc_per_node=N -m pneumo_utils train --recipe NAME ...

Without torchrun (no WORLD_SIZE in the environment) the world is one process and every method
here is a no-op, so a plain run computes exactly what it did before. Under torchrun:
- `--batch-size` stays the global batch (the course report's 32), split evenly across the
  processes, so the learning rate means what it says;
- every rank trains on its shard of the epoch's order (data/batches.py) and scores its own
  unpadded share of each evaluated split; predictions are gathered, so every image counts
  once and every rank computes the same history row, selection and early stopping;
- rank 0 alone builds the decoded-image cache and fetches the weights (the others wait, then
  read them), takes the run lock, writes the run folder, prints and shows progress; the other
  ranks print only errors and warnings;
- the training loss is the criterion's mean over the global batch (class weights included),
  so the averaged gradient is the one of a single process on the same batch. The training
  columns of history.csv include the few images repeated to even out the shards; every
  evaluated split counts each image once.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from pneumo_utils.runtime.errors import OtherRankFailed, UserError


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def record(self, batch_size: int) -> dict:
        """What config.json keeps: a run resumes only with the world size it started with."""
        backend = dist.get_backend() if self.distributed else None
        return dict(world_size=self.size, backend=backend,
                    batch_size_per_process=self.batch_per_process(batch_size))  # fmt: skip

    def batch_per_process(self, batch_size: int) -> int:
        if batch_size % self.size:
            raise UserError(
                f"--batch-size {batch_size} is the global batch and does not split evenly over "
                f"{self.size} processes: pass a multiple of {self.size}"
            )
        return batch_size // self.size

    def device(self, device: torch.device) -> torch.device:
        """One GPU per process (torchrun's LOCAL_RANK); CPU processes share the CPU."""
        if self.distributed and device.type == "cuda":
            device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        return device

    def wrap(
        self, model: torch.nn.Module, device: torch.device, compile: bool = False
    ) -> torch.nn.Module:
        """What the training step calls: the model as DDP sees it (gradients averaged over the
        ranks at each step), compiled with torch.compile if asked."""
        if self.distributed:
            device_ids = [device.index] if device.type == "cuda" else None
            model = torch.nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        return torch.compile(model) if compile else model

    def share_buffers(self, model: torch.nn.Module) -> None:
        """Rank 0's BatchNorm running statistics on every rank. DDP sends them at each forward,
        but every rank then updates its own from its share: after the last step they differ,
        and evaluation would score each share with another model than the one saved."""
        if self.distributed:
            for buffer in model.buffers():
                dist.broadcast(buffer, src=0)

    def main_first(self, work):
        """`work()` on rank 0, then on the others (a cache that rank 0 built, they read); a
        failure on rank 0 stops the others too."""
        if not self.distributed:
            return work()
        kept = []  # rank 0's result stays on rank 0: only its success is broadcast
        self.from_main(lambda: kept.append(work()))
        return kept[0] if self.is_main else work()

    def from_main(self, work):
        """`work()` on rank 0 only, its result (or its failure) given to every rank."""
        if not self.distributed:
            return work()
        outcome = [None]
        if self.is_main:
            try:
                outcome[0] = ("ok", work())
            except BaseException:
                dist.broadcast_object_list([("failed", None)], src=0)
                raise
        dist.broadcast_object_list(outcome, src=0)
        status, result = outcome[0]
        if status == "failed":
            raise OtherRankFailed
        return result

    def batch_loss(self, criterion, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """`criterion` (a cross-entropy, maybe class-weighted) as its mean over the global
        batch, scaled so that DDP's average of the ranks' gradients is that mean's gradient."""
        if not self.distributed:
            return criterion(logits, labels)
        weight = criterion.weight
        summed = torch.nn.functional.cross_entropy(logits, labels, weight=weight, reduction="sum")
        local = weight[labels].sum() if weight is not None else torch.tensor(float(len(labels)))
        total = local.detach().to(logits.device, torch.float64).reshape(1)  # a copy: all_reduce
        dist.all_reduce(total)  # writes into it
        return summed * self.size / total.to(summed.dtype)

    def all_true(self, flag: torch.Tensor) -> bool:
        """Whether a condition (a loss is finite, say) holds on every rank."""
        if not self.distributed:
            return bool(flag)
        agreed = flag.detach().to(torch.int32).reshape(1)
        dist.all_reduce(agreed, op=dist.ReduceOp.MIN)
        return bool(agreed.item())

    def smallest(self, value: torch.Tensor) -> int:
        """The smallest of an integer (a tensor on this rank's device) over the ranks."""
        if not self.distributed:
            return int(value)
        smallest = value.detach().to(torch.int64).reshape(1)
        dist.all_reduce(smallest, op=dist.ReduceOp.MIN)
        return int(smallest.item())

    def gather(self, logits: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every rank's predictions on every rank, rank by rank (training's metrics do not
        depend on their order)."""
        if not self.distributed:
            return logits, labels
        parts = self._every_rank(logits, labels)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])

    def _every_rank(self, logits: np.ndarray, labels: np.ndarray) -> list[tuple]:
        """(logits, labels) of every rank, rank 0's first, on every rank."""
        parts = [None] * self.size
        dist.all_gather_object(parts, (logits, labels))
        return parts

    def gather_in_order(self, logits: np.ndarray, labels: np.ndarray):
        """Every rank's predictions of a split shared as HeldSplit.in_order shares it (rank r
        scores images r, r + size, ...), on every rank and in the split's order, so that they
        line up with its files."""
        if not self.distributed:
            return logits, labels
        parts = self._every_rank(logits, labels)
        n = sum(len(part[1]) for part in parts)
        ordered = np.empty((n, *parts[0][0].shape[1:]), parts[0][0].dtype)
        ordered_labels = np.empty(n, parts[0][1].dtype)
        for rank, (rank_logits, rank_labels) in enumerate(parts):
            ordered[rank :: self.size], ordered_labels[rank :: self.size] = rank_logits, rank_labels
        return ordered, ordered_labels


SINGLE = World()


def join(device_name: str) -> World:
    """The world of this process: torchrun's process group (nccl on CUDA, gloo on CPU) when
    torchrun launched it, otherwise one process."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return SINGLE
    world = World(int(os.environ["RANK"]), size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        if torch.cuda.is_available() and not device_name.startswith(("cpu", "mps")):
            # Each rank's GPU first: NCCL's collectives run on the current device.
            gpu = torch.device("cuda", world.local_rank)
            torch.cuda.set_device(gpu)
            dist.init_process_group("nccl", device_id=gpu)
        else:
            dist.init_process_group("gloo")
    if not world.is_main:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    return world


def leave(world: World) -> None:
    if world.distributed and dist.is_initialized():
        dist.destroy_process_group()
