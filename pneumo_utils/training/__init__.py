"""The training loop and what it is built from, the epoch's metrics, the run folder and its
checkpoints, resume, the epoch's log line."""
