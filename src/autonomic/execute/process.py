"""The ``process`` actuator: restart, gracefully restart, start or stop a supervised service."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from autonomic.errors import RetryableActuatorError, TerminalActuatorError
from autonomic.execute.supervisor import ProcessBinding, Supervisor
from autonomic.protocols import ActuatorContext, Target

RESTART_STOP_TIMEOUT_S = 2.0
START_GRACE_S = 0.5


class ProcessParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    op: Literal["restart", "graceful_restart", "start", "stop"] = "restart"
    grace_s: float = Field(default=10.0, gt=0, le=600)  # graceful_restart: SIGTERM, wait, SIGKILL


class ProcessActuator:
    """Acts on a service's process through the engine's :class:`Supervisor`.

    - ``restart``: stop (SIGTERM, 2 s, SIGKILL) then start.
    - ``graceful_restart``: SIGTERM, wait up to ``grace_s``, SIGKILL, then start.
    - ``start`` / ``stop``.

    After starting, the new process must stay alive for a short grace (0.5 s), else
    RetryableActuatorError with its exit code and the last lines of its log.
    ``applied``: for restarts, a live process whose identity differs from the snapshot's;
    for ``start``, a live process; for ``stop``, no live process. ``apply`` does nothing when
    ``applied`` already holds. Restarts cannot be undone; ``stop`` undoes ``start`` and back, when
    the snapshot saw the service in the other state (else the apply changed nothing to undo).
    """

    type: ClassVar[str] = "process"
    Params = ProcessParams
    Binding = ProcessBinding

    def __init__(self, ctx: ActuatorContext) -> None:
        self.ctx = ctx

    def _supervisor(self, target: Target) -> Supervisor:
        sup = self.ctx.supervisor
        if sup is None:
            raise TerminalActuatorError("process actuator: the engine gave no supervisor")
        if target.service not in sup.services():
            if not isinstance(target.binding, ProcessBinding):
                raise TerminalActuatorError(f"service {target.service!r} has no process binding")
            sup.add(target.service, target.binding)
        return sup

    @staticmethod
    def _params(params: BaseModel) -> ProcessParams:
        return params if isinstance(params, ProcessParams) else ProcessParams.model_validate(params)

    def describe(self, target: Target, params: BaseModel) -> str:
        p = self._params(params)
        if p.op == "graceful_restart":
            return f"gracefully restart {target.service} (SIGTERM, up to {p.grace_s:g} s, then SIGKILL)"
        return f"{p.op} {target.service}"

    def call_limit_s(self, target: Target, params: BaseModel) -> float:
        """The longest one call can take: the stop's wait (a restart's RESTART_STOP_TIMEOUT_S, a
        graceful restart's ``grace_s``; a stop's, and a start's undo's, the binding's
        ``stop_timeout_s``), the group's SIGKILL and a start (a fork)."""
        p = self._params(params)
        stop_s = float(getattr(target.binding, "stop_timeout_s", 0.0)) if p.op in ("stop", "start") else 0.0
        return max(stop_s, p.grace_s, RESTART_STOP_TIMEOUT_S) + 10.0

    def snapshot(self, target: Target, params: BaseModel) -> dict[str, Any]:
        ident = self._supervisor(target).identity(target.service)
        return {"pid": ident[0] if ident else None, "create_time": ident[1] if ident else None}

    def applied(
        self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]
    ) -> bool | None:
        p = self._params(params)
        ident = self._supervisor(target).identity(target.service)
        if p.op == "stop":
            return ident is None
        if ident is None:
            return False
        if p.op == "start":
            return True
        before = (snapshot.get("pid"), snapshot.get("create_time"))
        return ident[0] != before[0] or ident[1] != before[1]

    def apply(
        self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]
    ) -> dict[str, Any]:
        p = self._params(params)
        sup = self._supervisor(target)
        service = target.service
        if self.applied(target, p, key, snapshot):
            return {"op": p.op, "noop": True, "reason": "already applied", "pid": sup.pid(service)}
        detail: dict[str, Any] = {"op": p.op, "old_pid": snapshot.get("pid")}
        if p.op == "stop":
            detail["exit_code"] = sup.stop(service)
            return detail
        if p.op == "restart":
            detail["exit_code"] = sup.stop(service, timeout_s=RESTART_STOP_TIMEOUT_S)
        elif p.op == "graceful_restart":
            detail["exit_code"] = sup.stop(service, timeout_s=p.grace_s)
        detail["pid"] = self._start(sup, service)
        return detail

    def undo(
        self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]
    ) -> dict[str, Any]:
        p = self._params(params)
        sup = self._supervisor(target)
        if p.op in ("start", "stop"):
            # back to what the snapshot saw: a service that was already running (start) or
            # already stopped (stop) is left as it is, the apply having changed nothing
            was_running = snapshot.get("pid") is not None
            if was_running == (p.op == "start"):
                return {"undo": "stop" if p.op == "start" else "start", "noop": True,
                        "reason": f"it was already {'running' if was_running else 'stopped'} before"}
        if p.op == "stop":
            return {"undo": "start", "pid": self._start(sup, target.service)}
        if p.op == "start":
            return {"undo": "stop", "exit_code": sup.stop(target.service)}
        return {"undo": "not applicable"}

    @staticmethod
    def _start(sup: Supervisor, service: str) -> int:
        """Start and require the process to survive the start grace."""
        pid = sup.start(service)
        deadline = time.monotonic() + START_GRACE_S
        while True:
            if sup.identity(service) is None:
                raise RetryableActuatorError(
                    f"service {service!r} died right after start (exit code {sup.exit_info(service)}); "
                    f"last log lines:\n{sup.log_tail(service)}"
                )
            if time.monotonic() >= deadline:
                return pid
            time.sleep(0.05)
