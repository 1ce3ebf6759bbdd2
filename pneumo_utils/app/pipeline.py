"""One run from its config to its report, as the notebooks and `python -m pneumo_utils train`
run it: fit (training/fit.py, around training/loop.py) returns the run in memory, then its best
epoch is scored on test and the robustness report written (analysis/scoring.py). The loop knows
nothing of the scoring."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pneumo_utils.analysis.scoring import finalize
from pneumo_utils.config import TrainConfig
from pneumo_utils.training.fit import fit


def train(
    cfg: TrainConfig,
    out: str | os.PathLike,
    *,
    new_run: bool = False,
    fallback_checkpoint: bool = False,
    progress: bool | None = None,
) -> Path:
    """Train (or resume) a run into `out`, then score it; a finished run is left as it is."""
    started = time.perf_counter()
    run = fit(cfg, out, new_run=new_run, fallback_checkpoint=fallback_checkpoint,
              progress=progress)  # fmt: skip
    if run.already_finished:
        return run.run_dir
    if run.data is not None:  # rank 0 of a torchrun launch, or the only process
        finalize(run)
    print(f"total wall time: {time.perf_counter() - started:.1f} s")
    return run.run_dir
