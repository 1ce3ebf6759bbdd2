"""What each command of the command line accepts: its arguments, the help layout, and the
train flags generated from the TrainConfig fields (config.py), so that a new setting needs no
change here."""

from __future__ import annotations

import argparse
import shutil
import textwrap
from dataclasses import MISSING, asdict, fields

from pneumo_utils.splits import EVALUATED_SPLITS
from pneumo_utils.tasks import TASKS

TYPES = {"int": int, "float": float, "str": str}
METAVARS = {int: "N", float: "X"}
DATA_DEFAULT = "default $PNEUMO_DATA, else data/chest_xray"
DEFAULTS_NOTE = (
    "Without --recipe or --config the defaults are the course report's protocol: Adam, "
    "lr 0.001, batch 32, 40 epochs, 224 px."
)


# The train flags' groups, in the order --help shows them, by TrainConfig's setting groups.
FLAG_GROUPS = {
    "data": ("data",),
    "model": ("model",),
    "training": ("optimisation",),
    "levers and selection": ("shortcuts", "selection"),
    "machine": ("run",),
}


class HelpFormatter(argparse.HelpFormatter):
    """At most 100 columns, and names with hyphens (recipes, flags) never broken."""

    def __init__(self, prog: str):
        width = min(100, shutil.get_terminal_size().columns)
        super().__init__(prog, width=width, max_help_position=28)

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=False)

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return textwrap.fill(text, width, initial_indent=indent, subsequent_indent=indent,
                             break_on_hyphens=False, break_long_words=False)  # fmt: skip


def add_command(commands, name: str, help: str, **options) -> argparse.ArgumentParser:
    """A subcommand whose one-line help is also its description."""
    options.setdefault("description", help[0].upper() + help[1:] + ".")
    return commands.add_parser(name, help=help, formatter_class=HelpFormatter, **options)


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field. Only flags given on the line land in the namespace
    (default SUPPRESS), so they override the recipe or saved config and nothing else does."""
    from pneumo_utils.config import TrainConfig

    defaults = asdict(TrainConfig())
    titled = {title: parser.add_argument_group(title) for title in FLAG_GROUPS}
    groups = {kind: titled[title] for title, kinds in FLAG_GROUPS.items() for kind in kinds}
    for f in fields(TrainConfig):
        meta = f.metadata
        group = groups[meta["group"]]
        flag = meta["flag"] or f"--{f.name.replace('_', '-')}"
        default = defaults[f.name] if f.default is not MISSING else None
        if f.type == "bool":
            action = "store_false" if default else "store_true"
            group.add_argument(
                flag, dest=f.name, action=action, default=argparse.SUPPRESS, help=meta["help"]
            )
            continue
        kind = TYPES[f.type.split(" | ")[0]]
        shown = f"; default {default}" if default is not None else ""
        choices = f" (one of: {', '.join(meta['choices'])})" if meta["choices"] else ""
        group.add_argument(
            flag,
            dest=f.name,
            type=kind,
            choices=meta["choices"],
            default=argparse.SUPPRESS,
            metavar=METAVARS.get(kind, f.name.split("_")[-1].upper()),
            help=meta["help"] + choices + shown,
        )


def add_progress_flag(parser: argparse.ArgumentParser, without: str) -> None:
    parser.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        default=None,
        help=f"no progress bar (also TQDM_DISABLE=1, or no terminal): {without}",
    )


# ----------------------------------------------------------------------------- each command


def train_arguments(commands) -> None:
    from pneumo_utils.recipes import HEADLINE, RECIPES

    train = add_command(
        commands,
        "train",
        help="train or resume one run",
        description=DEFAULTS_NOTE,
        usage="%(prog)s --out DIR [--recipe NAME | --config FILE] [options]",
    )
    start = train.add_mutually_exclusive_group()
    start.add_argument(
        "--recipe",
        metavar="NAME",
        help=f"start from a named recipe (the headline is {HEADLINE}): {', '.join(RECIPES)}",
    )
    start.add_argument(
        "--config", metavar="FILE", help="start from a run's config.json (re-run that run)"
    )
    train.add_argument(
        "--out", required=True, metavar="DIR", help="run folder; an existing one is resumed"
    )
    train.add_argument(
        "--new-run",
        action="store_true",
        help="set an existing run in --out aside (renamed, not deleted) and start again",
    )
    train.add_argument(
        "--fallback-checkpoint",
        action="store_true",
        help="if last.pt is unreadable, resume from the previous good checkpoint",
    )
    add_progress_flag(train, "one line per epoch instead")
    add_config_flags(train)


def reproduce_arguments(commands) -> None:
    reproduce = add_command(
        commands,
        "reproduce",
        help="train every run of the results table (skips done, resumes partial), then render",
    )
    reproduce.add_argument("--data", help=f"dataset folder; {DATA_DEFAULT}")
    reproduce.add_argument(
        "--dry-run", action="store_true", help="list the runs and their state; train nothing"
    )
    reproduce.add_argument(
        "--parallel",
        type=positive_int,
        default=1,
        help="trainings at once (CPU threads split between them; one per GPU); default 1",
    )
    reproduce.add_argument(
        "--only", metavar="RECIPE", action="append", help="only this recipe (repeatable)"
    )
    reproduce.add_argument(
        "--no-render",
        dest="render",
        action="store_false",
        help="train only; do not render the results nor run the notebooks",
    )


def results_arguments(commands) -> None:
    results = add_command(
        commands,
        "results",
        help="every table and figure across the runs on a dataset: docs/results.md and figures/",
    )
    results.add_argument("--data", help=f"the dataset whose runs are reported; {DATA_DEFAULT}")


def evaluate_arguments(commands) -> None:
    evaluate = add_command(commands, "evaluate", help="metrics of a run's best checkpoint")
    evaluate.add_argument("run_dir", help="a run folder written by train")
    evaluate.add_argument("--data", help="dataset folder (default: the one the run used)")
    evaluate.add_argument("--split", choices=("train", *EVALUATED_SPLITS), default="test")


def robustness_arguments(commands) -> None:
    robustness = add_command(
        commands,
        "robustness",
        help="a run's best checkpoint on perturbed test images, subgroups, calibration "
        "(writes robustness.json and .csv into the run folder)",
    )
    robustness.add_argument("run_dir", help="a finished run folder with its best.pt")
    robustness.add_argument("--data", help="dataset folder (default: the one the run used)")
    robustness.add_argument(
        "--resamples", type=positive_int, default=1000,
        help="patient bootstrap resamples; default %(default)s",
    )  # fmt: skip
    add_progress_flag(robustness, "one summary line at the end")


def predict_arguments(commands) -> None:
    predict = add_command(
        commands, "predict", help="P(pneumonia) for image files, folders or globs, as CSV"
    )
    predict.add_argument("run_dir", help="a run folder written by train")
    predict.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders or globs")
    predict.add_argument("--out", metavar="FILE", help="write the CSV here (default: stdout)")
    predict.add_argument(
        "--batch-size", type=positive_int, default=64, help="images in memory at once; default 64"
    )
    add_progress_flag(predict, "only the summary line on stderr")


def export_arguments(commands) -> None:
    export = add_command(
        commands,
        "export",
        help="the best model as plain torchvision weights (.pth, .safetensors) and a card",
    )
    export.add_argument("run_dir", help="a finished run folder")
    export.add_argument("--out", metavar="DIR", help="default: RUN_DIR/export")


def audit_arguments(commands) -> None:
    audit = add_command(
        commands,
        "audit",
        help="the shortcut audit: how much of the label the files' properties give",
    )
    audit.add_argument("--data", help=f"dataset folder (Kaggle or Mendeley layout); {DATA_DEFAULT}")
    audit.add_argument(
        "--image-size", type=int, default=128, help="decoded size of the pixel properties"
    )
    audit.add_argument(
        "--csv",
        metavar="FILE",
        help="also write every file's properties as CSV (.csv.gz: compressed); "
        "data/summaries/<dataset>.csv.gz is the summary notebook 01 shows without the dataset",
    )
    audit.add_argument(
        "--task",
        choices=[name for name, task in TASKS.items() if task.binary],
        default="pneumonia",
        help="the labels the properties are tested against: NORMAL vs PNEUMONIA, or bacterial "
        "vs viral among the PNEUMONIA files",
    )


def bench_arguments(commands) -> None:
    bench = add_command(commands, "bench", help="images/s of the data pipeline and training step")
    bench.add_argument("--data", help=f"dataset folder; {DATA_DEFAULT}")
    bench.add_argument("--image-size", type=int, default=224)
    bench.add_argument("--batch-size", type=positive_int, default=32)
    bench.add_argument("--batches", type=positive_int, default=8, help="timed batches per pipeline")
    bench.add_argument("--device", default="auto")
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")


def download_arguments(commands) -> None:
    download = add_command(commands, "download", help="fetch and unpack the Mendeley dataset")
    download.add_argument(
        "--dest", default="data", help="folder to extract into, default %(default)s"
    )
    download.add_argument("--url", help="archive URL (default: Mendeley's ChestXRay2017.zip)")


def notebooks_arguments(commands) -> None:
    notebooks = add_command(
        commands, "notebooks", help="run notebooks 01-04 headless (PNEUMO_PROFILE=smoke: minutes)"
    )
    notebooks.add_argument("--notebooks", default="notebooks", help="default %(default)s")
    notebooks.add_argument(
        "--download",
        action="store_true",
        help="download the dataset into data/ when there is none (the full profile)",
    )
    notebooks.add_argument(
        "--save",
        action="store_true",
        help="execute them on the committed files alone and save them with their outputs in "
        "place (after committing new runs; `pytest --nbval` compares against these outputs)",
    )
