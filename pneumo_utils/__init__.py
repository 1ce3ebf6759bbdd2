"""Helpers for the pneumonia-detection notebooks: data, models, training, evaluation, plots."""

from .config import TrainConfig
from .dataset import CLASS_NAMES, load_data
from .errors import UserError
from .models import build_model
from .predict import preprocess
from .recipes import RECIPES, recipe_config
from .runs import open_run, read_history
from .train import train

__all__ = [
    "CLASS_NAMES",
    "RECIPES",
    "TrainConfig",
    "UserError",
    "build_model",
    "load_data",
    "open_run",
    "preprocess",
    "read_history",
    "recipe_config",
    "train",
]
__version__ = "0.2.0"
