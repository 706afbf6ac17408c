"""Seed-compatible entry point: `python main.py --collect --days 7`, `--server --port P`,
`--version`, or any `mts` subcommand (`python main.py status`)."""

from __future__ import annotations

import sys

from mts.cli import main

SEED_FLAGS = {"--collect": "collect", "--server": "serve"}


def translate(argv: list[str]) -> list[str]:
    """Map the seed's flag form onto the subcommands (`--collect --days 7` → `collect --days 7`)."""
    for flag, command in SEED_FLAGS.items():
        if flag in argv:
            rest = [a for a in argv if a != flag]
            return [command, *rest]
    return argv


if __name__ == "__main__":
    sys.exit(main(translate(sys.argv[1:])))
