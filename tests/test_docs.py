"""The README lists every command, and every command's --help shows an example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import typer.main

from mts.cli import app, main

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def commands_table() -> str:
    return README.split("## Commands", 1)[1].split("\n## ", 1)[0]


def test_the_commands_are_the_documented_set():
    assert set(COMMANDS) >= {"collect", "status", "plan", "verify", "serve", "run"}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_in_the_readme_commands_table(command):
    assert re.search(rf"^\| `mts {command}\b", commands_table(), re.M), (
        f"`mts {command}` missing from README ## Commands"
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_with_an_example(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"Example: mts {command}\b", out), out


def test_the_readme_has_the_operations_section():
    ops = README.split("## Operations", 1)[1]
    for needle in (
        "cron",
        "OnCalendar=hourly",
        "[Timer]",
        "[Service]",
        "curl -f",
        "run_summary",
        "mts run --every 1h",
    ):
        assert needle in ops, needle
