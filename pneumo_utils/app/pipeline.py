"""One run from its config to its report, as the notebooks and `python -m pneumo_utils train`
run it: fit (training/fit.py, around training/loop.py), then score the best checkpoint on test
and write the robustness report (analysis/scoring.py). The loop knows nothing of the scoring."""

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
    fitted = fit(cfg, out, new_run=new_run, fallback_checkpoint=fallback_checkpoint,
                 progress=progress)  # fmt: skip
    if fitted.already_finished:
        return fitted.run_dir
    if fitted.data is not None:
        finalize(fitted.run_dir, data=fitted.data, device=fitted.device, progress=fitted.progress)
    print(f"total wall time: {time.perf_counter() - started:.1f} s")
    return fitted.run_dir
