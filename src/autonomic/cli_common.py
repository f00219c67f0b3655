"""What every command line of autonomic shares: the config file and ``--json`` options, free
text, the one-line failure, loading the config and opening the store, and who is acting.

Free text (a pause reason, a comment, a name) must be UTF-8: a terminal in another encoding
passes bytes that Python keeps only as lone surrogates, which the store and the audit log refuse
(``café`` typed in Latin-1 arrives as byte 0xe9). :func:`text` refuses it at the option, exit 2,
naming the option and the byte.
"""

from __future__ import annotations

import getpass
import inspect
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from autonomic.errors import ConfigError, StoreError


class HelpGroup(TyperGroup):
    """A command group whose commands' lines in its ``--help`` table are each the first paragraph
    of the command's docstring as one line (rich help kept the docstring's own line breaks there,
    breaking sentences at random points of the table)."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None and command.short_help is None and command.help:
            command.short_help = " ".join(inspect.cleandoc(command.help).split("\n\n")[0].split())
        return command


def text(value: str) -> str:
    """``value`` as given when it is UTF-8 text, else :class:`typer.BadParameter` naming the first
    byte (or lone surrogate) that is not."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(value[exc.start])
        what = f"byte 0x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"U+{code:04X}"
        raise typer.BadParameter(f"not UTF-8 text ({what} at character {exc.start + 1}; is the "
                                 "terminal's encoding UTF-8?)") from None
    return value


ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="autonomic.yaml (default: built-in defaults)",
                                                 envvar="AUTONOMIC_CONFIG")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print JSON")]


def group_config(config: ConfigOpt = None) -> None:
    """The callback of a command group (``audit``, ``report``, ``token``, ``patterns``): it takes
    ``-c/--config`` before the subcommand too (``autonomic audit -c FILE verify``), as operators
    type it; the subcommand reads it with :func:`given_config`."""


def given_config(ctx: typer.Context, config: Path | None) -> Path | None:
    """The config file for a subcommand whose own ``-c`` is ``config``: the one typed on the command
    line, after the group's name (see :func:`group_config`) or after the subcommand's; else
    ``AUTONOMIC_CONFIG``; else None (the built-in defaults). Typed at both places and naming two
    different files: exit 2 naming both, rather than a guess at which the person meant."""
    typed: list[tuple[str, Path]] = []
    level: Any = ctx  # typer.Context, then its parents (click contexts)
    while level is not None:
        source = level.get_parameter_source("config") if "config" in level.params else None
        if source is not None and source.name == "COMMANDLINE" and level.params["config"] is not None:
            typed.append((str(level.info_name), Path(level.params["config"])))
        level = level.parent
    if len({p.expanduser().resolve() for _, p in typed}) > 1:
        shown = " and ".join(f"`{name} -c {path}`" for name, path in reversed(typed))
        raise fail(f"-c/--config: given twice, naming two files: {shown}; give it once")
    return typed[0][1] if typed else config


def fail(message: str, code: int = 2) -> typer.Exit:
    """``autonomic: message`` on stderr; raise the returned Exit (2: bad input, 1: the store)."""
    print(f"autonomic: {message}", file=sys.stderr)
    return typer.Exit(code)


def load(config: Path | None) -> Any:
    """The config at ``config`` (built-in defaults without one); exit 2 listing each problem as
    file:line: field: message."""
    from autonomic.config import default_config, load_config

    try:
        return load_config(config) if config else default_config()
    except ConfigError as err:
        for p in err.problems:
            print(str(p), file=sys.stderr)
        raise typer.Exit(2) from None


def open_store(config: Path | None, *, create: bool = False) -> tuple[Any, Any]:
    """(config, store) for a command; a store that cannot be opened is one line (its URL
    without the password), exit 1. See :func:`store_of` for the store a command may make."""
    cfg = load(config)
    try:
        return cfg, store_of(cfg, create=create)
    except StoreError as exc:  # names the URL, password hidden
        raise fail(str(exc), 1) from None


def store_of(cfg: Any, *, create: bool = False) -> Any:
    """The store of ``cfg``; StoreError when it cannot be opened (for a command with somewhere
    else to turn: ``pause`` writes a pause file instead).

    A store that is not there (a SQLite file not yet made) is not made by a command that reads or
    answers what it holds: that is exit 2 naming the file (see :func:`refuse_missing_store`);
    made there, it would be a store no engine uses (a token, an approval, a pause no engine ever
    reads). ``create``: a write (``pause``, ``token create``) that makes it when a config is
    given (``-c`` or ``AUTONOMIC_CONFIG``), whose store is the one the engine run with that config
    opens (a token or a pause set before its first start); with the built-in defaults, whose store
    is in whatever folder the command was typed in, it is refused too."""
    from autonomic.knowledge import Store

    if not (create and cfg.source != "<defaults>"):
        refuse_missing_store(cfg)
    return Store(cfg.database_url)


def refuse_missing_store(cfg: Any) -> None:
    """Exit 2 when the store of ``cfg`` is a SQLite file that is not there, naming it and how to
    reach the engine's store (-c its config), without creating it; nothing for a store that is there,
    nor for PostgreSQL (the server's database: opening it creates no file here). StoreError for a
    database URL the store cannot use."""
    from autonomic.knowledge.store import sqlite_file

    path = sqlite_file(cfg.database_url)
    if path is None or path.exists():
        return
    if cfg.source == "<defaults>":
        raise fail(f"no store at {path}: no engine has run in this folder with the built-in defaults (no -c FILE "
                   "or AUTONOMIC_CONFIG given), and this command does not create one: give the config the engine "
                   "runs with, -c FILE")
    raise fail(f"no store at {path}, the store {cfg.source} names: no engine has run with it yet (`{cfg.command} run` "
               "creates it), and this command does not create one: give -c the config the engine runs with")


def actor(given: str | None = None) -> str:
    """Who acts: ``given``, else ``person:<login>`` (``person:unknown`` when there is none)."""
    if given:
        return given
    try:
        return f"person:{getpass.getuser()}"
    except Exception:
        return "person:unknown"
