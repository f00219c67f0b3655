"""A stand-in for systemd's D-Bus API, for testing the ``systemd`` actuator.

systemd cannot run as PID 1 here, so the tests start a private ``dbus-daemon`` (the real
bus, real wire protocol) and this stand-in joins it under the well-known name
``org.freedesktop.systemd1``. It implements the calls the actuator makes, the way systemd
answers them:

- ``org.freedesktop.systemd1.Manager`` at ``/org/freedesktop/systemd1``: ``GetUnit``,
  ``LoadUnit``, ``StartUnit``, ``StopUnit``, ``RestartUnit``, ``ReloadUnit`` (each job
  method returns a job object path; the job finishes ``job_s`` seconds later);
- ``org.freedesktop.DBus.Properties.Get`` on unit paths (``org.freedesktop.systemd1.Unit``:
  ``LoadState``, ``ActiveState``, ``SubState``, ``ActiveEnterTimestamp``, ``Job`` (the pending
  job's id and path, ``(0, "/")`` when none); ``org.freedesktop.systemd1.Service``: ``MainPID``,
  ``Result``, ``ExecMainCode``, ``ExecMainStatus``)
  and on job paths (``State`` and ``JobType`` while the job runs; ``UnknownObject`` once it is gone);
- errors: ``org.freedesktop.systemd1.NoSuchUnit`` for unknown units,
  ``org.freedesktop.DBus.Error.AccessDenied`` for units marked ``denied``.

A job of another kind replaces (cancels) the unit's pending job, as mode "replace" does.
Restart bumps ``ActiveEnterTimestamp`` and ``MainPID``; stop makes the unit inactive; a
unit marked ``fails`` ends ``failed`` on start, one marked ``stop_fails`` ends ``failed`` on stop (stopped, but its
main process exited with a failure status). ``calls`` counts every method by name.
"""

from __future__ import annotations

import contextlib
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jeepney import HeaderFields, Message, MessageType, new_error, new_method_return
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import DBusConnection, Proxy, open_dbus_connection

NAME = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER_IFACE = "org.freedesktop.systemd1.Manager"
UNIT_IFACE = "org.freedesktop.systemd1.Unit"
SERVICE_IFACE = "org.freedesktop.systemd1.Service"
JOB_IFACE = "org.freedesktop.systemd1.Job"
PROPS_IFACE = "org.freedesktop.DBus.Properties"

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def unit_path(name: str) -> str:
    """systemd's object path of a unit: every byte outside [A-Za-z0-9] as ``_xx``."""
    escaped = "".join(c if c.isascii() and c.isalnum() else f"_{ord(c):02x}" for c in name)
    return f"{MANAGER_PATH}/unit/{escaped}"


def now_us() -> int:
    return int(time.time() * 1_000_000)


@dataclass
class FakeUnit:
    name: str
    active_state: str = "active"
    sub_state: str = "running"
    active_enter_ts: int = field(default_factory=now_us)
    main_pid: int = 1000
    load_state: str = "loaded"
    fails: bool = False  # a start ends "failed"
    # its main process exits with a failure status on SIGTERM (a JVM's 143, with no
    # SuccessExitStatus= for it): systemd stops it and marks it "failed" (Result exit-code)
    stop_fails: bool = False
    denied: bool = False  # every job method answers AccessDenied
    # how the main process last ended (org.freedesktop.systemd1.Service): Result, and ExecMainCode
    # (1 exited, 2 killed, 3 dumped core) with ExecMainStatus (the exit code or the signal)
    result: str = "success"
    exec_main_code: int = 0
    exec_main_status: int = 0
    job_s: float | None = None  # per-unit job duration; None: the stand-in's default


@dataclass
class _Job:
    path: str
    unit: FakeUnit
    op: str
    due: float


class DbusDaemon:
    """A private ``dbus-daemon`` listening on a unix socket in a short temporary directory
    (unix socket paths are limited to 108 bytes, so not under pytest's long tmp_path)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sdbus-", dir="/tmp"))
        conf = self.dir / "bus.conf"
        conf.write_text(BUS_CONFIG.format(socket=self.dir / "bus"))
        self.proc = subprocess.Popen(
            ["dbus-daemon", f"--config-file={conf}", "--nofork", "--print-address=1"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 10.0)
        line = self.proc.stdout.readline().decode().strip() if ready else ""
        if not line:
            self.stop()
            raise RuntimeError("dbus-daemon did not print its address")
        self.address = line

    def stop(self) -> None:
        """Stop the daemon and remove its socket (idempotent)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class SystemdStandin:
    """Answers systemd's D-Bus calls for ``units`` from a background thread."""

    def __init__(self, address: str, units: list[FakeUnit], job_s: float = 0.1) -> None:
        self.address = address
        self.units = {u.name: u for u in units}
        self.job_s = job_s
        self.calls: Counter[str] = Counter()
        self._jobs: dict[str, _Job] = {}
        self._job_ids = iter(range(1, 1_000_000))
        self._pids = iter(range(2000, 1_000_000))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._conn: DBusConnection | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> SystemdStandin:
        conn = open_dbus_connection(self.address)
        reply = Proxy(message_bus, conn, timeout=5).RequestName(NAME, 4)  # 4: DO_NOT_QUEUE
        if reply[0] != 1:  # 1: PRIMARY_OWNER
            conn.close()
            raise RuntimeError(f"could not own {NAME} (reply {reply[0]})")
        self._conn = conn
        self._thread = threading.Thread(target=self._loop, name="systemd-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None

    def unit(self, name: str) -> FakeUnit:
        with self._lock:
            self._finish_due_jobs()
            return self.units[name]

    # --- message loop ----------------------------------------------------------------------

    def _loop(self) -> None:
        assert self._conn is not None
        while not self._stop.is_set():
            try:
                msg = self._conn.receive(timeout=0.05)
            except TimeoutError:
                continue
            except OSError:
                return  # the bus went away
            if msg.header.message_type is not MessageType.method_call:
                continue
            with self._lock:
                self._finish_due_jobs()
                reply = self._handle(msg)
            with contextlib.suppress(OSError):
                self._conn.send(reply)

    def _handle(self, msg: Message) -> Message:
        fields = msg.header.fields
        member = fields.get(HeaderFields.member, "")
        iface = fields.get(HeaderFields.interface)
        path = fields.get(HeaderFields.path, "")
        self.calls[member] += 1
        if iface == PROPS_IFACE and member == "Get":
            return self._get_property(msg, path, *msg.body)
        if path != MANAGER_PATH or iface not in (MANAGER_IFACE, None):
            return _error(msg, "org.freedesktop.DBus.Error.UnknownObject", f"Unknown object '{path}'.")
        name = msg.body[0] if msg.body else ""
        unit = self.units.get(name)
        if member == "LoadUnit":
            if unit is None:  # systemd loads a stub whose LoadState is "not-found"
                unit = self.units[name] = FakeUnit(name, "inactive", "dead", 0, 0, load_state="not-found")
            return new_method_return(msg, "o", (unit_path(name),))
        if unit is None:
            return _error(msg, "org.freedesktop.systemd1.NoSuchUnit", f"Unit {name} not loaded.")
        if member == "GetUnit":
            return new_method_return(msg, "o", (unit_path(name),))
        ops = {"StartUnit": "start", "StopUnit": "stop", "RestartUnit": "restart", "ReloadUnit": "reload"}
        if member not in ops:
            return _error(msg, "org.freedesktop.DBus.Error.UnknownMethod", f"Unknown method {member}.")
        if unit.load_state == "not-found":
            return _error(msg, "org.freedesktop.systemd1.NoSuchUnit", f"Unit {name} not found.")
        if unit.denied:
            return _error(msg, "org.freedesktop.DBus.Error.AccessDenied", "Access denied")
        return new_method_return(msg, "o", (self._enqueue(unit, ops[member]),))

    def _enqueue(self, unit: FakeUnit, op: str) -> str:
        # mode "replace", as systemd does it: a job of another kind cancels the unit's pending
        # job (its object disappears; its caller sees JobRemoved with result "canceled")
        for pending in [p for p, j in self._jobs.items() if j.unit is unit and j.op != op]:
            del self._jobs[pending]
        path = f"{MANAGER_PATH}/job/{next(self._job_ids)}"
        transitional = {"start": "activating", "restart": "deactivating", "stop": "deactivating"}
        unit.active_state = transitional.get(op, "reloading")
        unit.sub_state = unit.active_state
        delay = self.job_s if unit.job_s is None else unit.job_s
        self._jobs[path] = _Job(path, unit, op, time.monotonic() + delay)
        return path

    def _finish_due_jobs(self) -> None:
        now = time.monotonic()
        for path, job in list(self._jobs.items()):
            if job.due > now:
                continue
            del self._jobs[path]
            u = job.unit
            if job.op == "stop":
                u.active_state, u.sub_state = ("failed", "failed") if u.stop_fails else ("inactive", "dead")
                u.main_pid = 0
            elif job.op == "reload":
                u.active_state, u.sub_state = "active", "running"
            elif u.fails:
                u.active_state, u.sub_state, u.main_pid = "failed", "failed", 0
            else:
                u.active_state, u.sub_state = "active", "running"
                u.active_enter_ts = max(now_us(), u.active_enter_ts + 1)
                u.main_pid = next(self._pids)

    def _get_property(self, msg: Message, path: str, iface: str, prop: str) -> Message:
        if path in self._jobs:
            if iface == JOB_IFACE and prop == "State":
                return new_method_return(msg, "v", (("s", "running"),))
            if iface == JOB_IFACE and prop == "JobType":
                return new_method_return(msg, "v", (("s", self._jobs[path].op),))
            return _error(msg, "org.freedesktop.DBus.Error.UnknownProperty", f"Unknown property {prop}")
        unit = next((u for u in self.units.values() if unit_path(u.name) == path), None)
        if unit is None:
            return _error(msg, "org.freedesktop.DBus.Error.UnknownObject", f"Unknown object '{path}'.")
        values: dict[tuple[str, str], tuple[str, Any]] = {
            (UNIT_IFACE, "LoadState"): ("s", unit.load_state),
            (UNIT_IFACE, "ActiveState"): ("s", unit.active_state),
            (UNIT_IFACE, "SubState"): ("s", unit.sub_state),
            (UNIT_IFACE, "ActiveEnterTimestamp"): ("t", unit.active_enter_ts),
        }
        pending = next((j for j in self._jobs.values() if j.unit is unit), None)
        values[(UNIT_IFACE, "Job")] = ("(uo)", (int(pending.path.rsplit("/", 1)[1]), pending.path) if pending
                                       else (0, "/"))
        if unit.name.endswith(".service"):
            values[(SERVICE_IFACE, "MainPID")] = ("u", unit.main_pid)
            values[(SERVICE_IFACE, "Result")] = ("s", unit.result)
            values[(SERVICE_IFACE, "ExecMainCode")] = ("i", unit.exec_main_code)
            values[(SERVICE_IFACE, "ExecMainStatus")] = ("i", unit.exec_main_status)
        if (iface, prop) not in values:
            return _error(msg, "org.freedesktop.DBus.Error.UnknownProperty", f"Unknown property {prop}")
        return new_method_return(msg, "v", (values[(iface, prop)],))


def _error(msg: Message, name: str, text: str) -> Message:
    return new_error(msg, name, "s", (text,))
