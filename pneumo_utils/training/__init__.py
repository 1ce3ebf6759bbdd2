"""The training loop, fit around it and the parts it is built from, the epoch's metrics and log,
checkpoints, the run folder, resume."""
