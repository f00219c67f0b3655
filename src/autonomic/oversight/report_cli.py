"""``autonomic report daily|weekly``: print or write a digest of what autonomic did."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from autonomic.cli_common import ConfigOpt, HelpGroup, given_config, group_config, load, refuse_missing_store
from autonomic.errors import AutonomicError
from autonomic.printable import printable

if TYPE_CHECKING:
    from autonomic.oversight.reports import Period

report_app = typer.Typer(no_args_is_help=True, cls=HelpGroup, help="Digests of what autonomic did (daily or weekly).",
                         callback=group_config)


class ReportFormat(StrEnum):
    md = "md"
    html = "html"


FormatOpt = Annotated[ReportFormat, typer.Option("--format", "-f", help="md or html")]
OutOpt = Annotated[Path | None, typer.Option("--out", "-o", help="write to this file instead of printing")]
NowOpt = Annotated[float | None, typer.Option("--now", help="end of the window, unix seconds (default: now, by "
                                                         "the database server's clock on PostgreSQL)")]
# the last second a report's dates can be written for (9999-12-31 23:59:59 UTC)
MAX_NOW = 253402300799.0


def _run(period: Period, fmt: ReportFormat, config: Path | None, out: Path | None, now: float | None) -> None:
    """Build the report ending at ``now`` and print or write it. Exit 2 on bad input (the config,
    a store that is not there, ``--now`` outside the dates a report can show, an ``--out`` that
    cannot be written), 1 when the store cannot be read."""
    from autonomic.knowledge import Store
    from autonomic.oversight.reports import build_report, render

    if now is not None and not 0 <= now <= MAX_NOW:  # NaN fails both comparisons
        print(f"autonomic: --now: must be Unix seconds from 0 to {MAX_NOW:.0f} (the year 9999), not {now:g}",
              file=sys.stderr)
        raise typer.Exit(2)
    cfg = load(config)
    try:
        refuse_missing_store(cfg)  # a report of a store no engine uses would be empty, and made it
        store = Store(cfg.database_url)
        try:
            # by the store's clock (the database server's on PostgreSQL), which stamped what it reports
            report = build_report(store, period, store.server_time() if now is None else now, cfg.state_dir,
                                  cfg.command)
        finally:
            store.close()
    except AutonomicError as err:
        print(f"autonomic: {err}", file=sys.stderr)
        raise typer.Exit(1) from None
    text = render(report, fmt.value)
    if out is None:  # to a terminal: control characters in what people wrote shown as \xNN
        sys.stdout.write(printable(text))
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
    except OSError as err:
        print(f"autonomic: --out: cannot write {out}: {err.strerror}", file=sys.stderr)
        raise typer.Exit(2) from None
    print(f"wrote {out}")


@report_app.command()
def daily(ctx: typer.Context, fmt: FormatOpt = ReportFormat.md, config: ConfigOpt = None, out: OutOpt = None,
          now: NowOpt = None) -> None:
    """What happened in the last 24 hours."""
    _run("daily", fmt, given_config(ctx, config), out, now)


@report_app.command()
def weekly(ctx: typer.Context, fmt: FormatOpt = ReportFormat.md, config: ConfigOpt = None, out: OutOpt = None,
           now: NowOpt = None) -> None:
    """What happened in the last 7 days."""
    _run("weekly", fmt, given_config(ctx, config), out, now)
