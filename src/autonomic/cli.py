"""The command line. Thin: each command loads config, opens the store, calls one thing."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Annotated, Any, Literal

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from autonomic.cli_common import ConfigOpt, HelpGroup, JsonOpt, given_config, group_config, store_of
from autonomic.cli_common import actor as _actor
from autonomic.cli_common import fail as _fail
from autonomic.cli_common import load as _load
from autonomic.cli_common import open_store as _store
from autonomic.cli_common import text as _text
from autonomic.clock import column_stamp, local_stamp, utc_offset
from autonomic.errors import ConfigError, StoreError
from autonomic.logformat import LogFormat, make_handler
from autonomic.printable import counted, printable, rewrite_record
from autonomic.sdnotify import NotifyConfigError, SystemdNotify
from autonomic.signals import on_signals


class _Commands(HelpGroup):
    """The command group: a store that refuses or cannot answer in the middle of a command (its
    write lock held past the wait, PostgreSQL restarting, a value it can never hold) is one line
    on stderr and exit 1, as when it cannot be opened; it was a page of traceback, from the kill
    switch (``autonomic pause``) too, at the moment a person most needs to read what happened."""

    def invoke(self, ctx: Any) -> Any:  # typer's own (vendored) click Context
        try:
            return super().invoke(ctx)
        except StoreError as exc:  # the message names no secret: the store's errors hide the password
            raise _fail(str(exc), 1) from None


# the commands that read no autonomic.yaml: a -c given before them is refused, not ignored
_READS_NO_CONFIG = frozenset({"canary", "demo", "rca", "detect"})


def _before_any_command(ctx: typer.Context, config: ConfigOpt = None) -> None:
    """``-c/--config`` before the command (``autonomic -c FILE status``), as after it; refused
    (exit 2) before a command that reads no autonomic.yaml, rather than silently ignored."""
    source = ctx.get_parameter_source("config")
    if config is not None and source is not None and source.name == "COMMANDLINE" \
            and ctx.invoked_subcommand in _READS_NO_CONFIG:
        raise _fail(f"-c/--config: `autonomic {ctx.invoked_subcommand}` reads no autonomic.yaml"
                    + ("; its judgement rules are `canary judge --config RULES`"
                       if ctx.invoked_subcommand == "canary" else ""))


app = typer.Typer(add_completion=False, no_args_is_help=True, cls=_Commands, callback=_before_any_command,
                  help="autonomic: services that heal themselves, safely.")
audit_app = typer.Typer(no_args_is_help=True, cls=HelpGroup, help="The hash-chained audit log.", callback=group_config)
app.add_typer(audit_app, name="audit")
canary_app = typer.Typer(no_args_is_help=True, cls=HelpGroup, help="Judge a canary against its baseline.")
app.add_typer(canary_app, name="canary")


def _add_subcommands() -> None:
    from autonomic.analyze.detect_cli import detect
    from autonomic.analyze.rca_cli import rca
    from autonomic.oversight.report_cli import report_app
    from autonomic.oversight.tokens_cli import token_app
    from autonomic.plan.patterns_cli import patterns_app

    app.add_typer(report_app, name="report", help="Daily and weekly reports (markdown or HTML).")
    app.add_typer(token_app, name="token", help="API tokens (viewer, operator, admin, alerts); stored only as hashes.")
    app.command("rca")(rca)
    app.add_typer(patterns_app, name="patterns", help="The pattern library: list, show, test against an incident.")
    app.command("detect")(detect)


_add_subcommands()


# Width of tables written to a pipe or file (``| grep``, ``> file``) when COLUMNS is not set: rich
# would wrap them at 80 columns, splitting one incident over several lines.
PIPE_WIDTH = 200


def _console() -> Console:
    """Rich output on stdout: the terminal's width, or :data:`PIPE_WIDTH` when stdout is not one.
    Markup and emoji codes are off: what is printed includes text people and alerts wrote (a
    pause reason, an incident summary), shown as written; styles are given as :class:`Text`.
    Such text goes through :func:`printable` (control characters shown as ``\\xNN``)."""
    wide = not sys.stdout.isatty() and "COLUMNS" not in os.environ
    return Console(stderr=False, highlight=False, markup=False, emoji=False, width=PIPE_WIDTH if wide else None)


def _resolve(store: Any, model: Any, ident: str, cfg: Any, via: tuple[Any, ...] = ()) -> str:
    """The full id ``ident`` is a prefix of; exit 2 with the store's message (its quotes kept)
    when none or several match. With no config given (``cfg`` the built-in defaults), the message
    says which store was looked in and how to name the engine's: the id a notification gave is
    not found in the defaults' store of the folder the command was typed in. ``via``: models whose
    nouns belong to one of ``model`` (an ``incident_id``): the id of one of those names the one it
    belongs to; a prefix that names two (an incident's id and another incident's action's start
    alike) is ambiguous, as two incidents' ids are."""
    try:
        found = str(store.resolve_id(model, ident))
    except KeyError as exc:  # IdLookupError: str() is already the plain message
        message = str(exc)
        if message.startswith(f"no {model.__name__.lower()} has "):  # none matched (not: several, too short)
            named = _named_via(store, via, ident)
            if len(named) == 1:
                return next(iter(named))
            if named:
                raise _fail(_ambiguous(ident, named)) from None
        where = ""
        if cfg.source == "<defaults>":
            where = (f" in {cfg.state_dir}, the store of the built-in defaults (no -c FILE or AUTONOMIC_CONFIG "
                     "given): give the config the engine runs with, -c FILE")
        raise _fail(f"{message}{where}") from None
    if via and found != ident.strip():  # a prefix: it may start an action's or a decision's id too
        named = _named_via(store, via, ident)
        if set(named) - {found}:
            raise _fail(_ambiguous(ident, {found: f"{model.__name__.lower()} {found}", **named}))
    return found


def _named_via(store: Any, via: tuple[Any, ...], ident: str) -> dict[str, str]:
    """The ids of what the nouns of ``via`` whose ids start with ``ident`` belong to (their
    ``incident_id``), each with the noun that named it ("action 3f2a... of incident 9c1d...").
    Exit 2 with the store's message when several of one kind start so."""
    named: dict[str, str] = {}
    for other in via:
        noun_name = other.__name__.lower()
        try:
            noun = store.get(other, store.resolve_id(other, ident))
        except KeyError as exc:
            if str(exc).startswith(f"no {noun_name} has "):
                continue
            raise _fail(f"{exc}; give more characters") from None
        if noun is not None:
            named.setdefault(str(noun.incident_id), f"{noun_name} {noun.id} of incident {noun.incident_id}")
    return named


def _ambiguous(ident: str, named: Mapping[str, str]) -> str:
    return (f"id prefix {ident.strip()!r} is ambiguous: it starts the ids of {'; '.join(named.values())}; "
            "give more characters")


class _PrintableRecords(logging.Filter):
    """Log lines quote what alerts and people wrote (an incident's summary, a pause reason):
    each message is passed through :func:`printable`, so an escape sequence in it is shown as
    ``\\x1b`` instead of reaching the terminal or the journal raw."""

    def filter(self, record: logging.LogRecord) -> bool:
        rewrite_record(record, printable)  # a traceback quoting an alert's text included
        return True


def _setup_logging(level: str, fmt: LogFormat) -> None:
    handler = make_handler(fmt)
    handler.addFilter(_PrintableRecords())
    logging.basicConfig(level=level.upper(), format="%(message)s", datefmt="%H:%M:%S", handlers=[handler])
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)


@app.command()
def run(
    cli: typer.Context,
    config: ConfigOpt = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
    log_format: Annotated[LogFormat, typer.Option(
        envvar="AUTONOMIC_LOG_FORMAT", help="auto (rich on a terminal, else text), rich, text (a line per record, "
        "UTC date and time), json (an object per line)")] = LogFormat.auto,
) -> None:
    """Run the engine in the foreground until SIGTERM or SIGINT."""
    config = given_config(cli, config)
    from autonomic.engine import Engine
    from autonomic.knowledge.store import shown_database_url

    if log_level.lower() not in ("debug", "info", "warning", "error"):
        raise _fail(f"--log-level: must be debug, info, warning or error, not {log_level!r}")
    # a SIGHUP before on_signals below is in would end the process (its default action): it is
    # kept, and sent again once it is acted on (after the run, one is let go: nothing to reload)
    early_hup: list[int] = []  # appended to in the handler: no lock (see autonomic.signals)
    signal.signal(signal.SIGHUP, lambda signum, _frame: early_hup.append(signum))
    _setup_logging(log_level, log_format)
    try:  # under systemd (Type=notify); read before any child is started, which must not inherit it
        sd = SystemdNotify.from_environ(os.environ, os.getpid())
    except NotifyConfigError as exc:
        raise _fail(str(exc)) from None
    cfg = _load(config)
    log = logging.getLogger("autonomic")
    if config is None:
        log.info("no config given: watching this host with built-in defaults in observe mode")
    from autonomic.oversight.metrics import EngineMetrics

    metrics = EngineMetrics()
    try:
        engine = Engine(cfg, metrics=metrics)
    except StoreError as exc:  # the store cannot be opened: names the URL, password hidden
        raise _fail(str(exc), 1) from None
    except ConfigError as err:  # what the file names but the host lacks (a notifier's *_env unset)
        for p in err.problems:
            print(str(p), file=sys.stderr)
        raise typer.Exit(2) from None
    held = None  # kept open (held) until this function returns, after the engine's shutdown
    if not cfg.engine.leader_election.enabled:
        try:
            held = _hold_state_dir(cfg.state_dir)
        except RuntimeError as exc:
            engine.store.close()
            raise _fail(str(exc), 1) from None
    for handler in logging.getLogger().handlers:  # the config's secrets never reach the log
        handler.addFilter(engine.secrets.log_filter())
    _serve_api(cfg, engine, metrics, log)
    stop = threading.Event()
    terminating = threading.Event()
    reloads: list[Any] = []  # a new config, checked, that the engine takes after its current step (SIGHUP)
    running = [engine, cfg]  # what runs now, for the signals thread and systemd's watchdog

    def _signal(sig: signal.Signals) -> None:  # on the signals thread, not in the handler: see autonomic.signals
        if sig == signal.SIGHUP:
            new = _reload_config(config, running[1], log)
            if new is not None and not terminating.is_set():
                reloads[:] = [new]
                log.info("SIGHUP: the config is valid; the engine takes it after the current step (the "
                         "supervised services keep running)")
                stop.set()
            return
        terminating.set()
        log.info("received %s; stopping after the current step", sig.name)
        if sd is not None:  # told once (the first reason stands), also when a reload's stop was set already
            sd.stopping(f"stopping ({sig.name}) after the current step")
        stop.set()

    restore_signals = on_signals([signal.SIGTERM, signal.SIGINT, signal.SIGHUP], _signal)
    if early_hup:  # the config may have changed since it was read
        os.kill(os.getpid(), signal.SIGHUP)
    if engine.elector is not None:
        log.info("leader election on: this replica is %s; it runs the loop only while it holds the lease",
                 engine.elector.identity)
    log.info("autonomic engine started (%s, %s, interval %.1fs, store %s)", counted(len(cfg.services), "service"),
             counted(len(cfg.patterns), "pattern"), cfg.engine.interval_s, shown_database_url(cfg.database_url))
    beats = threading.Event()  # set when the engine has stopped: no WATCHDOG=1 after that
    on_tick, on_standby = _write_status, None
    if sd is not None:
        sd.status("starting: adopting or starting the services, then a first look")
        if sd.keep_watchdog(lambda: running[0].watchdog.stuck(), beats) is not None:
            log.info("systemd watchdog: WATCHDOG=1 every %g s while the loop makes progress; a loop stuck for "
                     "stuck_after_s (%g s) is ended by systemd at most WatchdogSec (%g s) later",
                     (sd.watchdog_s or 0) / 2, engine.stuck_after_s, sd.watchdog_s)
        needs_s, basis = engine.stop_needs_s()
        log.info("systemd: a clean stop may take up to %g s (%s); keep the unit's TimeoutStopSec= above that, or "
                 "systemd SIGKILLs the engine mid-stop (systemd does not tell the engine its TimeoutStopSec)",
                 needs_s, basis)
        told = _TellSystemd(sd)
        on_tick, on_standby = told.ticked, told.standing_by
    try:
        while True:
            engine.keep_services = lambda: bool(reloads) and not terminating.is_set()
            engine.run(stop, on_tick=on_tick, on_standby=on_standby,
                       on_stopping=None if sd is None else functools.partial(_tell_stopping, sd, engine))
            stop.clear()  # from here a SIGTERM, or another SIGHUP, ends the new engine's run at once;
            if not (engine.services_kept and reloads) or terminating.is_set():  # one before: seen here
                break
            if sd is not None:
                sd.send("RELOADING=1", f"MONOTONIC_USEC={time.monotonic_ns() // 1000}")
            engine, cfg = _reloaded(engine, reloads.pop(), cfg, metrics, log)
            running[:] = [engine, cfg]
            for handler in logging.getLogger().handlers:
                handler.addFilter(engine.secrets.log_filter())
            _serve_api(cfg, engine, metrics, log, reloaded=True)
            if sd is not None and not terminating.is_set():
                sd.send("READY=1")
    finally:
        beats.set()
        restore_signals()
        if engine.services_kept and engine.config.engine.stop_services_on_exit:
            engine.supervisor.stop_all()  # kept for a reload that a SIGTERM or a failure overtook
    if sd is not None:
        sd.close()
    _mark_stopped(cfg.state_dir / "status.json")
    if engine.elector is not None and engine.elector.lost:
        # not clean: another replica took the lease; a supervisor restarts this one as a standby
        log.error("autonomic engine stopped: %s", engine.elector.describe())
        raise typer.Exit(3)
    log.info("autonomic engine stopped cleanly")
    if held is not None:
        held.close()


def _tell_stopping(sd: SystemdNotify, engine: Any, why: str) -> None:
    """STOPPING=1 to systemd, unless the engine stops to be replaced (a reload keeps its services)."""
    if not (engine.keep_services is not None and engine.keep_services()):
        sd.stopping(why)


def _serve_api(cfg: Any, engine: Any, metrics: Any, log: logging.Logger, *, reloaded: bool = False) -> None:
    """Start the API and dashboard of ``engine`` when the config has them on; stopped by the
    engine's shutdown (before its store is closed). One that cannot start ends ``autonomic run``
    (exit 2), except after a reload: the engine goes on without it, said in the log."""
    if not cfg.spec.api.enabled:
        return
    from autonomic.oversight.api import context_from_spec, create_app
    from autonomic.oversight.server import ApiServer

    try:
        ctx = context_from_spec(cfg.spec.api, store=engine.store, config=cfg, engine=engine, metrics=metrics,
                                clock=engine.clock)
        server = ApiServer(create_app(ctx), host=cfg.spec.api.host, port=cfg.spec.api.port)
        server.start()
    except ConfigError as err:
        if reloaded:
            log.error("reload: no API: %s", "; ".join(str(p) for p in err.problems))
            return
        for p in err.problems:
            print(str(p), file=sys.stderr)
        raise typer.Exit(2) from None
    except RuntimeError as exc:  # one line: why (address already in use) and what to do
        if reloaded:
            log.error("reload: no API: %s", exc)
            return
        raise _fail(f"api: {exc}") from None
    engine.before_close.append(server.stop)
    log.info("API and dashboard on %s (tokens: %s token create --role operator --name NAME)", server.url,
             cfg.command)


def _reload_config(path: Path | None, current: Any, log: logging.Logger) -> Any:
    """The config at ``path`` when the running engine may take it (SIGHUP), else None, each
    problem logged: the engine goes on with the config it runs. Not taken: a config with problems
    (each named, as ``autonomic check`` names them); one that moves the store or the state_dir, or
    turns leader election on or off (a restart: the store and the services' pidfiles are there);
    any reload with leader election (replicas take a new config by being restarted one by one);
    the same config again (its patterns included; a change of notifiers alone is a change)."""
    from autonomic.config import load_config

    if path is None:
        log.warning("SIGHUP: no config file to read again (the built-in defaults); nothing reloaded")
        return None
    try:
        new = load_config(path)
    except ConfigError as err:
        log.error("SIGHUP: %s has %s; the engine goes on with the config it runs:", path,
                  counted(len(err.problems), "problem"))
        for p in err.problems:
            log.error("  %s", p)
        return None
    except Exception as exc:  # unreadable, say: the engine keeps running all the same
        log.error("SIGHUP: %s cannot be read (%s); the engine goes on with the config it runs", path, exc)
        return None
    refused = [what for what, differs in (
        ("engine.state_dir", new.state_dir != current.state_dir),
        ("engine.database", new.database_url != current.database_url),
        ("engine.leader_election.enabled",
         new.engine.leader_election.enabled != current.engine.leader_election.enabled)) if differs]
    if refused:
        log.error("SIGHUP: %s changes %s, which only a restart of the engine takes; nothing reloaded", path,
                  ", ".join(refused))
        return None
    if current.engine.leader_election.enabled:
        log.error("SIGHUP: with leader election, a new config is rolled out by restarting the replicas one by "
                  "one; nothing reloaded")
        return None
    # the fingerprint is what replicas must share: it leaves out each one's own notifiers, api,
    # reports and retention, which a reload takes all the same (a page sent somewhere else)
    if new.fingerprint == current.fingerprint and new.spec == current.spec:
        log.info("SIGHUP: %s is unchanged; nothing reloaded", path)
        return None
    return new


def _reloaded(old: Any, new_cfg: Any, old_cfg: Any, metrics: Any, log: logging.Logger) -> tuple[Any, Any]:
    """The engine for ``new_cfg``, which takes over the supervised services ``old`` (stopped, its
    services kept running) leaves; back to ``old_cfg`` if ``new_cfg``'s engine cannot be made
    (a store that does not answer, a notifier's secret not set). A service gone from the config
    is stopped (``stop_services_on_exit``) or left running unsupervised, and its series leave
    the engine's metrics (GET /metrics); one whose command
    changed runs the old command until it is restarted (said)."""
    from autonomic.engine import Engine

    try:
        engine, cfg = Engine(new_cfg, metrics=metrics), new_cfg
    except (StoreError, ConfigError) as exc:
        said = "; ".join(str(p) for p in exc.problems) if isinstance(exc, ConfigError) else str(exc)
        log.error("reload failed (%s); the engine goes on with the config it ran", said)
        try:
            engine, cfg = Engine(old_cfg, metrics=metrics), old_cfg
        except StoreError as again:
            raise _fail(str(again), 1) from None
    for service in engine.supervisor.take_over(old.supervisor):
        if old_cfg.engine.stop_services_on_exit and cfg.engine.stop_services_on_exit:
            old.supervisor.stop(service)
            log.info("service %s is gone from the config: stopped", service)
        else:
            log.warning("service %s is gone from the config: left running (pid %s), no longer supervised", service,
                        old.supervisor.pid(service))
    metrics.forget_services(sorted(_labelled(old_cfg) - _labelled(cfg)))  # gone: no last value served for ever
    for service in engine.supervisor.services():
        if service in old.supervisor.services() and \
                old.supervisor.binding(service).command != engine.supervisor.binding(service).command:
            log.warning("service %s: its command changed; the running process keeps the old one until it is "
                        "restarted (%s stop %s, then %s start %s)", service, cfg.command, service, cfg.command,
                        service)
    if cfg is new_cfg:
        log.info("config reloaded from %s (%s, %s, interval %.1fs)", cfg.source, counted(len(cfg.services), "service"),
                 counted(len(cfg.patterns), "pattern"), cfg.engine.interval_s)
    return engine, cfg


def _labelled(cfg: Any) -> set[str]:
    """The services the engine's metrics are labelled with under ``cfg`` (``host`` for this
    machine's own metrics), as GET /metrics labels them."""
    names = {s.name for s in cfg.services}
    return names | {"host"} if cfg.engine.host_metrics else names


class _TellSystemd:
    """What ``autonomic run`` tells systemd as the loop goes (see :mod:`autonomic.sdnotify`):
    ``READY=1`` after the first tick (the store open, the services adopted or started, one look
    taken) or, with leader election, after the first lease round that found another replica
    leading; then a ``STATUS=`` line when it changes, worked out at most every
    ``_SD_STATUS_EVERY_S``; nothing once the stop has been told (``STOPPING=1``: a signal arrived
    during the tick just ended)."""

    def __init__(self, sd: SystemdNotify) -> None:
        self.sd = sd
        self._next = 0.0

    def ticked(self, engine: Any) -> None:
        _write_status(engine)
        self._tell(engine)

    def standing_by(self, engine: Any) -> None:
        self._tell(engine)

    def _tell(self, engine: Any) -> None:
        if self.sd.stopping_sent:  # a SIGTERM told systemd mid-tick: its STATUS stands, no READY=1 after it
            return
        now = time.monotonic()
        if self.sd.ready_sent and now < self._next:
            return
        self._next = now + _SD_STATUS_EVERY_S
        self.sd.status(_sd_status(engine), ready=True)


_SD_STATUS_EVERY_S = 2.0


def _sd_status(engine: Any) -> str:
    """The engine in one line for ``systemctl status``: leading, running (no leader election) or
    standing by; its open incidents; the pauses (the kill switch first)."""
    standby = engine.standby
    if standby is not None:
        return printable(standby)
    count = engine.open_incidents
    line = f"{'running' if engine.elector is None else 'leading'}: {counted(count, 'open incident')}"
    from autonomic.engine import file_pauses, pauses_in_force

    try:
        pauses = pauses_in_force(engine.store, engine.config.state_dir)
    except StoreError:
        pauses = file_pauses(engine.config.state_dir)
        line += "; the store does not answer (its pauses unknown)"
    state = pauses.pop("pause:global", None)
    if state is not None:
        line += f"; PAUSED everywhere (kill switch) by {state.get('actor', '?')}: {state.get('reason', '')}"
        if state.get("file"):
            line += f" (pause file {state['file']})"
    if pauses:
        line += "; paused for " + ", ".join(sorted(key.rsplit(":", 1)[1] for key in pauses))
    return printable(line)


def _hold_state_dir(state_dir: Path) -> IO[str]:
    """Hold ``state_dir/engine.lock`` (an exclusive flock, with this process's pid in it) while the
    engine runs; the kernel lets it go when the process ends, however it ends. Without leader
    election a second engine over the same state_dir would adopt the first one's services, act on
    the same incidents beside it and, stopping, stop the services the first one watches: it is
    refused (RuntimeError naming the holder's pid)."""
    import fcntl

    lock = (state_dir / "engine.lock").open("a+", encoding="utf-8")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        holder = lock.read().strip() or "?"
        lock.close()
        raise RuntimeError(f"another autonomic engine (pid {holder}) runs with state_dir {state_dir}: it supervises "
                           "the same services and acts on the same incidents; stop it first (`autonomic status` "
                           "shows it), or give this one a state_dir of its own (replicas over one database: "
                           "engine.leader_election)") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"{os.getpid()}\n")
    lock.flush()
    return lock


# the most ticks `autonomic replay` plays (a few minutes at about 1.5 ms a tick): a week at 1 s
MAX_REPLAY_TICKS = 1_000_000
STATUS_INCIDENTS = 1000  # open incidents `autonomic status` lists, the newest (it says how many there are)


@app.command()
def replay(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="recorded metrics: CSV timestamp,service,metric,value")],
    config: ConfigOpt = None,
    interval: Annotated[float | None, typer.Option(help="seconds between ticks (default: the config's)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Shadow mode: what the engine would have found, decided and done over recorded metrics.

    The findings, incidents and decisions the engine would have made (and what it would have
    done), with nothing executed. A recording that would take more than 1,000,000 ticks at the
    interval is refused (exit 2), not played for hours."""
    config = given_config(ctx, config)
    import tempfile

    from autonomic.monitor.replay import ReplaySource
    from autonomic.replay import replay_config, run_replay

    if interval is not None and not (0 < interval <= 3600):
        raise _fail(f"--interval: must be > 0 and at most 3600 seconds, not {interval:g}")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(f"{file}: cannot read: {exc}") from None
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="autonomic-replay-") as state:
        try:
            source = ReplaySource.from_csv(text, str(file))
            cfg = _load(config) if config else replay_config(source, Path(state))
        except ConfigError as err:
            for p in err.problems:
                print(str(p), file=sys.stderr)
            raise typer.Exit(2) from None
        step = interval or cfg.engine.interval_s
        ticks = (source.last_ts - source.first_ts) / step
        if ticks > MAX_REPLAY_TICKS:  # a stray timestamp (milliseconds, a 0) would replay for days
            raise _fail(f"{file}: its timestamps span {source.last_ts - source.first_ts:.0f} s ({source.first_ts:.0f} "
                        f"to {source.last_ts:.0f}): at {step:g} s a tick that is {ticks:.3g} ticks, more than "
                        f"{MAX_REPLAY_TICKS:,}; check the timestamps (Unix seconds) or give a larger --interval")
        summary = run_replay(source, cfg, interval, assume_bound=config is None)
    if as_json:
        print(json.dumps(summary))
        return
    console = _console()
    console.print(f"{counted(summary['samples'], 'sample')} over {summary['to'] - summary['from']:.0f} s, "
                  f"{counted(len(summary['incidents']), 'incident')}, {counted(summary['would_have_acted'], 'time')} "
                  "it would have acted "
                  f"(nothing was executed)")
    table = Table("incident", "service", "cause", "pattern", "would have", "action", "held back by")
    for d in summary["decisions"]:
        action = d["action"]
        table.add_row(d["incident"][:8], printable(d["service"]), printable(d["cause"]), d["pattern"] or "-",
                      d["would_have"] or "-",
                      f"{action['type']} {action['params']}" if action else "-",
                      printable("; ".join(d["held_back_by"])) or "-")
    console.print(table)
    if not summary["bindings_checked"]:
        console.print("no config: every remedy is taken as one its service could run (give -c to pass over "
                      "those a service cannot carry out, as the engine does)")
    if summary["skipped_rows"]:
        n = summary["skipped_rows"]
        console.print(f"{n} row{'s' if n != 1 else ''} of {file} skipped: a value that is not a finite number, a "
                      "timestamp neither Unix seconds nor ISO 8601, or an empty service or metric")


def _write_status(engine: Any) -> None:
    """The live health view for `autonomic status` (not audited: it is a cache)."""
    if engine.ticks % 2:
        return
    health = {name: {"state": state.value, "reasons": reasons} for name, (state, reasons) in engine.health().items()}
    payload = {"ts": time.time(), "pid": os.getpid(), "health": health}
    path = engine.config.state_dir / "status.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)


def _mark_stopped(path: Path) -> None:
    """Record in the live health view that the engine has stopped (``stopped_at``), so `autonomic
    status` does not show the health it saw last as if it were still watching."""
    live = _read_status(path)
    if not live:
        return
    live["stopped_at"] = time.time()
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps(live))
        os.replace(tmp, path)
    except OSError as exc:  # a full disk: status then says STALE once the grace is over
        logging.getLogger("autonomic").warning("%s: could not record the stop: %s", path, exc)


@app.command()
def check(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="autonomic.yaml to validate")] = None,
    patterns: Annotated[list[Path] | None, typer.Argument(help="extra pattern files to validate")] = None,
) -> None:
    """Validate a config file and its pattern files; exit 2 listing each problem as file:line: field: message."""
    config = given_config(ctx, config)
    if config is None:
        raise _fail("--config: which autonomic.yaml to validate? (-c FILE)")
    from autonomic.config import load_config
    from autonomic.plan.patterns import check_patterns
    from autonomic.registry import default_registry

    registry = default_registry()
    problems = []
    try:
        cfg = load_config(config, registry)
    except ConfigError as err:
        problems.extend(err.problems)
        cfg = None
    extra = list(patterns or [])
    if extra and cfg is None:  # the config's own library cannot be read: each file on its own
        # a file the config's patterns hold was judged with them already: its problems once, not twice
        said = {Path(p.file).resolve() for p in problems if p.file}
        problems.extend(p for p in check_patterns(extra, registry) if not p.file or Path(p.file).resolve() not in said)
    elif extra and cfg is not None:
        # beside the library the config loads, as the engine would read them once added to it: a
        # `then:` may name a built-in pattern, and an id the library has already is a duplicate
        library = cfg.pattern_paths
        problems.extend(check_patterns([*library, *(p for p in extra if not _inside(p, library))], registry))
    if problems:
        for p in problems:
            print(str(p), file=sys.stderr)
        raise typer.Exit(2)
    assert cfg is not None
    print(f"{config}: ok ({counted(len(cfg.services), 'service')}, {counted(len(cfg.patterns), 'pattern')})")
    for name in sorted(n for n in cfg.secret_env_names if not os.environ.get(n)):
        # not an error: check may run where the secrets are not (CI); the engine refuses to start
        # (or the actuator to act) without them
        print(f"{config}: warning: environment variable {name} is not set here; the config reads a "
              f"secret from it, so set it where `autonomic run` runs", file=sys.stderr)
    for warning in cfg.warnings:  # valid, so not an error: likely not what was meant
        where = f"{warning.file}:{warning.line}" if warning.line is not None else warning.file
        print(f"{where}: warning: {warning.field}: {warning.message}", file=sys.stderr)
    for path in extra:
        print(f"{path}: ok" + (" (already in the config's patterns)" if _inside(path, cfg.pattern_paths) else
                               " (with the config's patterns)"))


def _inside(path: Path, paths: list[Path]) -> bool:
    """Whether ``path`` is one of ``paths`` or in one of their folders."""
    here = path.resolve()
    return any(here == p.resolve() or p.resolve() in here.parents for p in paths)


# beyond three ticks, how long `autonomic status` waits for the engine's health before calling it stale
STATUS_GRACE_S = 10.0


def _read_status(path: Path) -> dict[str, Any]:
    """The engine's last health snapshot (state_dir/status.json); {} when there is none, or it
    cannot be read (a partial file after a full disk), saying so on stderr."""
    if not path.exists():
        return {}
    try:
        live = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"autonomic: {path}: cannot read the engine's health ({exc}); showing the store only", file=sys.stderr)
        return {}
    return live if isinstance(live, dict) else {}


@app.command()
def status(ctx: typer.Context, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Services' health, open incidents, pauses, services stopped on purpose, people's starts and stops
    queued for the engine and not yet done, notifications not yet delivered, breakers and (leader
    election) the leader."""
    config = given_config(ctx, config)
    from autonomic.engine import (
        OUTBOX,
        STOPPED_PREFIX,
        pauses_in_force,
        pending_notifications,
        pending_notifications_text,
        queued_request_text,
        queued_service_requests,
    )
    from autonomic.knowledge.lease import ENGINE_LEASE

    cfg, store = _store(config)
    live = _read_status(cfg.state_dir / "status.json")
    open_incidents = store.incidents(unclosed=True, limit=STATUS_INCIDENTS)
    open_total = (len(open_incidents) if len(open_incidents) < STATUS_INCIDENTS
                  else store.count_incidents(unclosed=True))
    pauses = pauses_in_force(store, cfg.state_dir)
    on_purpose = {k.split(":", 1)[1]: v for k, v in store.states(STOPPED_PREFIX).items()}
    requests = queued_service_requests(store)  # people's starts and stops the engine has not carried out yet
    breakers = store.states("breaker:")
    lease = store.lease(ENGINE_LEASE)  # leader election: which replica runs the loop
    goals = _goals(cfg, store)
    outbox = store.states(OUTBOX)
    now = store.server_time() if requests or outbox else 0.0  # the clock the requests were stamped by
    pending = pending_notifications(outbox, now)
    if as_json:
        print(json.dumps({"live": live, "open_incidents": [i.model_dump(mode="json") for i in open_incidents],
                          "open_incidents_total": open_total,
                          "pauses": pauses, "stopped_on_purpose": on_purpose, "service_requests": requests,
                          "notifications_pending": pending, "breakers": breakers, "goals": goals,
                          "lease": None if lease is None else lease.to_state(),
                          "config_fingerprint": cfg.fingerprint}, indent=2))
        return
    console = _console()
    if lease is not None:
        election = cfg.engine.leader_election
        line = f"leader: {printable(lease.summary(store.server_time(), election.lease_s))}"
        if lease.holder is not None and lease.other_config(cfg.fingerprint):
            line += (f"\n  the leader runs another config (fingerprint {printable(lease.config)}) than "
                     f"{cfg.source} ({cfg.fingerprint})")
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if live:
        age = time.time() - live.get("ts", 0)
        stale_after = 3 * cfg.engine.interval_s + STATUS_GRACE_S  # written every other tick
        title = f"health (engine pid {live.get('pid')}, {age:.0f} s ago)"
        table = Table(title=title, min_width=len(title))  # else a title wider than the table is wrapped
        stopped = live.get("stopped_at")
        if isinstance(stopped, int | float):
            down = ("; the services it supervised were stopped with it" if cfg.engine.stop_services_on_exit
                    and cfg.bindings and any("process" in b for b in cfg.bindings.values()) else "")
            console.print(Text.assemble(("STOPPED", "bold red"), f" the engine (pid {live.get('pid')}) stopped "
                                        f"{time.time() - stopped:.0f} s ago{down}: nothing is watched or acted "
                                        "on; the health below is what it saw last"))
        elif age > stale_after:
            console.print(Text.assemble(("STALE", "bold red"), f" health: the engine (pid {live.get('pid')}) last "
                                        f"wrote it {age:.0f} s ago, more than {stale_after:.0f} s: it is not "
                                        "running here, or is stuck"))
        table.add_column("service")
        table.add_column("state")
        table.add_column("why")
        for name, h in sorted(live.get("health", {}).items()):
            table.add_row(printable(name), printable(str(h["state"])), printable("; ".join(h["reasons"])[:100]))
        console.print(table)
    else:
        console.print("no live health: the engine has not run here (autonomic run)" if cfg.source != "<defaults>" else
                      f"no live health in {cfg.state_dir}: no engine has run there with the built-in defaults (no -c "
                      "FILE or AUTONOMIC_CONFIG given): give the config the engine runs with, -c FILE")
    for key, value in pauses.items():
        by_file = f", pause file {value['file']}" if value.get("file") else ""
        console.print(Text.assemble(("PAUSED", "bold red"), printable(f" {key.split(':', 1)[1]}: "
                                                                      f"{value.get('reason', '')} "
                                                                      f"(by {value.get('actor', '?')}{by_file})")))
    for name, value in sorted(on_purpose.items()):
        comment = str(value.get("comment") or "")
        console.print(Text.assemble(("STOPPED", "bold yellow"), printable(
            f" {name}: stopped on purpose by {value.get('actor', '?')}" + (f" ({comment})" if comment else "")
            + f"; not started until {cfg.command} start {name}")))
    for request in requests:
        console.print(Text.assemble(("QUEUED", "bold yellow"), printable(
            f" {request['service']}: {queued_request_text(request, now)}")))
    unsent = pending_notifications_text(pending, now)
    if unsent is not None:
        console.print(Text.assemble(("UNSENT", "bold red" if pending["failing"] else "bold yellow"),
                                    printable(f" {unsent}")), soft_wrap=True)
    for key, value in breakers.items():
        if value.get("state") != "closed":
            console.print(f"breaker {key.split(':', 1)[1]}: {value.get('state')}")
    _print_goals(console, goals)
    _print_incidents(console, open_incidents, "open incidents", open_total)


def _goals(cfg: Any, store: Any) -> list[dict[str, Any]]:
    """Every configured goal's budget and burn as the engine last saved them (see stored_goals)."""
    from autonomic.analyze.goals import GOAL_STATE_PREFIX, stored_goals

    by_service = {s.name: s.goals for s in cfg.services if s.goals}
    if not by_service:
        return []
    return stored_goals(by_service, store.states(GOAL_STATE_PREFIX), time.time())


def _print_goals(console: Console, goals: list[dict[str, Any]]) -> None:
    """One row per goal: its objective, the budget left, the burn now and when the budget runs out."""
    if not goals:
        return
    from autonomic.clock import duration

    table = Table(title="goals (error budgets, as of the engine's last save)")
    for col in ("service", "goal", "objective", "budget left", "burn now", "runs out in", "as of"):
        table.add_column(col)
    for g in goals:
        left, burn, eta = g["budget_remaining"], g["current_burn"], g["exhausted_in_s"]
        table.add_row(
            printable(g["service"]), printable(g["goal"]), printable(g["objective"]),
            "no samples" if left is None else ("spent" if left <= 0 else f"{left:.1%}"),
            "-" if burn is None else f"{burn:.2f}x over {duration(g['burn_window_s'])}",
            "-" if eta is None else ("now" if eta == 0 else duration(eta)),
            printable(g["note"]) if g["note"] else
            (f"{max(0.0, time.time() - g['as_of']):.0f} s ago" if g["saved"] else "not saved yet"))
    console.print(table)


def _print_incidents(console: Console, incidents: list[Any], title: str, total: int) -> None:
    """One row per incident; when it opened in local time, under a heading that names the zone's
    UTC offset, with its date when that is not today's (see :func:`column_stamp`). The title says
    so when these are only the newest of ``total``."""
    now = time.time()
    if total > len(incidents):
        title += f": the newest {len(incidents):,} of {total:,}"
    table = Table(title=title)
    for col in ("id", "service", "cause", "state", "resolution", f"opened ({utc_offset(now)})", "findings",
                "summary"):
        table.add_column(col)
    for i in incidents:
        table.add_row(i.id[:8], printable(i.service), printable(i.cause), i.state.value,
                      i.resolution.value if i.resolution else "",
                      column_stamp(i.opened_at, now), str(i.finding_count),
                      printable(i.summary[:60]))
    console.print(table)


@app.command()
def incidents(
    ctx: typer.Context,
    config: ConfigOpt = None,
    all_: Annotated[bool, typer.Option("--all", help="closed ones too")] = False,
    limit: Annotated[int, typer.Option("--limit", min=1, help="list at most this many, the newest")] = 500,
    as_json: JsonOpt = False,
) -> None:
    """List incidents, newest first (at most --limit; the title says how many there are in all)."""
    config = given_config(ctx, config)
    _, store = _store(config)
    items = store.incidents(limit=limit, unclosed=not all_)
    if as_json:
        print(json.dumps([i.model_dump(mode="json") for i in items], indent=2))
        return
    total = len(items) if len(items) < limit else store.count_incidents(unclosed=not all_)
    _print_incidents(_console(), items, "incidents" if all_ else "open incidents", total)


@app.command()
def explain(ctx: typer.Context, incident: str, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """The whole chain for one incident: findings, patterns considered, gates, action, outcome."""
    config = given_config(ctx, config)
    from autonomic.oversight.explain import explain_incident, render_text

    cfg, store = _store(config)
    from autonomic.model import Action, Decision, Incident

    # the engine's log and `autonomic audit show` name actions by their own ids: one names its incident
    chain = explain_incident(store, _resolve(store, Incident, incident, cfg, via=(Action, Decision)))
    if as_json:
        print(json.dumps(chain, indent=2, default=str))
    else:
        print(printable(render_text(chain)))


def _answer(incident: str, verdict: Literal["approve", "deny"], comment: str, actor: str | None,
            config: Path | None) -> None:
    from autonomic.engine import answer_approval
    from autonomic.model import Incident

    cfg, store = _store(config)
    inc_id = _resolve(store, Incident, incident, cfg)
    try:
        # stamped by the store's clock (the database server's), which the engine judges it by, not this machine's
        inc = answer_approval(store, inc_id, verdict, actor=_actor(actor), comment=comment, now=store.server_time(),
                              approval_ttl_s=cfg.engine.approval_ttl_s)
    except ValueError as exc:
        raise _fail(str(exc)) from None
    then = ("the engine acts on its next tick, through every gate again" if verdict == "approve" else
            "nothing is done; it stays with a person")
    print(f"{'approved' if verdict == 'approve' else 'denied'} incident {inc_id[:8]} ({printable(inc.headline)}); "
          f"{then}")


@app.command()
def approve(
    ctx: typer.Context,
    incident: str,
    comment: Annotated[str, typer.Option("--comment", "-m", parser=_text)] = "",
    actor: Annotated[str | None, typer.Option(help="who approves (default: this user)", parser=_text)] = None,
    config: ConfigOpt = None,
) -> None:
    """Approve the action an incident is waiting on."""
    config = given_config(ctx, config)
    _answer(incident, "approve", comment, actor, config)


@app.command()
def deny(
    ctx: typer.Context,
    incident: str,
    comment: Annotated[str, typer.Option("--comment", "-m", parser=_text)] = "",
    actor: Annotated[str | None, typer.Option(help="who denies (default: this user)", parser=_text)] = None,
    config: ConfigOpt = None,
) -> None:
    """Deny the action an incident is waiting on; it stays with a person."""
    config = given_config(ctx, config)
    _answer(incident, "deny", comment, actor, config)


@app.command()
def pause(
    ctx: typer.Context,
    reason: Annotated[str, typer.Option("--reason", "-r", help="why (recorded in the audit log)", parser=_text)],
    service: Annotated[str | None, typer.Option("--service", "-s", help="only this service", parser=_text)] = None,
    actor: Annotated[str | None, typer.Option(parser=_text)] = None,
    config: ConfigOpt = None,
) -> None:
    """The kill switch: stop all automated actions (or one service's). Durable and audited.

    When the store cannot be written (the database down, or locked by a writer that froze), the
    pause is written to a pause file in the engine's state_dir instead, which the engine on this
    host reads before every action all the same (and audits once the store answers)."""
    config = given_config(ctx, config)
    from autonomic.engine import pause_key

    cfg = _load(config)
    if service is not None and cfg.service(service) is None and cfg.source != "<defaults>":
        raise _fail(f"--service: no service named {service!r} in {cfg.source}")
    if not reason.strip():
        raise _fail("--reason: must not be empty")
    who = _actor(actor)
    scope = "all automation" if service is None else service
    try:
        store = store_of(cfg, create=True)  # with -c: a pause set before the engine's first start
        store.set_state(pause_key(service), {"reason": reason, "actor": who, "ts": store.server_time()}, actor=who,
                        event="pause.set", data={"service": service, "reason": reason})
    except StoreError as exc:
        print(f"autonomic: {exc}", file=sys.stderr)
        path = _write_pause_file(cfg, service, reason, who)
        live = _read_status(cfg.state_dir / "status.json")
        age = time.time() - float(live.get("ts", 0) or 0)
        if not live or isinstance(live.get("stopped_at"), int | float) or \
                age > 3 * cfg.engine.interval_s + STATUS_GRACE_S:
            # the store is the only way to an engine elsewhere (PostgreSQL from another machine)
            raise _fail(f"wrote the pause file {path}, but no engine runs here with this state_dir: an engine "
                        f"started here is paused by it, one on another host is NOT; pause again once the store "
                        f"answers", 1) from None
        print(f"paused {scope} by the pause file {path} instead (the store could not be written): the engine "
              f"running here (pid {live.get('pid')}) reads it before every action; "
              f"`{cfg.command} resume{'' if service is None else f' --service {service}'}` removes it")
        return
    print(f"paused {scope}: {printable(reason)}")


def _write_pause_file(cfg: Any, service: str | None, reason: str, who: str) -> Path:
    """Write the pause file for ``service`` (all when None); its path, or exit 1 saying nothing is paused."""
    from autonomic.engine import pause_file, write_pause_file

    try:
        return write_pause_file(cfg.state_dir, service, reason, who, time.time())
    except OSError as exc:
        raise _fail(f"nothing is paused: neither the store nor the pause file {pause_file(cfg.state_dir, service)} "
                    f"could be written ({exc.strerror or exc})", 1) from None


@app.command()
def resume(
    ctx: typer.Context,
    service: Annotated[str | None, typer.Option("--service", "-s", parser=_text)] = None,
    reason: Annotated[str, typer.Option("--reason", "-r", parser=_text)] = "",
    actor: Annotated[str | None, typer.Option(parser=_text)] = None,
    config: ConfigOpt = None,
) -> None:
    """Lift a pause set with `autonomic pause` (in the store, or by its pause file)."""
    config = given_config(ctx, config)
    from autonomic.engine import pause_file, pause_key

    cfg = _load(config)
    scope = "automation" if service is None else service
    path = pause_file(cfg.state_dir, service)
    removed = False
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        removed = True
        print(f"removed the pause file {path}")
    key = pause_key(service)
    try:
        try:
            store = store_of(cfg)
        except typer.Exit:  # no store here (never made): nothing in it to lift
            if removed:
                return
            raise
        who = _actor(actor)
        if store.get_state(key) is None:
            if not removed:
                raise _fail(f"{scope} is not paused")
            try:
                store.audit(who, "pause.lifted", key, {"service": service, "reason": reason, "file": str(path)})
            except StoreError as exc:  # lifted all the same: the engine audits the file gone when it can
                print(f"autonomic: not audited ({exc}); the engine audits the pause file gone once the store "
                      "answers", file=sys.stderr)
        else:
            store.set_state(key, None, actor=who, event="pause.lifted", data={"service": service, "reason": reason})
    except StoreError as exc:
        raise _fail(f"{exc}: a pause in the store, if any, still holds", 1) from None
    print(f"resumed {'all automation' if service is None else service}")


# the exit code of `autonomic start|stop` when the request was queued but the engine had not carried
# it out within the command's wait (0 is done, 1 done and failed, 2 refused: nothing queued)
QUEUED_NOT_DONE = 3


def _start_or_stop(service: str, verb: Literal["start", "stop"], comment: str, actor: str | None, wait: float | None,
                   config: Path | None) -> None:
    """Queue a person's start or stop for the engine that leads, then wait (bounded) for its outcome;
    exits :data:`QUEUED_NOT_DONE` when it is queued but not yet done."""
    from autonomic.engine import (
        NotSupervised,
        UnknownService,
        check_service_request,
        request_service,
        service_request_outcome,
    )

    try:  # a service it cannot start or stop is said first, whether or not a store is there
        check_service_request(_load(config), service, verb)
    except (UnknownService, NotSupervised) as exc:
        raise _fail(str(exc.args[0])) from None
    cfg, store = _store(config)
    try:
        key = request_service(store, cfg, service, verb, actor=_actor(actor), comment=comment, now=store.server_time())
    except (UnknownService, NotSupervised) as exc:
        raise _fail(str(exc.args[0])) from None
    binding = cfg.bindings[service]["process"]
    # the engine takes it at its next collection (interval_s), and a stop waits up to stop_timeout_s
    limit = (3 * cfg.engine.interval_s + (binding.stop_timeout_s if verb == "stop" else 0) + 10
             if wait is None else wait)
    deadline = time.monotonic() + limit
    outcome = service_request_outcome(store, key)
    while outcome is None and time.monotonic() < deadline:
        time.sleep(0.2)
        outcome = service_request_outcome(store, key)
    if outcome is None:
        live = _read_status(cfg.state_dir / "status.json")
        stopped, age = live.get("stopped_at"), time.time() - float(live.get("ts", 0) or 0)
        why = ("the engine is not running here: it stopped" if isinstance(stopped, int | float) else
               "no engine has run here" if not live else
               f"the engine is not running here, or is stuck or standing by (its health is {age:.0f} s old)"
               if age > 3 * cfg.engine.interval_s + STATUS_GRACE_S else
               "the engine did not take it in time (standing by, not leading? see autonomic status)")
        shows = (f"STOPPED {service} once it is stopped" if verb == "stop" else
                 f"{service} no longer STOPPED, and its health, once it is started")
        print(f"{service}: {verb} queued (request {key.split(':', 1)[1][:8]}), not yet done within {limit:g} s: {why}; "
              f"the engine that leads carries it out when it runs: `{cfg.command} status` shows {shows}")
        raise typer.Exit(QUEUED_NOT_DONE)
    data = outcome.data
    said = {
        "service.started": f"{service} started: pid {data.get('pid')}",
        "service.already_running": f"{service} was already running (pid {data.get('pid')}): nothing done",
        "service.start_failed": f"{service} could not be started: {data.get('error')}",
        "service.stopped": f"{service} stopped (pid {data.get('pid')}); it is stopped on purpose: autonomic does not "
                           f"start it (nor its down remedy, nor the engine's start) until `{cfg.command} start "
                           f"{service}`",
        "service.already_stopped": f"{service} was not running; it is now stopped on purpose: autonomic does not "
                                   f"start it until `{cfg.command} start {service}`",
        "service.request_refused": f"{service}: {verb} refused by the engine: {data.get('error')}",
    }[outcome.kind]
    if outcome.kind in ("service.start_failed", "service.request_refused"):
        raise _fail(printable(said), 1)
    print(printable(said))


_WaitOpt = Annotated[float | None, typer.Option(
    "--wait", min=0, help="seconds to wait for the engine to carry it out (default: 3 intervals and 10 s, and a "
    "stop's stop_timeout_s); 0: only queue it. Queued but not done in the wait: exit 3")]


@app.command()
def start(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(parser=_text)],
    comment: Annotated[str, typer.Option("--comment", "-m", help="why (recorded in the audit log)", parser=_text)] = "",
    actor: Annotated[str | None, typer.Option(help="who starts it (default: this user)", parser=_text)] = None,
    wait: _WaitOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Start a service autonomic supervises (a process binding) again: after a crash loop was handed
    to you, a denied restart, or `autonomic stop`. The engine that leads does it; this waits for it."""
    config = given_config(ctx, config)
    _start_or_stop(service, "start", comment, actor, wait, config)


@app.command()
def stop(
    ctx: typer.Context,
    service: Annotated[str, typer.Argument(parser=_text)],
    comment: Annotated[str, typer.Option("--comment", "-m", help="why (recorded in the audit log)", parser=_text)] = "",
    actor: Annotated[str | None, typer.Option(help="who stops it (default: this user)", parser=_text)] = None,
    wait: _WaitOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Stop a service autonomic supervises, on purpose (maintenance): it stays stopped, its down remedy
    passed over and not started at the engine's start, until `autonomic start`."""
    config = given_config(ctx, config)
    _start_or_stop(service, "stop", comment, actor, wait, config)


@audit_app.command("verify")
def audit_verify(
    ctx: typer.Context,
    config: ConfigOpt = None,
    archive: Annotated[bool, typer.Option(
        "--archive", help="also verify the audit archive (retention.archive_dir): each file, and that the "
        "files join from the first entry to where the store's chain starts")] = False,
) -> None:
    """Check the audit chain: every entry's hash, its link to the one before, and the head. After
    retention pruned the oldest entries, the chain is checked from its anchor (the last pruned
    entry's seq and hash, kept in the store), and says so."""
    from autonomic.knowledge.archive import verify_archive

    cfg, store = _store(given_config(ctx, config))
    report = store.verify_audit()
    problems = list(report.problems)
    overlap = ""
    if archive:
        kept = verify_archive(cfg.archive_dir)
        problems += [f"archive {p}" for p in kept.problems]
        if kept.problems or (kept.last_seq, kept.last_hash) == (report.anchor_seq, report.anchor_hash):
            pass
        elif report.anchor_seq < kept.last_seq <= report.last_seq:
            # the store restored from a backup taken before the archive's last prune: the two
            # overlap, and agree when the store's entry at the archive's end is the archive's last
            # (each hash covers every entry before it)
            (stored,) = store.audit_events(since_seq=kept.last_seq - 1, limit=1) or (None,)
            if stored is not None and stored.seq == kept.last_seq and stored.hash == kept.last_hash:
                overlap = (f"; seq {report.anchor_seq + 1}..{kept.last_seq} are both in the archive and in the store, "
                           "the same entries (the store was restored from a backup taken before they were pruned)")
            else:
                problems.append(f"archive {cfg.archive_dir} ends at seq {kept.last_seq}, and the store holds other "
                                f"entries than the archive at seq {kept.last_seq} (the store was restored from a "
                                "backup and went on with another history, or one of them was altered)")
        else:
            problems.append(f"archive {cfg.archive_dir} ends at seq {kept.last_seq}, but the store's chain starts "
                            f"after seq {report.anchor_seq}: the archive does not join it (files missing?)")
    if not problems:
        print(f"audit chain ok: {report.summary()}")
        if archive:
            print(f"audit archive ok: {counted(kept.checked, 'entry', 'entries')} in {cfg.archive_dir}, joining the "
                  f"store's chain{overlap}")
        return
    for problem in problems:
        print(problem, file=sys.stderr)
    raise typer.Exit(1)


@app.command("prune")
def prune_command(
    ctx: typer.Context,
    config: ConfigOpt = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only count what would be pruned now")] = False,
    actor: Annotated[str | None, typer.Option(help="who is pruning (default: $USER)", parser=_text)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Prune what retention no longer keeps (retention: in the config): closed incidents with what
    hangs off them, old findings, and the oldest audit entries (archived first). The engine does
    this every retention.interval_s on its own; this is the same, now."""
    config = given_config(ctx, config)
    from autonomic.knowledge.retention import dry_run as count_prunable
    from autonomic.knowledge.retention import prune

    cfg, store = _store(config)
    spec = cfg.spec.retention
    kept = None
    if cfg.audit_kept is not None and spec.audit_s is not None:  # as the engine does
        spec = spec.model_copy(update={"audit_days": None})
        kept = f"audit entries are kept in the database, not archived and pruned: {cfg.audit_kept}"
    now = store.server_time()  # the engine's clock with replicas over PostgreSQL (ServerClock)
    anchor = store.audit_anchor()[0]
    try:
        result = (count_prunable(store, spec, now) if dry_run
                  else prune(store, spec, now, cfg.archive_dir, actor=_actor(actor)))
    except OSError as exc:  # each chunk is archived before it is deleted: the one that failed was not
        after = store.audit_anchor()[0]
        done = ("no audit entry was pruned" if after == anchor else
                f"{counted(after - anchor, 'audit entry', 'audit entries')} (seq {anchor + 1} to {after}) were "
                "archived and pruned before it, the rest are kept")
        raise _fail(f"retention.archive_dir: cannot write the audit archive in {cfg.archive_dir}: "
                    f"{exc.strerror or exc}; {done}", 1) from None
    cut = result.cutoffs
    if as_json:
        print(json.dumps({"dry_run": dry_run, "cutoffs": {"findings": cut.findings, "incidents": cut.incidents,
                                                          "audit": cut.audit},
                          "counts": result.counts, "archives": result.archives,
                          "transactions": result.transactions, "audit_kept": kept}, indent=2))
        return

    def before(ts: float | None) -> str:
        return "kept for ever" if ts is None else f"before {local_stamp(ts)}"

    print(f"{'would prune' if dry_run else 'pruned'} (findings {before(cut.findings)}; closed incidents "
          f"{before(cut.incidents)}; audit entries {before(cut.audit)}):")
    if kept is not None:
        print(f"  {kept}")
    for kind, n in result.counts.items():
        plural = kind.replace("_", " ")  # and for 1 its singular: "1 incident", "1 diagnosis"
        print(f"  {n:8d} {plural if n != 1 else {'diagnoses': 'diagnosis'}.get(plural, plural[:-1])}")
    for path in result.archives:
        print(f"  archived to {path}")
    if result.total == 0:  # a dry run says so too, not a column of zeros alone
        print("  nothing was old enough")


@audit_app.command("show")
def audit_show(
    ctx: typer.Context,
    config: ConfigOpt = None,
    limit: Annotated[int, typer.Option(min=1, max=100_000)] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The newest audit entries."""
    _, store = _store(given_config(ctx, config))
    events = store.audit_events(limit=limit, newest=True)
    if as_json:
        print(json.dumps([e.model_dump(mode="json") for e in events], indent=2))
        return
    for e in events:
        print(f"{e.seq:6d} {local_stamp(e.ts)} {e.actor:16s} {e.kind:24s} "
              f"{e.subject[:8]} {json.dumps(e.data)[:100]}")


@canary_app.command("judge")
def canary_judge(
    baseline: Annotated[Path, typer.Option(help="CSV with columns metric,value (the baseline's samples)")],
    canary: Annotated[Path, typer.Option(help="CSV with columns metric,value (the canary's samples)")],
    config: Annotated[Path, typer.Option("--config", help="judgement rules (YAML): metrics, groups, scores")],
    as_json: JsonOpt = False,
) -> None:
    """Compare canary against baseline per metric; exit 0 pass, 3 marginal, 1 fail, 2 bad input."""
    from pydantic import ValidationError

    from autonomic.execute.canary import JudgeConfig, judge, read_samples
    from autonomic.yamlio import load_yaml, problems_from

    try:
        doc = load_yaml(config)
        try:
            rules = JudgeConfig.model_validate(doc.data)
        except ValidationError as err:
            raise ConfigError(problems_from(err, doc, model=JudgeConfig)) from None
        result = judge(read_samples(baseline), read_samples(canary), rules)
    except ConfigError as err:
        for p in err.problems:
            print(str(p), file=sys.stderr)
        raise typer.Exit(2) from None
    if as_json:
        print(json.dumps(result.model_dump(mode="json")))
    else:
        print(f"{result.verdict.upper()} (score {result.score:g}): {result.reason}")
        for m in result.metrics:
            print(f"  [{m.verdict:6s}] {m.reason}")
    raise typer.Exit({"pass": 0, "marginal": 3, "fail": 1}[result.verdict])


@app.command()
def demo(
    fast: Annotated[bool, typer.Option("--fast", help="short windows; finishes in under 3 minutes")] = False,
    as_json: JsonOpt = False,
    keep: Annotated[bool, typer.Option("--keep", help="keep the demo's working folder")] = False,
) -> None:
    """Run the demo services under the engine and play the five scenarios."""
    from autonomic.demo.scenario import run_demo

    result = run_demo(fast=fast, as_json=as_json, keep=keep)
    if as_json:
        print(json.dumps(result))
    failed = [s for s in result["scenarios"] if s["outcome"] != s["expected"]]
    if failed or result["false_interventions"]:
        raise typer.Exit(1)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
