"""The training loop, `train` around it (fit.py) and the parts it is built from, the epoch's
metrics and log, checkpoints, the run folder, resume."""
