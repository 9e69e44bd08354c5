"""`rest-hf` command line: one entry point, one module per sub-command under `rest_hf.commands`.

Each command module defines `register(subparsers)`, which adds its parser and sets `func` (a callable taking
the parsed arguments and returning an exit code). Modules are imported only when their command runs... except
for building the parser, which imports every module listed here; command modules therefore import heavy
dependencies (torch, rasterio) inside their `func`, not at module level.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Sub-command modules under rest_hf.commands, in the order `rest-hf --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "info",
    "push",
    "pull",
    "dataset",
    "samples",
    "predict",
    "evaluate",
    "demo",
)


class CommandError(Exception):
    """A user-facing failure: printed as one line, exit code 2 (or `exit_code`)."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rest-hf",
        description="Whole-scene remote-sensing segmentation (REST) with exact spatial parallelism.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(f"rest_hf.commands.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CommandError as error:
        print(f"rest-hf {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"rest-hf {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
