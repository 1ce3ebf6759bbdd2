"""`python -m pneumo_utils COMMAND` (or `pneumo COMMAND`): the command line.

Each command is a pair in COMMANDS: the function that adds its arguments (arguments.py) and
the one here that runs it (importing what it needs then, so that `--help` stays quick). User
mistakes end with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from dataclasses import fields, replace
from pathlib import Path

from pneumo_utils.app import arguments
from pneumo_utils.app.arguments import HelpFormatter
from pneumo_utils.runtime.errors import OtherRankFailed, UserError

# ----------------------------------------------------------------------------- train


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


def _reproduce(args: argparse.Namespace) -> None:
    from pneumo_utils.app.reproduce import reproduce

    reproduce(args.data, dry_run=args.dry_run, parallel=args.parallel, only=args.only,
              render=args.render)  # fmt: skip


def _results(args: argparse.Namespace) -> None:
    from pneumo_utils.app.render import render_results
    from pneumo_utils.app.settings import notebook_settings

    if args.data:
        os.environ["PNEUMO_DATA"] = str(Path(args.data).expanduser().resolve())
    render_results(notebook_settings())


# ----------------------------------------------------------------------------- one run


def _evaluate(args: argparse.Namespace) -> None:
    from pneumo_utils.analysis.scoring import evaluate_run

    print(json.dumps(evaluate_run(args.run_dir, args.data, args.split), indent=2))


def _robustness(args: argparse.Namespace) -> None:
    from pneumo_utils.analysis.robustness import robustness_report
    from pneumo_utils.training.epoch_log import show_progress

    robustness_report(args.run_dir, args.data, args.resamples, show_progress(args.progress))


def _predict(args: argparse.Namespace) -> None:
    from pneumo_utils.app.predict import predict_command
    from pneumo_utils.training.epoch_log import show_progress

    predict_command(args.run_dir, args.inputs, args.out, args.batch_size,
                    show_progress(args.progress))  # fmt: skip


def _export(args: argparse.Namespace) -> None:
    from pneumo_utils.app.export import export_run

    export_run(args.run_dir, args.out)


# ----------------------------------------------------------------------------- the data


def _audit(args: argparse.Namespace) -> None:
    from pneumo_utils.analysis.audit import shortcut_audit
    from pneumo_utils.app.settings import default_data

    result = shortcut_audit(args.data or default_data(), args.image_size, task=args.task)
    print(result.auc.round(3).to_string(), end="\n\n")
    print(result.single.round(3).to_string())
    if args.csv:
        # Six significant digits: the committed dataset summary stays a few hundred KB.
        result.properties.to_csv(args.csv, index=False, float_format="%.6g")


def _bench(args: argparse.Namespace) -> None:
    from pneumo_utils.app.bench import run_benchmark
    from pneumo_utils.app.settings import default_data

    run_benchmark(args.data or default_data(), image_size=args.image_size,
                  batch_size=args.batch_size, batches=args.batches, device=args.device,
                  json_path=Path(args.json) if args.json else None)  # fmt: skip


def _download(args: argparse.Namespace) -> None:
    from pneumo_utils.app.download import MENDELEY_URL, download_dataset

    download_dataset(args.url or MENDELEY_URL, Path(args.dest))


def _notebooks(args: argparse.Namespace) -> None:
    from pneumo_utils.app.headless import run_notebooks

    run_notebooks(Path(args.notebooks), download=args.download, save=args.save)


# ----------------------------------------------------------------------------- the table

Command = tuple[Callable, Callable[[argparse.Namespace], None]]
# Every command: the function that adds its arguments, and the one that runs it; --help lists
# them in this order.
COMMANDS: dict[str, Command] = {
    "train": (arguments.train_arguments, _train),
    "reproduce": (arguments.reproduce_arguments, _reproduce),
    "results": (arguments.results_arguments, _results),
    "evaluate": (arguments.evaluate_arguments, _evaluate),
    "robustness": (arguments.robustness_arguments, _robustness),
    "predict": (arguments.predict_arguments, _predict),
    "export": (arguments.export_arguments, _export),
    "audit": (arguments.audit_arguments, _audit),
    "bench": (arguments.bench_arguments, _bench),
    "download": (arguments.download_arguments, _download),
    "notebooks": (arguments.notebooks_arguments, _notebooks),
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
