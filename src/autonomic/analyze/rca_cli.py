"""``autonomic rca --graph G.json --metrics M.csv --baseline B.csv [--target SERVICE] --json``.

Reads the three files and hands them to :func:`autonomic.analyze.rca.rank`. Bad input (a
missing or unreadable file, JSON that is not a graph, a CSV without one of the columns
``timestamp,service,metric,value`` or without a single usable row, an unknown
``--target``) is a :class:`~autonomic.errors.ConfigError` naming the file and the field;
the command prints it and exits with code 2.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from autonomic.analyze.rca import parse_graph, rank
from autonomic.errors import ConfigError, Problem
from autonomic.longcsv import parse_long_csv


def _read(path: Path, field: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(str(path), None, field, f"cannot read: {exc}")]) from None


def rca_command(graph: Path, metrics: Path, baseline: Path, target: str | None) -> dict[str, Any]:
    """The ranking as a JSON-ready dict ``{"ranking": [...], "root_causes": [...], ...}``."""
    text = _read(graph, "--graph")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError([Problem(str(graph), exc.lineno, "(json)", exc.msg)]) from None
    except RecursionError:
        raise ConfigError([Problem(str(graph), None, "(json)",
                                   "nested too deeply to read (thousands of levels)")]) from None
    edges = parse_graph(doc, str(graph))
    window = parse_long_csv(_read(metrics, "--metrics"), str(metrics))
    base = parse_long_csv(_read(baseline, "--baseline"), str(baseline))
    report = rank(edges, window, base, target=target, names=(metrics.name, baseline.name))
    return report.model_dump(mode="json")


rca_app = typer.Typer(add_completion=False, help="Rank root causes over the service dependency graph.")


@rca_app.command()
def rca(
    graph: Annotated[Path, typer.Option("--graph", help='G.json: {"edges": [{"from": caller, "to": callee}]}')],
    metrics: Annotated[Path, typer.Option("--metrics", help="incident window CSV: timestamp,service,metric,value")],
    baseline: Annotated[Path, typer.Option("--baseline", help="normal period CSV, same columns")],
    target: Annotated[str | None, typer.Option("--target", help="service whose objective was violated")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """Rank candidate root causes, best first; exit 2 on bad input."""
    try:
        result = rca_command(graph, metrics, baseline, target)
    except ConfigError as err:
        for p in err.problems:
            typer.echo(f"autonomic rca: {p}", err=True)
        raise typer.Exit(2) from None
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    for w in result["warnings"]:
        typer.echo(f"warning: {w}", err=True)
    for i, r in enumerate(result["ranking"], 1):
        typer.echo(f"{i}. {r['service']}  {r['role']}  score={r['score']:.3f}  z={r['max_z']:.1f}")
        for e in r["evidence"]:
            typer.echo(f"     + {e}")
        for e in r["evidence_against"]:
            typer.echo(f"     - {e}")


if __name__ == "__main__":
    rca_app()
