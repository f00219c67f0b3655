"""The ``systemd`` actuator: restart, reload, start or stop a unit over D-Bus.

It talks to ``org.freedesktop.systemd1`` with jeepney (pure Python, blocking I/O), one
connection per call, on the system bus, the user bus, or an explicit ``bus_address``:

- the Manager's ``RestartUnit`` / ``ReloadUnit`` / ``StartUnit`` / ``StopUnit`` (name, mode)
  queue a job and return its object path; when the unit's ``Job`` is already one of that kind
  (an earlier attempt's, still running after ``wait_s``), that job is waited for instead;
- the actuator then polls (every 50 ms, up to ``wait_s``) until the job object is gone and
  the unit settled: ``active`` for start, restart and reload (for restart also with an
  ``ActiveEnterTimestamp`` newer than before), ``inactive`` (or ``failed``: stopped all the same) for stop;
- unit state is read with ``org.freedesktop.DBus.Properties.Get`` on the unit's path
  (from ``GetUnit``, or ``LoadUnit`` when the unit is not loaded).

Errors: no such unit (``NoSuchUnit``, or ``LoadState`` ``not-found``), a masked unit and
``AccessDenied`` are terminal, as is a unit that ends ``failed``. An unreachable bus, a call
timeout, systemd missing from the bus, or a job still running after ``wait_s`` are retryable.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from jeepney import DBusAddress, Message, new_method_call
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from jeepney.wrappers import DBusErrorResponse, unwrap_msg
from pydantic import BaseModel, ConfigDict, Field, field_validator

from autonomic.errors import ActuatorError, RetryableActuatorError, TerminalActuatorError
from autonomic.execute.supervisor import describe_exit
from autonomic.protocols import UNIT_READ_TIMEOUT_S, ActuatorContext, Target

SYSTEMD = "org.freedesktop.systemd1"
MANAGER = DBusAddress("/org/freedesktop/systemd1", bus_name=SYSTEMD, interface=f"{SYSTEMD}.Manager")
UNIT_IFACE = f"{SYSTEMD}.Unit"
SERVICE_IFACE = f"{SYSTEMD}.Service"
JOB_IFACE = f"{SYSTEMD}.Job"
POLL_S = 0.05
# ExecMainCode: how the main process ended (siginfo's si_code: CLD_EXITED, CLD_KILLED, CLD_DUMPED)
_EXITED, _KILLED, _DUMPED = 1, 2, 3

UNIT_SUFFIXES = (
    "service", "socket", "target", "device", "mount", "automount",
    "swap", "timer", "path", "slice", "scope",
)  # fmt: skip
_UNIT_RE = re.compile(r"^[A-Za-z0-9:_.\\@-]+\.(" + "|".join(UNIT_SUFFIXES) + r")$")

_METHODS = {"restart": "RestartUnit", "reload": "ReloadUnit", "start": "StartUnit", "stop": "StopUnit"}
_TERMINAL_ERRORS = {
    f"{SYSTEMD}.NoSuchUnit": "no such unit",
    f"{SYSTEMD}.UnitMasked": "unit is masked",
    f"{SYSTEMD}.JobTypeNotApplicable": "operation not applicable to this unit",
    "org.freedesktop.DBus.Error.AccessDenied": "access denied",
    "org.freedesktop.DBus.Error.InteractiveAuthorizationRequired": "access denied (authorization required)",
}
_RETRYABLE_ERRORS = {
    "org.freedesktop.DBus.Error.ServiceUnknown",  # systemd not on the bus (yet)
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.NoReply",
    "org.freedesktop.DBus.Error.Timeout",
    "org.freedesktop.DBus.Error.TimedOut",
    "org.freedesktop.DBus.Error.Disconnected",
    f"{SYSTEMD}.TransactionIsDestructive",  # mode "fail" and a conflicting job is queued
}
# not running: "failed" too, as a unit whose main process exited with a failure status on
# SIGTERM ends after a stop (a JVM's 143 without SuccessExitStatus=)
_STOPPED = ("inactive", "failed")
_SAME_JOB = {"restart": ("restart", "start"), "start": ("start", "restart"), "stop": ("stop",),
             "reload": ("reload",)}
_JOB_GONE = {"org.freedesktop.DBus.Error.UnknownObject", "org.freedesktop.DBus.Error.UnknownMethod"}


class SystemdParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    op: Literal["restart", "reload", "start", "stop"] = "restart"
    mode: Literal["replace", "fail"] = "replace"  # systemd job mode
    wait_s: float = Field(default=30.0, gt=0, le=3600)  # how long to wait for the job to finish


class SystemdBinding(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    unit: str  # full unit name, e.g. "app.service"
    bus: Literal["system", "user"] = "system"
    bus_address: str | None = None  # explicit D-Bus address ("unix:path=..."); overrides bus
    timeout_s: float = Field(default=30.0, gt=0, le=600)  # per D-Bus call

    @field_validator("unit")
    @classmethod
    def _unit_name(cls, v: str) -> str:
        if len(v) > 255 or not _UNIT_RE.match(v):
            raise ValueError(
                f"{v!r} is not a unit name: letters, digits and ':_.\\@-', ending in "
                + ", ".join(f".{s}" for s in UNIT_SUFFIXES)
            )
        return v

    @field_validator("bus_address")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith("unix:"):
            raise ValueError(f"{v!r}: only unix: D-Bus addresses are supported")
        return v

    def address(self) -> str:
        """The D-Bus address to connect to."""
        if self.bus_address:
            return self.bus_address
        if self.bus == "user":
            env = os.environ.get("DBUS_SESSION_BUS_ADDRESS")
            runtime = os.environ.get("XDG_RUNTIME_DIR", f"/run/user/{os.getuid()}")
            return env or f"unix:path={runtime}/bus"
        env = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
        return env or "unix:path=/run/dbus/system_bus_socket"


class _Bus:
    """One connection to the bus, with systemd's errors mapped onto the actuator errors."""

    def __init__(self, b: SystemdBinding) -> None:
        self.b = b
        try:
            self.conn: DBusConnection = open_dbus_connection(b.address(), auth_timeout=b.timeout_s)
        except (OSError, TimeoutError, ValueError, RuntimeError) as exc:
            raise RetryableActuatorError(f"systemd: cannot reach the D-Bus at {b.address()}: {exc}") from exc

    def close(self) -> None:
        self.conn.close()

    def call(self, msg: Message, what: str) -> tuple[Any, ...]:
        try:
            reply = self.conn.send_and_get_reply(msg, timeout=self.b.timeout_s)
            return tuple(unwrap_msg(reply))
        except DBusErrorResponse as exc:
            raise self._error(exc, what) from exc
        except TimeoutError as exc:
            raise RetryableActuatorError(f"systemd: {what}: no answer in {self.b.timeout_s:g} s") from exc
        except OSError as exc:
            raise RetryableActuatorError(f"systemd: {what}: the D-Bus connection failed: {exc}") from exc

    def _error(self, exc: DBusErrorResponse, what: str) -> ActuatorError:
        text = exc.data[0] if exc.data and isinstance(exc.data[0], str) else ""
        detail = f"systemd: {what}: {exc.name}" + (f": {text}" if text else "")
        if exc.name in _TERMINAL_ERRORS:
            return TerminalActuatorError(f"unit {self.b.unit}: {_TERMINAL_ERRORS[exc.name]} ({detail})")
        if exc.name in _RETRYABLE_ERRORS:
            return RetryableActuatorError(detail)
        return TerminalActuatorError(detail)

    def prop(self, path: str, iface: str, name: str) -> Any:
        props = DBusAddress(path, bus_name=SYSTEMD, interface="org.freedesktop.DBus.Properties")
        (variant,) = self.call(new_method_call(props, "Get", "ss", (iface, name)), f"read {name}")
        return variant[1]

    def unit_path(self) -> str:
        """The unit's object path; the unit is loaded when it is not. Terminal when the unit
        does not exist."""
        unit = self.b.unit
        try:
            (path,) = self.call(new_method_call(MANAGER, "GetUnit", "s", (unit,)), f"GetUnit {unit}")
        except TerminalActuatorError as exc:
            if _dbus_error_name(exc) != f"{SYSTEMD}.NoSuchUnit":
                raise
            (path,) = self.call(new_method_call(MANAGER, "LoadUnit", "s", (unit,)), f"LoadUnit {unit}")
        if self.prop(path, UNIT_IFACE, "LoadState") == "not-found":
            raise TerminalActuatorError(f"unit {unit}: no such unit (LoadState not-found)")
        return str(path)

    def state(self, path: str) -> dict[str, Any]:
        state = {
            "unit": self.b.unit,
            "active_state": str(self.prop(path, UNIT_IFACE, "ActiveState")),
            "sub_state": str(self.prop(path, UNIT_IFACE, "SubState")),
            "active_enter_ts": int(self.prop(path, UNIT_IFACE, "ActiveEnterTimestamp")),
            "main_pid": None,
        }
        if self.b.unit.endswith(".service"):
            state["main_pid"] = int(self.prop(path, SERVICE_IFACE, "MainPID")) or None
        return state

    def job_running(self, job: str) -> bool:
        try:
            self.prop(job, JOB_IFACE, "State")
            return True
        except TerminalActuatorError as exc:
            if _dbus_error_name(exc) in _JOB_GONE:
                return False
            raise

    def pending_job(self, path: str, op: str) -> str | None:
        """The path of the unit's pending job when it does what ``op`` asks (a restart job turns
        into a start job once its stop part is done), else None."""
        job_id, job = self.prop(path, UNIT_IFACE, "Job")
        if not job_id:
            return None
        try:
            kind = str(self.prop(str(job), JOB_IFACE, "JobType"))
        except TerminalActuatorError as exc:
            if _dbus_error_name(exc) in _JOB_GONE:
                return None
            raise
        return str(job) if kind in _SAME_JOB[op] else None

    def run(self, op: str, mode: str, wait_s: float) -> dict[str, Any]:
        """Queue ``op`` on the unit, wait for its job to finish, return the unit's new state."""
        path = self.unit_path()
        before = self.state(path)
        method = _METHODS[op]
        # a job of this kind still pending (an earlier attempt's, after wait_s ran out) is waited
        # for, not queued again: a second RestartUnit would restart a slow unit in mid-start
        job = self.pending_job(path, op)
        if job is None:
            (job,) = self.call(new_method_call(MANAGER, method, "ss", (self.b.unit, mode)), method)
        deadline = time.monotonic() + wait_s
        while True:
            running = self.job_running(job)
            state = self.state(path)
            # judged only once the job is done: a failed unit reads "failed" until its job starts;
            # after a stop, "failed" is stopped too (the main process exited with a failure status)
            if not running and state["active_state"] == "failed" and op != "stop":
                raise TerminalActuatorError(
                    f"unit {self.b.unit}: {op} failed (ActiveState failed, SubState {state['sub_state']})"
                )
            if not running and _settled(op, state, before):
                return {"job": job, **state}
            if not running and _countermanded(op, state):
                # our job is gone and the unit went the other way: another job replaced or
                # cancelled it (a person's systemctl stop during our restart). Not retried: a
                # retry would undo what that person just did.
                raise TerminalActuatorError(
                    f"unit {self.b.unit}: the {op} job ended with the unit {state['active_state']}: another job "
                    f"replaced or cancelled it (someone's systemctl {_OPPOSITE[op]}?), or the service exited at "
                    f"once; not retried"
                )
            if time.monotonic() >= deadline:
                raise RetryableActuatorError(
                    f"unit {self.b.unit}: {op} not finished after {wait_s:g} s "
                    f"(job {'running' if running else 'done'}, ActiveState {state['active_state']})"
                )
            time.sleep(POLL_S)


def _dbus_error_name(exc: BaseException) -> str | None:
    cause = exc.__cause__
    return str(cause.name) if isinstance(cause, DBusErrorResponse) else None


_OPPOSITE = {"start": "stop", "restart": "stop", "stop": "start", "reload": "stop"}


def _countermanded(op: str, state: Mapping[str, Any]) -> bool:
    """Whether the unit went the other way from ``op`` (judged once ``op``'s job is gone)."""
    if op in ("start", "restart"):
        return state["active_state"] in ("inactive", "deactivating")
    if op == "stop":
        return state["active_state"] in ("active", "activating", "reloading")
    return False


def _settled(op: str, state: Mapping[str, Any], before: Mapping[str, Any]) -> bool:
    if op == "stop":
        return state["active_state"] in _STOPPED
    if state["active_state"] != "active":
        return False
    return op != "restart" or state["active_enter_ts"] > before["active_enter_ts"]


class SystemdActuator:
    """Restart, reload, start or stop a systemd unit over D-Bus.

    ``snapshot`` records ActiveState, SubState, ActiveEnterTimestamp and (for services)
    MainPID. ``applied``: restart, when the unit is active and entered that state after the
    snapshot (None without a snapshot); start, when active; stop, when inactive or failed; reload
    cannot be told (None).
    ``apply`` does nothing when ``applied`` holds. ``undo`` stops what a start started and
    starts what a stop stopped (only when the snapshot found it in that other state);
    restart and reload cannot be undone.
    """

    type: ClassVar[str] = "systemd"
    Params = SystemdParams
    Binding = SystemdBinding

    def __init__(self, ctx: ActuatorContext) -> None:
        self.ctx = ctx

    def describe(self, target: Target, params: BaseModel) -> str:
        p, b = _params(params), _binding(target)
        bus = f"bus {b.bus_address}" if b.bus_address else f"{b.bus} bus"
        return f"{p.op} systemd unit {b.unit} of {target.service} (mode {p.mode}, {bus}, wait {p.wait_s:g} s)"

    def call_limit_s(self, target: Target, params: BaseModel) -> float:
        """The longest one call can take: connecting and queueing the job (a D-Bus call each, at
        most the binding's ``timeout_s``), ``wait_s`` for the job, and the last poll's call."""
        return _params(params).wait_s + 3 * _binding(target).timeout_s

    def unit_exit_limit_s(self, target: Target) -> float:
        """The longest :meth:`unit_exit` can take: connecting, then up to seven D-Bus calls
        (GetUnit, LoadUnit, LoadState, ActiveState, Result, ExecMainCode, ExecMainStatus), each
        given at most ``UNIT_READ_TIMEOUT_S`` (or the binding's ``timeout_s`` when shorter)."""
        return 8 * min(_binding(target).timeout_s, UNIT_READ_TIMEOUT_S)

    def unit_state_limit_s(self, target: Target) -> float:
        """The longest :meth:`unit_state` can take: connecting, then up to five D-Bus calls (GetUnit,
        LoadUnit, LoadState, ActiveState, SubState), each given at most ``UNIT_READ_TIMEOUT_S`` (or
        the binding's ``timeout_s`` when shorter)."""
        return 6 * min(_binding(target).timeout_s, UNIT_READ_TIMEOUT_S)

    def unit_lane(self, target: Target) -> str:
        """The manager :meth:`unit_state` asks, named for the engine's collection lanes and logs:
        the binding's D-Bus (systemd behind it)."""
        return f"systemd on the D-Bus {_binding(target).address()}"

    def unit_state(self, target: Target) -> dict[str, Any]:
        """The unit's ``ActiveState`` and ``SubState`` (``{"active_state": "failed", "sub_state":
        "failed"}``), read-only, for the unit-state source (``monitor.unitstate``, which says what
        counts as up). A few reads, each given at most ``UNIT_READ_TIMEOUT_S``; raises ActuatorError
        when the bus cannot be read or the unit does not exist."""
        b = _binding(target)
        bus = _Bus(b.model_copy(update={"timeout_s": min(b.timeout_s, UNIT_READ_TIMEOUT_S)}))
        try:
            path = bus.unit_path()
            return {"active_state": str(bus.prop(path, UNIT_IFACE, "ActiveState")),
                    "sub_state": str(bus.prop(path, UNIT_IFACE, "SubState"))}
        finally:
            bus.close()

    def unit_exit(self, target: Target) -> str | None:
        """How the unit ended when systemd has marked it ``failed`` (``ActiveState``), read from the
        service's ``Result`` and ``ExecMainCode``/``ExecMainStatus``: "unit app.service failed: its
        main process exited with code 3 (Result exit-code)". None when it is in any other state
        (running, starting, restarting, stopped on purpose). A few reads, each given at most
        ``UNIT_READ_TIMEOUT_S``; raises ActuatorError when the bus cannot be read."""
        b = _binding(target)
        bus = _Bus(b.model_copy(update={"timeout_s": min(b.timeout_s, UNIT_READ_TIMEOUT_S)}))
        try:
            path = bus.unit_path()
            if str(bus.prop(path, UNIT_IFACE, "ActiveState")) != "failed":
                return None
            if not b.unit.endswith(".service"):
                return f"unit {b.unit} failed"
            result = str(bus.prop(path, SERVICE_IFACE, "Result"))
            how, status = int(bus.prop(path, SERVICE_IFACE, "ExecMainCode")), int(
                bus.prop(path, SERVICE_IFACE, "ExecMainStatus"))
        finally:
            bus.close()
        if how == _EXITED:
            main = f": its main process {describe_exit(status)}"
        elif how in (_KILLED, _DUMPED):
            main = f": its main process {describe_exit(-status)}" + (" and dumped core" if how == _DUMPED else "")
        else:
            main = ""  # it never ran (a failed ExecStartPre=, a start timeout): Result says why
        return f"unit {b.unit} failed{main} (Result {result})"

    def snapshot(self, target: Target, params: BaseModel) -> dict[str, Any]:
        bus = _Bus(_binding(target))
        try:
            return bus.state(bus.unit_path())
        finally:
            bus.close()

    def applied(self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]) -> bool | None:
        p = _params(params)
        if p.op == "reload" or (p.op == "restart" and snapshot.get("active_enter_ts") is None):
            return None  # a reload leaves no trace; a restart needs the snapshot to compare
        bus = _Bus(_binding(target))
        try:
            state = bus.state(bus.unit_path())
        finally:
            bus.close()
        if p.op == "stop":
            return state["active_state"] in _STOPPED
        if state["active_state"] != "active":
            return False
        if p.op == "start":
            return True
        return bool(state["active_enter_ts"] > int(snapshot["active_enter_ts"]))

    def apply(self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]) -> dict[str, Any]:
        p, b = _params(params), _binding(target)
        if self.applied(target, p, key, snapshot):
            return {"op": p.op, "unit": b.unit, "noop": True, "reason": "already applied"}
        bus = _Bus(b)
        try:
            after = bus.run(p.op, p.mode, p.wait_s)
        finally:
            bus.close()
        return {"op": p.op, "old_main_pid": snapshot.get("main_pid"), **after}

    def undo(self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]) -> dict[str, Any]:
        p, b = _params(params), _binding(target)
        if p.op not in ("start", "stop"):
            return {"undo": "not applicable"}
        was_active = snapshot.get("active_state") in ("active", "reloading", "activating")
        reverse = "start" if p.op == "stop" else "stop"
        if was_active == (p.op == "start"):
            reason = f"unit was already {snapshot.get('active_state')} before"
            return {"undo": reverse, "noop": True, "reason": reason}
        bus = _Bus(b)
        try:
            state = bus.state(bus.unit_path())
            if state["active_state"] in (("active",) if reverse == "start" else _STOPPED):
                return {"undo": reverse, "noop": True, "reason": "already done", **state}
            return {"undo": reverse, **bus.run(reverse, p.mode, p.wait_s)}
        finally:
            bus.close()


def _params(params: BaseModel) -> SystemdParams:
    return params if isinstance(params, SystemdParams) else SystemdParams.model_validate(params)


def _binding(target: Target) -> SystemdBinding:
    b = target.binding
    if isinstance(b, SystemdBinding):
        return b
    if b is None:
        raise TerminalActuatorError(f"service {target.service!r} has no systemd binding")
    return SystemdBinding.model_validate(b.model_dump())
