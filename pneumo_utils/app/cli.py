"""`python -m pneumo_utils COMMAND` (or `pneumo COMMAND`): the command line.

The train flags are generated from the TrainConfig fields (config.py), so a new setting needs
no change here. User mistakes end with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
from dataclasses import MISSING, asdict, fields
from pathlib import Path

from .errors import OtherRankFailed, UserError
from .tasks import TASKS

DEFAULTS_NOTE = (
    "Without --recipe or --config the defaults are the course report's protocol: Adam, "
    "lr 0.001, batch 32, 40 epochs, 224 px."
)
DATA_DEFAULT = "default $PNEUMO_DATA, else data/chest_xray"
TYPES = {"int": int, "float": float, "str": str}
METAVARS = {int: "N", float: "X"}


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


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One flag per TrainConfig field. Only flags given on the line land in the namespace
    (default SUPPRESS), so they override the recipe or saved config and nothing else does."""
    from .config import TrainConfig

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


def _train_parser(commands) -> None:
    from .recipes import HEADLINE, RECIPES

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
    _add_progress_flag(train, "one line per epoch instead")
    _add_config_flags(train)


def _add_progress_flag(parser: argparse.ArgumentParser, without: str) -> None:
    parser.add_argument(
        "--no-progress",
        dest="progress",
        action="store_false",
        default=None,
        help=f"no progress bar (also TQDM_DISABLE=1, or no terminal): {without}",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pneumo" if Path(sys.argv[0]).name == "pneumo" else "python -m pneumo_utils",
        description="Pneumonia detection on chest X-rays with ResNet-18.",
        formatter_class=HelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _train_parser(commands)

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
        type=_positive_int,
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
        help="train only; do not run the notebooks",
    )

    evaluate = add_command(commands, "evaluate", help="metrics of a run's best checkpoint")
    evaluate.add_argument("run_dir", help="a run folder written by train")
    evaluate.add_argument("--data", help="dataset folder (default: the one the run used)")
    evaluate.add_argument(
        "--split",
        choices=("train", "val", "stressed_val", "frame_val", "reframed_val", "test"),
        default="test",
    )

    robustness = add_command(
        commands,
        "robustness",
        help="a run's best checkpoint on perturbed test images, subgroups, calibration "
        "(writes robustness.json and .csv into the run folder)",
    )
    robustness.add_argument("run_dir", help="a finished run folder with its best.pt")
    robustness.add_argument("--data", help="dataset folder (default: the one the run used)")
    robustness.add_argument(
        "--resamples", type=_positive_int, default=1000,
        help="patient bootstrap resamples; default %(default)s",
    )  # fmt: skip
    _add_progress_flag(robustness, "one summary line at the end")

    predict = add_command(
        commands, "predict", help="P(pneumonia) for image files, folders or globs, as CSV"
    )
    predict.add_argument("run_dir", help="a run folder written by train")
    predict.add_argument("inputs", nargs="+", metavar="INPUT", help="files, folders or globs")
    predict.add_argument("--out", metavar="FILE", help="write the CSV here (default: stdout)")
    predict.add_argument(
        "--batch-size", type=_positive_int, default=64, help="images in memory at once; default 64"
    )
    _add_progress_flag(predict, "only the summary line on stderr")

    export = add_command(
        commands,
        "export",
        help="the best model as plain torchvision weights (.pth, .safetensors) and a card",
    )
    export.add_argument("run_dir", help="a finished run folder")
    export.add_argument("--out", metavar="DIR", help="default: RUN_DIR/export")

    audit = add_command(
        commands,
        "audit",
        help="the shortcut audit: how much of the label the files' properties give",
    )
    audit.add_argument("--data", help=f"dataset folder (Kaggle or Mendeley layout); {DATA_DEFAULT}")
    audit.add_argument(
        "--image-size", type=int, default=128, help="decoded size of the pixel properties"
    )
    audit.add_argument("--csv", metavar="FILE", help="also write every file's properties as CSV")
    audit.add_argument(
        "--task",
        choices=[name for name, task in TASKS.items() if task.binary],
        default="pneumonia",
        help="the labels the properties are tested against: NORMAL vs PNEUMONIA, or bacterial "
        "vs viral among the PNEUMONIA files",
    )

    bench = add_command(commands, "bench", help="images/s of the data pipeline and training step")
    bench.add_argument("--data", help=f"dataset folder; {DATA_DEFAULT}")
    bench.add_argument("--image-size", type=int, default=224)
    bench.add_argument("--batch-size", type=_positive_int, default=32)
    bench.add_argument(
        "--batches", type=_positive_int, default=8, help="timed batches per pipeline"
    )
    bench.add_argument("--device", default="auto")
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")

    download = add_command(commands, "download", help="fetch and unpack the Mendeley dataset")
    download.add_argument(
        "--dest", default="data", help="folder to extract into, default %(default)s"
    )
    download.add_argument("--url", help="archive URL (default: Mendeley's ChestXRay2017.zip)")

    notebooks = add_command(
        commands, "notebooks", help="run notebooks 01-04 headless (PNEUMO_PROFILE=smoke: minutes)"
    )
    notebooks.add_argument("--notebooks", default="notebooks", help="default %(default)s")
    notebooks.add_argument(
        "--download",
        action="store_true",
        help="download the dataset into data/ when there is none (the full profile)",
    )
    return parser


def _train(args: argparse.Namespace) -> None:
    from dataclasses import replace

    from .config import TrainConfig
    from .loop import train
    from .recipes import recipe_config
    from .settings import default_data

    options = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    if not args.config:  # a saved run keeps its data; everything else reads the one default
        options.setdefault("data", str(default_data()))
    if args.recipe:
        config = recipe_config(args.recipe, **options)
    elif args.config:
        path = Path(args.config)
        if path.is_dir():
            path = path / "config.json"
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise UserError(f"cannot read {path} ({error}): pass a run's config.json") from None
        config = replace(TrainConfig.from_dict(saved.get("config", saved)), **options)
    else:
        config = TrainConfig(**options)
    train(
        config,
        args.out,
        new_run=args.new_run,
        fallback_checkpoint=args.fallback_checkpoint,
        progress=args.progress,
    )


def _run(args: argparse.Namespace) -> None:
    from .settings import default_data

    if args.command == "train":
        _train(args)
    elif args.command == "reproduce":
        from .reproduce import reproduce

        reproduce(args.data, dry_run=args.dry_run, parallel=args.parallel, only=args.only,
                  render=args.render)  # fmt: skip
    elif args.command == "evaluate":
        from .evaluate import evaluate_run

        print(json.dumps(evaluate_run(args.run_dir, args.data, args.split), indent=2))
    elif args.command == "robustness":
        from .epoch_log import show_progress
        from .robustness import robustness_report

        robustness_report(args.run_dir, args.data, args.resamples, show_progress(args.progress))
    elif args.command == "predict":
        from .epoch_log import show_progress
        from .predict import predict_command

        predict_command(
            args.run_dir, args.inputs, args.out, args.batch_size, show_progress(args.progress)
        )
    elif args.command == "export":
        from .export import export_run

        export_run(args.run_dir, args.out)
    elif args.command == "audit":
        from .audit import shortcut_audit

        result = shortcut_audit(args.data or default_data(), args.image_size, task=args.task)
        print(result.auc.round(3).to_string(), end="\n\n")
        print(result.single.round(3).to_string())
        if args.csv:
            result.properties.to_csv(args.csv, index=False)
    elif args.command == "bench":
        from .bench import run_benchmark

        run_benchmark(
            args.data or default_data(),
            image_size=args.image_size,
            batch_size=args.batch_size,
            batches=args.batches,
            device=args.device,
            json_path=Path(args.json) if args.json else None,
        )
    elif args.command == "download":
        from .download import MENDELEY_URL, download_dataset

        download_dataset(args.url or MENDELEY_URL, Path(args.dest))
    elif args.command == "notebooks":
        from .headless import run_notebooks

        run_notebooks(Path(args.notebooks), download=args.download)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OtherRankFailed:  # under torchrun: rank 0 has printed the error
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    return 0
