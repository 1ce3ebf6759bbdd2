"""Helpers for the pneumonia-detection notebooks: data, models, training, evaluation, plots.

The names below load on first use, so that `python -m pneumo_utils --help` and the command
line's parsing import neither torch nor pandas (seconds on a small machine).
"""

from importlib import import_module

# name -> the module that defines it
_EXPORTS = {
    "RECIPES": "recipes",
    "TrainConfig": "config",
    "UserError": "runtime.errors",
    "build_model": "model",
    "load_data": "data.dataset",
    "open_run": "training.runs",
    "preprocess": "data.inputs",
    "read_history": "training.runs",
    "recipe_config": "recipes",
    "train": "app.pipeline",
}
__all__ = sorted(_EXPORTS)
__version__ = "0.2.0"


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'pneumo_utils' has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
