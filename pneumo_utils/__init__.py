"""Helpers for the pneumonia-detection notebooks: data, models, training, evaluation, plots."""

from .data import CLASS_NAMES, load_data
from .errors import UserError
from .models import build_model
from .train import TrainConfig, finalize, read_config, read_history, train

__all__ = [
    "CLASS_NAMES",
    "TrainConfig",
    "UserError",
    "build_model",
    "finalize",
    "load_data",
    "read_config",
    "read_history",
    "train",
]
__version__ = "0.1.0"
