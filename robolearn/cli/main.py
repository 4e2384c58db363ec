"""`robolearn <command>`: one entry point for the whole loop."""

from __future__ import annotations

import argparse
import importlib
import sys

from robolearn.core.errors import RobolearnError

# command name -> module with add_parser(subparsers) and run(args) -> int
COMMANDS: dict[str, str] = {
    "tasks": "robolearn.cli.tasks",
    "train": "robolearn.cli.train",
    "eval": "robolearn.cli.evaluate",
    "export": "robolearn.cli.export",
    "bench": "robolearn.cli.bench",
    "dataset": "robolearn.cli.dataset",
    "collect": "robolearn.cli.collect",
    "replay": "robolearn.cli.replay",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per command."""
    parser = argparse.ArgumentParser(prog="robolearn", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Parse and dispatch; a RobolearnError prints as one line without a traceback."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "accepts_overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.overrides = rest
    try:
        return importlib.import_module(COMMANDS[args.command]).run(args)
    except RobolearnError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
