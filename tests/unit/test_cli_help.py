"""``autonomic --help`` and every command group's ``--help``: one line of words per command."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import typer
from typer.core import TyperGroup
from typer.testing import CliRunner

from autonomic.cli import app


def _groups() -> list[list[str]]:
    """The argv of every command group's --help: the top one and each nested group."""
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    return [[], *([name] for name, cmd in root.commands.items() if isinstance(cmd, TyperGroup))]


@pytest.mark.parametrize("group", _groups(), ids=lambda g: " ".join(g) or "autonomic")
def test_each_commands_line_in_a_groups_help_is_its_docstrings_first_paragraph_unbroken(group: list[str]) -> None:
    """Before: rich help kept a docstring's own line breaks in the commands table, so "start"
    read "... after a crash loop was handed" and then, on a line of its own, "to you, a denied
    restart, ...". A row's continuation lines are now only the table's own wrapping: each
    sentence ends where the description's words run out, never mid-line."""
    result = CliRunner().invoke(app, [*group, "--help"], env={"COLUMNS": "1000", "TERM": "dumb"})
    assert result.exit_code == 0, result.output
    root = typer.main.get_command(app)
    assert isinstance(root, TyperGroup)
    node = root.commands[group[0]] if group else root
    assert isinstance(node, TyperGroup)
    table = result.output.split("Commands")[1]
    rows = [m.groups() for line in table.splitlines() if (m := re.match(r"^│ (\S*)\s+(.*?)\s*│$", line))]
    # 1000 columns: no description wraps, so one row per command, a row with no name is a break
    assert [name for name, _ in rows] == list(node.commands), rows
    for (name, words), cmd in zip(rows, node.commands.values(), strict=True):
        assert words == " ".join((cmd.help or "").split("\n\n")[0].split()), name


def _on_call_commands() -> list[str]:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme.split("\n## On call\n")[1].split("\n## ")[0]
    return re.findall(r"`(autonomic [^`]+)`", section)


def test_the_readme_on_call_table_names_only_commands_and_options_that_exist() -> None:
    """What a person copies from the README at 3 a.m. must parse: each `autonomic ...` of the On
    call table, with --help after it, is accepted (an unknown command or option fails before
    help: exit 2 "No such option")."""
    commands = _on_call_commands()
    assert len(commands) >= 10, commands
    for line in commands:
        argv = shlex.split(line)[1:]
        result = CliRunner().invoke(app, [*argv, "--help"], env={"COLUMNS": "200", "TERM": "dumb"})
        assert result.exit_code == 0, (line, result.output)
