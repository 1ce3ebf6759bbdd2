"""Ctrl-C during training, honoured at the next batch.

Python turns SIGINT into a KeyboardInterrupt wherever the main thread happens to be; when that
is inside a destructor (a progress bar's, a loader iterator's), the exception is printed as
"ignored" and dropped, and the run goes on as if nothing had been pressed. During the epochs a
Ctrl-C is therefore recorded and raised as KeyboardInterrupt at the next batch (or the end of
the epochs), where the run stops with its last checkpoint intact. A second Ctrl-C stops at once.
"""

from __future__ import annotations

import signal
import threading


class StopAtNextBatch:
    """A context for the epoch loop; `check()` at each batch raises a recorded Ctrl-C. Outside
    the main thread (where no handler can be set) it does nothing."""

    def __init__(self) -> None:
        self.requested = False
        self.previous = None

    def __enter__(self) -> StopAtNextBatch:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._record)
        return self

    def _record(self, signum, frame) -> None:
        self.requested = True
        signal.signal(signal.SIGINT, self.previous or signal.default_int_handler)

    def check(self) -> None:
        if self.requested:
            raise KeyboardInterrupt

    def __exit__(self, kind, value, traceback) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
        if kind is None:
            self.check()  # pressed after the last batch: still a stop, before the final metrics
