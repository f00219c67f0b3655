"""``autonomic token``: create, list and revoke API tokens (wired into cli.py as one line)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from autonomic.cli_common import ConfigOpt, HelpGroup, actor, given_config, group_config, open_store, text
from autonomic.clock import local_stamp

token_app = typer.Typer(no_args_is_help=True, cls=HelpGroup, help="API tokens (stored only as hashes).",
                        callback=group_config)


def _store(config: Path | None, *, create: bool = False) -> Any:
    """The store of ``config``; one not there is made only by ``create`` (see :func:`open_store`)."""
    return open_store(config, create=create)[1]


@token_app.command("create")
def create(
    ctx: typer.Context,
    role: Annotated[str, typer.Option("--role",
                                      help="viewer, operator or admin; alerts: sends Alertmanager alerts only")],
    name: Annotated[str, typer.Option("--name", help="who or what uses it (unique)", parser=text)],
    config: ConfigOpt = None,
) -> None:
    """Create a token and print it once; only its hash is kept. With -c (or AUTONOMIC_CONFIG) it
    makes the config's store if no engine has yet; with the built-in defaults it is refused where
    there is no store (a token there would be one no engine reads)."""
    from autonomic.oversight.auth import create_token

    store = _store(given_config(ctx, config), create=True)
    try:
        raw = create_token(store, name, role, actor=actor())
    except ValueError as exc:
        print(f"autonomic: --{exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    finally:
        store.close()
    print(raw)
    print(f"token {name!r} ({role}) created; it is shown only this once", file=sys.stderr)


@token_app.command("list")
def list_(ctx: typer.Context, config: ConfigOpt = None,
          as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every token's name, role and creation time (never the token)."""
    from autonomic.oversight.auth import tokens

    store = _store(given_config(ctx, config))
    try:
        found = tokens(store)
    finally:
        store.close()
    if as_json:
        print(json.dumps(found, indent=2))
        return
    for t in found:
        created = local_stamp(t.get("created_at", 0))
        print(f"{t.get('name', '?'):24s} {t.get('role', '?'):9s} {created}")
    if not found:
        print("no tokens")


@token_app.command("revoke")
def revoke(ctx: typer.Context, name: str, config: ConfigOpt = None) -> None:
    """Delete the token named NAME; requests with it get 401 at once. No token of that name: exit
    2, as every other name or id not found (1 is for a store that cannot be opened)."""
    from autonomic.oversight.auth import revoke as revoke_token

    store = _store(given_config(ctx, config))
    try:
        if not revoke_token(store, name, actor=actor()):
            print(f"autonomic: no token named {name!r} (`autonomic token list` names them)", file=sys.stderr)
            raise typer.Exit(2)
    finally:
        store.close()
    print(f"revoked token {name!r}")
