"""The training loop, the epoch's metrics, the run folder, resume and its log."""
