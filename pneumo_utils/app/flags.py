"""The command line's parsing: its help layout, and the train flags generated from the
TrainConfig fields (config.py), so a new setting needs no change to the command line."""

from __future__ import annotations

import argparse
import shutil
import textwrap
from dataclasses import MISSING, asdict, fields

TYPES = {"int": int, "float": float, "str": str}
METAVARS = {int: "N", float: "X"}
DATA_DEFAULT = "default $PNEUMO_DATA, else data/chest_xray"


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
