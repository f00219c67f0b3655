"""Starts and supervises the services' processes; never restarts anything on its own.

Restarts are decisions the engine makes (through :class:`~autonomic.execute.process.ProcessActuator`).
Each service runs in its own session (``start_new_session=True``) so stopping it signals the
whole process group. Its stdout and stderr are appended to ``state_dir/logs/<service>.log``,
which :meth:`Supervisor.rotate_logs` keeps bounded (see there);
``state_dir/pids/<service>.json`` records ``{pid, create_time, argv}`` so a later engine
process can adopt the children an earlier one started (after a crash they keep running).
An adopted pid counts only while it is still the process the pidfile names, which guards
against the pid having been reused by an unrelated process: on Linux the pidfile also records
the kernel's boot id and the process's start time since boot (``since_boot``), which a clock
set by NTP does not move (psutil's ``create_time`` is that start plus the boot time in *wall*
time, which does move with it); elsewhere, and for a pidfile without them, ``create_time``
must match.

Every service is started with ``AUTONOMIC_SUPERVISED=<state_dir>:<service>`` in its
environment. An engine killed after starting a process but before writing its pidfile left a
running service with no pidfile; at the next start :meth:`Supervisor.adopt_or_start_all` finds
it by that marker (the session leader carrying it and running the service's command: a job
the service ran in a session of its own carries it too) and adopts it instead of starting a
second copy beside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal as signal_mod
import subprocess
import threading
import time
from collections.abc import Callable, Collection
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

import psutil
from pydantic import BaseModel, ConfigDict, Field, field_validator

from autonomic.errors import ActuatorError, TerminalActuatorError

_CREATE_TIME_TOLERANCE_S = 0.01
MARKER = "AUTONOMIC_SUPERVISED"  # in every supervised service's environment: <state_dir>:<service>
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def describe_exit(code: int) -> str:
    """How a process ended, for a person: ``exited with code 2``, ``was killed by SIGKILL``."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        return f"was killed by {signal_mod.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"


class ProcessBinding(BaseModel):
    """``services[].actuators.process`` in autonomic.yaml: how to run the service.

    ``memory_limit_bytes`` is not enforced; the process metric source uses it as the
    denominator of ``memory_percent``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    command: list[str] = Field(min_length=1)  # argv, never a shell string
    cwd: str | None = None  # config.py makes a relative one (and none given) the config file's folder
    env: dict[str, str] = Field(default_factory=dict)  # added to os.environ (less the engine's secrets)
    stop_timeout_s: float = Field(default=10.0, gt=0)
    memory_limit_bytes: int | None = Field(default=None, gt=0)
    # after a (re)start, a failing health probe is the service still starting, not "down"
    # (a dead process is still "down" at once), see Engine.ingest; and a metrics source of the
    # service that has not answered since the start is logged at DEBUG, not WARNING (see
    # Engine._still_starting): it warns once the grace is over, or at once if it had answered
    # since the start
    start_grace_s: float = Field(default=10.0, ge=0, le=3600)
    # state_dir/logs/<service>.log is rotated once it is over log_max_bytes (None: never),
    # keeping log_backups older files (<service>.log.1 the newest); see Supervisor.rotate_logs
    log_max_bytes: int | None = Field(default=10 * 1024 * 1024, ge=1024)
    log_backups: int = Field(default=3, ge=0, le=100)

    @field_validator("command", mode="before")
    @classmethod
    def _argv(cls, v: Any) -> Any:
        if isinstance(v, str):
            raise ValueError(f"must be a list of arguments (argv), not one string: {v.split()!r}, say; no shell "
                             "runs it (wrap it in [sh, -c, ...] yourself if you need one)")
        return v


class Supervisor:
    """Runs each added service's command and tracks its identity (pid, create_time)."""

    def __init__(self, state_dir: Path, withhold: Collection[str] = ()) -> None:
        """``withhold``: environment variables a service does not inherit (the engine's secrets,
        :attr:`~autonomic.config.Config.secret_env_names`) unless its binding's ``env`` sets them."""
        self.state_dir = Path(state_dir)
        self.withhold = frozenset(withhold)
        self._logs = self.state_dir / "logs"
        self._pids = self.state_dir / "pids"
        self._logs.mkdir(parents=True, exist_ok=True)
        self._pids.mkdir(parents=True, exist_ok=True)
        self._bindings: dict[str, ProcessBinding] = {}
        self._children: dict[str, tuple[subprocess.Popen[bytes], float]] = {}
        self._exit: dict[str, int] = {}
        self._lock = threading.RLock()

    # --- registry ------------------------------------------------------------------------

    def add(self, service: str, binding: ProcessBinding) -> None:
        with self._lock:
            self._bindings[service] = binding

    def take_over(self, old: Supervisor) -> list[str]:
        """Take ``old``'s children (the same state_dir: the engine replaced in the same process by a
        config reload) for the services this one has too, so that they are still polled (reaped,
        their exit codes kept); returns the services ``old`` still runs that this one does not have
        (gone from the config)."""
        with old._lock, self._lock:
            for service in [s for s in old._children if s in self._bindings]:
                self._children[service] = old._children.pop(service)
            self._exit.update({s: code for s, code in old._exit.items() if s in self._bindings})
        return [s for s in old.services() if s not in self._bindings and old.identity(s) is not None]

    def services(self) -> list[str]:
        with self._lock:
            return sorted(self._bindings)

    def binding(self, service: str) -> ProcessBinding:
        try:
            return self._bindings[service]
        except KeyError:
            raise TerminalActuatorError(f"service {service!r} has no process binding") from None

    def log_path(self, service: str) -> Path:
        return self._logs / f"{service}.log"

    def rotate_logs(self) -> list[str]:
        """Rotate every service log that is over its binding's ``log_max_bytes``; returns the
        services rotated. The engine calls this at each collection.

        The child writes to the log through a descriptor it holds (across an engine restart
        too), so the file cannot be renamed away from it; it is rotated the way logrotate's
        ``copytruncate`` does it: ``.log.N-1`` becomes ``.log.N`` and so on (the oldest beyond
        ``log_backups`` is dropped), the log is copied to ``.log.1`` and then truncated to
        zero; the child's next write lands at the new end, since the log is opened for
        appending. Output written between the copy and the truncation (microseconds) is lost.
        Disk use per service stays under about ``log_max_bytes * (log_backups + 1)`` plus what
        the service writes in one collection interval."""
        rotated = []
        with self._lock:
            bindings = dict(self._bindings)
        for service, binding in sorted(bindings.items()):
            limit = binding.log_max_bytes
            path = self.log_path(service)
            try:
                if limit is None or path.stat().st_size <= limit:
                    continue
                _copytruncate(path, binding.log_backups)
            except FileNotFoundError:
                continue
            rotated.append(service)
        return rotated

    def log_tail(self, service: str, lines: int = 10) -> str:
        """The last ``lines`` lines of the service's log ('' when there is none)."""
        try:
            data = self.log_path(service).read_bytes()[-8192:]
        except FileNotFoundError:
            return ""
        return "\n".join(data.decode(errors="replace").splitlines()[-lines:])

    # --- identity ------------------------------------------------------------------------

    def identity(self, service: str) -> tuple[int, float] | None:
        """(pid, create_time) of the live process, else None.

        Our own children are polled (which reaps them once exited). A process adopted from a
        pidfile counts only if it is alive, not a zombie, and still the process the pidfile names:
        the same start since boot in the same boot (when the pidfile records them), else the same
        create_time (see the module docstring).
        """
        with self._lock:
            child = self._children.get(service)
            if child is not None:
                proc, create_time = child
                code = proc.poll()
                if code is None:
                    return proc.pid, create_time
                self._exit[service] = code
                del self._children[service]
                self._remove_pidfile(service)
                return None
            record = self._read_pidfile(service)
            if record is None or not _alive_with(*record):
                return None
            return record[0], record[1]

    def pid(self, service: str) -> int | None:
        ident = self.identity(service)
        return ident[0] if ident else None

    def pids(self) -> dict[str, int | None]:
        return {service: self.pid(service) for service in self.services()}

    def exit_info(self, service: str) -> int | None:
        """Last exit code of a child we started, if it exited (negative: killed by signal)."""
        self.identity(service)
        with self._lock:
            return self._exit.get(service)

    # --- lifecycle -----------------------------------------------------------------------

    def start(self, service: str) -> int:
        """Start the service's command (or return the pid of the one already alive)."""
        with self._lock:
            binding = self.binding(service)
            ident = self.identity(service)
            if ident is not None:
                return ident[0]
            env = {**{k: v for k, v in os.environ.items() if k not in self.withhold}, **binding.env,
                   MARKER: self._marker(service)}
            argv = binding.command
            exe = argv[0]
            if os.sep in exe:
                path = os.path.join(binding.cwd or "", exe)
                found = path if os.path.isfile(path) and os.access(path, os.X_OK) else None
            else:
                found = shutil.which(exe, path=env.get("PATH"))
            if found is None:
                raise TerminalActuatorError(
                    f"service {service!r}: command not found or not executable: {argv!r}"
                )
            with open(self.log_path(service), "ab") as log:
                try:
                    proc = subprocess.Popen(
                        argv,
                        cwd=binding.cwd,
                        env=env,
                        stdin=subprocess.DEVNULL,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        close_fds=True,
                    )
                except OSError as exc:
                    raise TerminalActuatorError(
                        f"service {service!r}: cannot run {argv!r}: {exc}"
                    ) from exc
            self._children[service] = (proc, self._record(service, proc.pid, argv))
            self._exit.pop(service, None)
            return proc.pid

    def _record(self, service: str, pid: int, argv: list[str]) -> float:
        """Write the pidfile of ``pid`` (with its start times); returns its create_time."""
        try:
            create_time, since_boot = _start_times(pid)
        except psutil.Error:
            create_time, since_boot = time.time(), None
        record: dict[str, object] = {"pid": pid, "create_time": create_time, "argv": argv}
        boot_id = _boot_id()
        if boot_id is not None and since_boot is not None:
            record.update(boot_id=boot_id, since_boot=since_boot)
        self._write_pidfile(service, record)
        return create_time

    def _marker(self, service: str) -> str:
        return f"{self.state_dir.resolve()}:{service}"

    def _find_by_marker(self, service: str) -> int | None:
        """The pid of a live session leader whose environment carries this service's marker and
        that runs the service's command (:func:`_runs`): a service started by an engine that
        died before writing its pidfile. The service's own children inherit the marker: those
        in its session are not its leader, and one it ran in a session of its own (a job started
        with ``setsid``) runs another command, so the job left behind by a service that died
        while the engine was down is not taken for the service (which would then never be
        started). A service that rewrites its command line (``setproctitle``) is not found this
        way and is started again, as it was before markers."""
        marker, argv = self._marker(service), self.binding(service).command
        for proc in psutil.process_iter():
            try:
                if os.getsid(proc.pid) != proc.pid or proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                if proc.environ().get(MARKER) == marker and _runs(proc.cmdline(), argv):
                    return proc.pid
            except (psutil.Error, OSError):
                continue  # gone meanwhile, or another user's process
        return None

    def adopt_or_start_all(self, hold: Callable[[str], str | None] | None = None) -> dict[str, str]:
        """At engine start: adopt every live process from its pidfile, start the rest, except
        those ``hold(service)`` gives a reason for (a pause: starting is an action too).

        Returns service -> ``"adopted"``, ``"started"``, ``"held: <reason>"`` or ``"error: <why>"``.
        """
        result: dict[str, str] = {}
        for service in self.services():
            if self.identity(service) is not None:
                result[service] = "adopted"
                continue
            orphan = self._find_by_marker(service)
            if orphan is not None:
                with self._lock:
                    self._record(service, orphan, self.binding(service).command)
                result[service] = "adopted (found running without its pidfile)"
                continue
            reason = hold(service) if hold is not None else None
            if reason is not None:
                result[service] = f"held: {reason}"
                continue
            try:
                self.start(service)
                result[service] = "started"
            except ActuatorError as exc:
                result[service] = f"error: {exc}"
        return result

    def signal(self, service: str, sig: int) -> bool:
        """Send ``sig`` to the service's main process. False when it is not running."""
        ident = self.identity(service)
        if ident is None:
            return False
        try:
            os.kill(ident[0], sig)
        except ProcessLookupError:
            return False
        return True

    def stop(self, service: str, timeout_s: float | None = None) -> int | None:
        """SIGTERM the process group, wait up to ``timeout_s`` (default: the binding's
        stop_timeout_s), then SIGKILL it; what the main process leaves in its group is given what
        is left of ``timeout_s`` too, then SIGKILLed. Returns the exit code if known; no-op if not
        running."""
        timeout = self.binding(service).stop_timeout_s if timeout_s is None else timeout_s
        ident = self.identity(service)
        if ident is None:
            return None
        deadline = time.monotonic() + timeout
        _killpg(ident[0], signal_mod.SIGTERM)
        code, gone = self._wait(service, ident, timeout)
        if not gone:
            _killpg(ident[0], signal_mod.SIGKILL)
            code, _ = self._wait(service, ident, 5.0)
        _end_group(ident[0], deadline)
        return code

    def stop_all(self, timeout_s: float | None = None) -> None:
        """Stop every running service: SIGTERM all, then wait (sharing one deadline), then
        SIGKILL the ones still alive. ``timeout_s`` None uses each binding's stop_timeout_s."""
        running = {s: ident for s in self.services() if (ident := self.identity(s)) is not None}
        for ident in running.values():
            _killpg(ident[0], signal_mod.SIGTERM)
        start = time.monotonic()
        for service, ident in running.items():
            timeout = self.binding(service).stop_timeout_s if timeout_s is None else timeout_s
            remaining = max(0.0, start + timeout - time.monotonic())
            _, gone = self._wait(service, ident, remaining)
            if not gone:
                _killpg(ident[0], signal_mod.SIGKILL)
                self._wait(service, ident, 5.0)
            _end_group(ident[0], start + timeout)

    # --- internals -----------------------------------------------------------------------

    def _wait(self, service: str, ident: tuple[int, float], timeout: float) -> tuple[int | None, bool]:
        """Wait for the process ``ident`` to go; (exit code if known, gone?)."""
        with self._lock:
            child = self._children.get(service)
        if child is not None and child[0].pid == ident[0]:
            try:
                code = child[0].wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                return None, False
            self.identity(service)  # records the exit code, removes the pidfile
            return code, True
        with self._lock:
            record = self._read_pidfile(service)
        adopted = record if record is not None and record[:2] == ident else (*ident, None)
        deadline = time.monotonic() + timeout
        while _alive_with(*adopted):
            if time.monotonic() >= deadline:
                return None, False
            time.sleep(0.02)
        with self._lock:
            record = self._read_pidfile(service)
            if record is not None and record[0] == ident[0]:
                self._remove_pidfile(service)
        return None, True

    def _pidfile(self, service: str) -> Path:
        return self._pids / f"{service}.json"

    def _read_pidfile(self, service: str) -> tuple[int, float, tuple[str, float] | None] | None:
        """(pid, create_time, (boot id, start since boot) or None) from the pidfile; None when
        absent or unreadable."""
        try:
            record = json.loads(self._pidfile(service).read_text())
            boot = ((str(record["boot_id"]), float(record["since_boot"]))
                    if "boot_id" in record and "since_boot" in record else None)
            return int(record["pid"]), float(record["create_time"]), boot
        except (FileNotFoundError, ValueError, TypeError, KeyError):
            return None

    def _write_pidfile(self, service: str, record: dict[str, object]) -> None:
        path = self._pidfile(service)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)

    def _remove_pidfile(self, service: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._pidfile(service).unlink()


def _copytruncate(path: Path, backups: int) -> None:
    """Shift ``path.1`` .. ``path.<backups-1>`` up by one, drop any numbered beyond ``backups``,
    copy ``path`` to ``path.1`` and truncate ``path`` to zero length (see Supervisor.rotate_logs)."""
    def numbered(i: int) -> Path:
        return path.with_name(f"{path.name}.{i}")

    for old in path.parent.glob(f"{glob_escape(path.name)}.*"):  # log_backups may have been lowered
        suffix = old.name[len(path.name) + 1:]
        if suffix.isdigit() and int(suffix) >= max(backups, 1):
            with contextlib.suppress(FileNotFoundError):
                old.unlink()
    for i in range(backups - 1, 0, -1):
        with contextlib.suppress(FileNotFoundError):
            os.replace(numbered(i), numbered(i + 1))
    tmp = path.with_name(f".{path.name}.1.tmp")
    with open(path, "r+b") as src:
        if backups:
            with open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)
        src.truncate(0)  # right after the copy: what is written in between is lost
    if backups:
        os.replace(tmp, numbered(1))


def _boot_id() -> str | None:
    """The kernel's id of this boot (Linux), None where there is none."""
    try:
        return _BOOT_ID.read_text().strip() or None
    except OSError:
        return None


def _start_times(pid: int) -> tuple[float, float]:
    """(psutil create_time, start time since boot) of ``pid``. The boot time is read first and
    psutil reads it again inside create_time, so the difference is the start since boot."""
    boot = psutil.boot_time()
    create_time = psutil.Process(pid).create_time()
    return create_time, create_time - boot


def _alive_with(pid: int, create_time: float, boot: tuple[str, float] | None = None) -> bool:
    """True if ``pid`` is alive, not a zombie, and the process it names now is the one recorded:
    in this boot (``boot`` = (boot id, start since boot)), started at that time since boot, which
    setting the clock does not change; else created at ``create_time``."""
    try:
        if boot is not None and boot[0] == _boot_id():
            _, since_boot = _start_times(pid)
            same = abs(since_boot - boot[1]) <= _CREATE_TIME_TOLERANCE_S
        else:
            same = abs(psutil.Process(pid).create_time() - create_time) <= _CREATE_TIME_TOLERANCE_S
        return same and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _end_group(pgid: int, deadline: float) -> None:
    """After the main process is gone: wait until ``deadline`` for what it left in its process
    group (workers that outlive it, ignore SIGTERM or take longer) to go, then SIGKILL the group.
    While a member is left the kernel keeps the group's id, the old main pid, from being reused."""
    while _group_alive(pgid):
        if time.monotonic() >= deadline:
            _killpg(pgid, signal_mod.SIGKILL)
            return
        time.sleep(0.02)


def _group_alive(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is still running (zombies, dead and waiting for a
    parent to reap them, do not count)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    for proc in psutil.process_iter(["status"]):
        with contextlib.suppress(OSError, psutil.Error):
            if os.getpgid(proc.pid) == pgid and proc.info["status"] != psutil.STATUS_ZOMBIE:
                return True
    return False


def _killpg(pid: int, sig: int) -> None:
    """Signal the process group led by ``pid`` (each service runs in its own session)."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        pass
    except PermissionError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _runs(cmdline: list[str], argv: list[str]) -> bool:
    """Whether a process's command line is what exec of ``argv`` shows: ``argv`` itself, or, for
    a script run through its ``#!`` interpreter, the interpreter (and its argument) followed by
    the script's path (``argv[0]`` found on PATH: compared by base name) and ``argv[1:]``."""
    if not argv or len(cmdline) < len(argv):
        return False
    tail = cmdline[len(cmdline) - len(argv):]
    return tail[1:] == argv[1:] and os.path.basename(tail[0]) == os.path.basename(argv[0])
