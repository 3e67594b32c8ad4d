"""The ``attune`` command line.

Each subcommand lives in ``ui/commands/<name>.py`` and provides
``register(subparsers)``, which adds its parser and sets ``func`` to a callable
``func(args) -> int``. Command modules import pylsl-using code lazily, inside
``func``, so that the LSL configuration (``--lsl-scope``) is chosen first.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import UsageError

#: Subcommands in the order ``attune --help`` lists them.
COMMANDS = (
    "demo",
    "simulate",
    "streams",
    "monitor",
    "analyze",
    "evaluate",
    "replay",
    "export",
    "bridge",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with every subcommand that is installed."""
    parser = argparse.ArgumentParser(
        prog="attune",
        description=(
            "Attune: live interpersonal physiological synchrony. A flagged drop in "
            "synchrony is a prompt to check in, never a diagnosis."
        ),
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"ui.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"ui.commands.{name}":
                continue  # not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``attune``; return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"attune {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
