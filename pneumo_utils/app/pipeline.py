"""One run from its config to its report, as the notebooks and `python -m pneumo_utils train`
run it: training (training/fit.py, around training/loop.py) hands the run in memory to the
scoring, which scores its best epoch on test and writes the robustness report
(analysis/scoring.py). The training package knows nothing of the scoring: it is wired in here."""

from __future__ import annotations

import functools

from pneumo_utils.analysis.scoring import finalize
from pneumo_utils.training import fit

train = functools.partial(fit.train, then=finalize)
train.__doc__ = """train(cfg, out, *, new_run=False, fallback_checkpoint=False, progress=None)

Train (or resume) a run into the run folder `out`, then score it from memory: the threshold
chosen on validation, metrics.json, every split's predictions and the robustness report. A
finished run is left as it is. Returns the run folder."""
