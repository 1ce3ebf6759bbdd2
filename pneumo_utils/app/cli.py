"""`python -m pneumo_utils COMMAND` (or `pneumo COMMAND`): the command line.

Each command is a pair in COMMANDS: a function that adds its arguments and one that runs it
(importing what it needs then, so that `--help` stays quick). User mistakes end with one line
on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path

from pneumo_utils.app.flags import (
    DATA_DEFAULT,
    HelpFormatter,
    add_command,
    add_config_flags,
    add_progress_flag,
    positive_int,
)
from pneumo_utils.runtime.errors import OtherRankFailed, UserError
from pneumo_utils.splits import EVALUATED_SPLITS
from pneumo_utils.tasks import TASKS

DEFAULTS_NOTE = (
    "Without --recipe or --config the defaults are the course report's protocol: Adam, "
    "lr 0.001, batch 32, 40 epochs, 224 px."
)


# ----------------------------------------------------------------------------- train


def _train_arguments(commands) -> None:
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


def _train(args: argparse.Namespace) -> None:
    from pneumo_utils.app.pipeline import train
    from pneumo_utils.app.settings import default_data
    from pneumo_utils.config import TrainConfig
    from pneumo_utils.recipes import recipe_config

    options = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    if not args.config:  # a saved run keeps its data; everything else reads the one default
        options.setdefault("data", str(default_data()))
    if args.recipe:
        config = recipe_config(args.recipe, **options)
    elif args.config:
        config = replace(_saved_config(Path(args.config)), **options)
    else:
        config = TrainConfig(**options)
    train(config, args.out, new_run=args.new_run, fallback_checkpoint=args.fallback_checkpoint,
          progress=args.progress)  # fmt: skip


def _saved_config(path: Path):
    from pneumo_utils.config import TrainConfig

    if path.is_dir():
        path = path / "config.json"
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path} ({error}): pass a run's config.json") from None
    return TrainConfig.from_dict(saved.get("config", saved))


# ----------------------------------------------------------------------------- the runs


def _reproduce_arguments(commands) -> None:
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


def _reproduce(args: argparse.Namespace) -> None:
    from pneumo_utils.app.reproduce import reproduce

    reproduce(args.data, dry_run=args.dry_run, parallel=args.parallel, only=args.only,
              render=args.render)  # fmt: skip


def _results_arguments(commands) -> None:
    results = add_command(
        commands,
        "results",
        help="every table and figure across the runs on a dataset: docs/results.md and figures/",
    )
    results.add_argument("--data", help=f"the dataset whose runs are reported; {DATA_DEFAULT}")


def _results(args: argparse.Namespace) -> None:
    from pneumo_utils.app.render import render_results
    from pneumo_utils.app.settings import notebook_settings

    if args.data:
        os.environ["PNEUMO_DATA"] = str(Path(args.data).expanduser().resolve())
    render_results(notebook_settings())


# ----------------------------------------------------------------------------- one run


def _evaluate_arguments(commands) -> None:
    evaluate = add_command(commands, "evaluate", help="metrics of a run's best checkpoint")
    evaluate.add_argument("run_dir", help="a run folder written by train")
    evaluate.add_argument("--data", help="dataset folder (default: the one the run used)")
    evaluate.add_argument("--split", choices=("train", *EVALUATED_SPLITS), default="test")


def _evaluate(args: argparse.Namespace) -> None:
    from pneumo_utils.analysis.scoring import evaluate_run

    print(json.dumps(evaluate_run(args.run_dir, args.data, args.split), indent=2))


def _robustness_arguments(commands) -> None:
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


def _robustness(args: argparse.Namespace) -> None:
    from pneumo_utils.analysis.robustness import robustness_report
    from pneumo_utils.training.epoch_log import show_progress

    robustness_report(args.run_dir, args.data, args.resamples, show_progress(args.progress))


def _predict_arguments(commands) -> None:
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


def _predict(args: argparse.Namespace) -> None:
    from pneumo_utils.app.predict import predict_command
    from pneumo_utils.training.epoch_log import show_progress

    predict_command(args.run_dir, args.inputs, args.out, args.batch_size,
                    show_progress(args.progress))  # fmt: skip


def _export_arguments(commands) -> None:
    export = add_command(
        commands,
        "export",
        help="the best model as plain torchvision weights (.pth, .safetensors) and a card",
    )
    export.add_argument("run_dir", help="a finished run folder")
    export.add_argument("--out", metavar="DIR", help="default: RUN_DIR/export")


def _export(args: argparse.Namespace) -> None:
    from pneumo_utils.app.export import export_run

    export_run(args.run_dir, args.out)


# ----------------------------------------------------------------------------- the data


def _audit_arguments(commands) -> None:
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


def _audit(args: argparse.Namespace) -> None:
    from pneumo_utils.analysis.audit import shortcut_audit
    from pneumo_utils.app.settings import default_data

    result = shortcut_audit(args.data or default_data(), args.image_size, task=args.task)
    print(result.auc.round(3).to_string(), end="\n\n")
    print(result.single.round(3).to_string())
    if args.csv:
        result.properties.to_csv(args.csv, index=False)


def _bench_arguments(commands) -> None:
    bench = add_command(commands, "bench", help="images/s of the data pipeline and training step")
    bench.add_argument("--data", help=f"dataset folder; {DATA_DEFAULT}")
    bench.add_argument("--image-size", type=int, default=224)
    bench.add_argument("--batch-size", type=positive_int, default=32)
    bench.add_argument("--batches", type=positive_int, default=8, help="timed batches per pipeline")
    bench.add_argument("--device", default="auto")
    bench.add_argument("--json", metavar="FILE", help="also write the results as JSON")


def _bench(args: argparse.Namespace) -> None:
    from pneumo_utils.app.bench import run_benchmark
    from pneumo_utils.app.settings import default_data

    run_benchmark(args.data or default_data(), image_size=args.image_size,
                  batch_size=args.batch_size, batches=args.batches, device=args.device,
                  json_path=Path(args.json) if args.json else None)  # fmt: skip


def _download_arguments(commands) -> None:
    download = add_command(commands, "download", help="fetch and unpack the Mendeley dataset")
    download.add_argument(
        "--dest", default="data", help="folder to extract into, default %(default)s"
    )
    download.add_argument("--url", help="archive URL (default: Mendeley's ChestXRay2017.zip)")


def _download(args: argparse.Namespace) -> None:
    from pneumo_utils.app.download import MENDELEY_URL, download_dataset

    download_dataset(args.url or MENDELEY_URL, Path(args.dest))


def _notebooks_arguments(commands) -> None:
    notebooks = add_command(
        commands, "notebooks", help="run notebooks 01-04 headless (PNEUMO_PROFILE=smoke: minutes)"
    )
    notebooks.add_argument("--notebooks", default="notebooks", help="default %(default)s")
    notebooks.add_argument(
        "--download",
        action="store_true",
        help="download the dataset into data/ when there is none (the full profile)",
    )


def _notebooks(args: argparse.Namespace) -> None:
    from pneumo_utils.app.headless import run_notebooks

    run_notebooks(Path(args.notebooks), download=args.download)


# ----------------------------------------------------------------------------- the table

Command = tuple[Callable, Callable[[argparse.Namespace], None]]
# Every command: the function that adds its arguments, and the one that runs it; --help lists
# them in this order.
COMMANDS: dict[str, Command] = {
    "train": (_train_arguments, _train),
    "reproduce": (_reproduce_arguments, _reproduce),
    "results": (_results_arguments, _results),
    "evaluate": (_evaluate_arguments, _evaluate),
    "robustness": (_robustness_arguments, _robustness),
    "predict": (_predict_arguments, _predict),
    "export": (_export_arguments, _export),
    "audit": (_audit_arguments, _audit),
    "bench": (_bench_arguments, _bench),
    "download": (_download_arguments, _download),
    "notebooks": (_notebooks_arguments, _notebooks),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pneumo" if Path(sys.argv[0]).name == "pneumo" else "python -m pneumo_utils",
        description="Pneumonia detection on chest X-rays with ResNet-18.",
        formatter_class=HelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_arguments, _ in COMMANDS.values():
        add_arguments(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _, run = COMMANDS[args.command]
    try:
        run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OtherRankFailed:  # under torchrun: rank 0 has printed the error
        return 2
    except KeyboardInterrupt:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    return 0
