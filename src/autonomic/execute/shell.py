"""The ``shell`` actuator: run one command (an argv list, never through a shell)."""

from __future__ import annotations

import contextlib
import os
import selectors
import shlex
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar

import psutil
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from autonomic.errors import RetryableActuatorError, TerminalActuatorError
from autonomic.protocols import ActuatorContext, Target
from autonomic.redact import HIDDEN, MIN_SCRUB

ACTION_KEY_ENV = "AUTONOMIC_ACTION_KEY"  # the action's idempotency key, in every run of its runbook
OUTPUT_LIMIT = 4096  # bytes kept of stdout and of stderr
_KEEP = OUTPUT_LIMIT + 65536  # read and kept before the cut (a hidden value across it is still found)
DRAIN_S = 1.0  # how long output is still read after the command ended
_POLL_S = 0.05  # how often a running command's exit is looked for between reads of its output
# a value passed through ``env_allow`` at least MIN_SCRUB long is masked in what the command printed


RUNBOOK_NAME = r"^[a-z0-9][a-z0-9_-]{0,62}$"


def _names_a_program(argv: list[str] | None) -> list[str] | None:
    """``argv`` whose first item names a program: an empty or blank one is refused when the
    pattern or config loads, not run at 3 a.m. as "Permission denied: ''"."""
    if argv is not None and not argv[0].strip():
        raise ValueError(f"the first item must name the program to run, got {argv[0]!r}")
    return argv


Argv = Annotated[list[str], Field(min_length=1), AfterValidator(_names_a_program)]


class ShellParams(BaseModel):
    """What to run: ``argv``, or ``runbook``, the name of a command the service's binding gives
    (so one pattern, a built-in one say, can run each service's own cleanup)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    argv: Argv | None = None
    runbook: str | None = Field(default=None, pattern=RUNBOOK_NAME)
    timeout_s: float = Field(default=30.0, gt=0, le=3600)
    undo_argv: Argv | None = None
    env_allow: list[str] = Field(default_factory=list)  # names passed through from os.environ

    @model_validator(mode="after")
    def _one_command(self) -> ShellParams:
        if (self.argv is None) == (self.runbook is None):
            raise ValueError("give either argv (the command) or runbook (a name the service's shell binding "
                             "maps to its command), not both")
        return self


class ShellBinding(BaseModel):
    """``services[].actuators.shell``: where commands run (``cwd``) and the service's named
    runbooks (``runbooks: {disk-cleanup: [/srv/app/bin/cleanup, --keep, "7"]}``), each an argv."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cwd: str | None = None
    runbooks: dict[Annotated[str, StringConstraints(pattern=RUNBOOK_NAME)], Argv] = Field(default_factory=dict)

    def missing(self) -> list[str]:
        """What this binding names that this host lacks (see ConfigBinding.missing)."""
        return [f"cwd: {self.cwd} is not a folder here"] if self.cwd and not Path(self.cwd).is_dir() else []

    def lacks(self, params: Mapping[str, Any]) -> str | None:
        """Why this binding cannot run ``params`` (a runbook it does not name), or None."""
        name = params.get("runbook")
        if name is None or name in self.runbooks:
            return None
        has = ", ".join(sorted(self.runbooks)) or "none"
        return f"its shell binding has no runbook {name!r} (it has: {has})"

    def argv(self, params: ShellParams) -> list[str]:
        """The command ``params`` runs here; TerminalActuatorError for a runbook not named."""
        if params.argv is not None:
            return params.argv
        lacking = self.lacks(params.model_dump())
        if lacking:
            raise TerminalActuatorError(lacking)
        assert params.runbook is not None
        return self.runbooks[params.runbook]


class ShellActuator:
    """Runs ``argv`` with ``shell=False``, in a new session, with an environment of only ``PATH``
    and the ``env_allow`` names. stdout/stderr are kept up to 4 KiB each, with the value of every
    ``env_allow`` variable (8 characters or more: a token, a password) shown as ``***``. A non-zero exit or a
    missing executable is terminal; a timeout (the whole process group and every descendant is killed) is
    retryable. A process the command leaves running (a daemon it started) does not hold up the
    result: output is read for up to ``DRAIN_S`` after the command exits, and the pipes are then
    closed on our side (no thread or descriptor is left waiting on the daemon).
    Whether it took effect cannot be told (``applied`` is None); undo runs ``undo_argv``. A runbook
    that timed out is run again (a retry, or recovery after a crash), so each run gets the action's
    idempotency key in ``AUTONOMIC_ACTION_KEY`` (``<key>:undo`` for the undo), the same at every
    attempt: a runbook can record it and make a second run of one action a no-op. A run of the
    same key still running (an engine killed mid-call left it, in its own session) is killed
    before the next one starts, as a run that timed out is: never two at once.
    """

    type: ClassVar[str] = "shell"
    Params = ShellParams
    Binding = ShellBinding

    def __init__(self, ctx: ActuatorContext) -> None:
        self.ctx = ctx

    @staticmethod
    def _params(params: BaseModel) -> ShellParams:
        return params if isinstance(params, ShellParams) else ShellParams.model_validate(params)

    @staticmethod
    def _cwd(target: Target) -> str | None:
        b = target.binding
        return b.cwd if isinstance(b, ShellBinding) else None

    @staticmethod
    def _argv(target: Target, p: ShellParams) -> list[str]:
        b = target.binding if isinstance(target.binding, ShellBinding) else ShellBinding()
        return b.argv(p)

    def describe(self, target: Target, params: BaseModel) -> str:
        p = self._params(params)
        where = f" in {self._cwd(target)}" if self._cwd(target) else ""
        try:
            command = shlex.join(self._argv(target, p))
        except TerminalActuatorError as exc:
            command = f"runbook {p.runbook} ({exc})"
        else:
            command = f"runbook {p.runbook}: {command}" if p.runbook else command
        return f"run {command}{where} for {target.service} (timeout {p.timeout_s:g} s)"

    def call_limit_s(self, target: Target, params: BaseModel) -> float:
        """The longest one call can take: the command's ``timeout_s``, then killing its tree and
        reading what is left of its output (``DRAIN_S``)."""
        return self._params(params).timeout_s + DRAIN_S + 5.0

    def snapshot(self, target: Target, params: BaseModel) -> dict[str, Any]:
        return {}

    def applied(
        self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]
    ) -> bool | None:
        return None

    def apply(
        self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]
    ) -> dict[str, Any]:
        p = self._params(params)
        return run_argv(self._argv(target, p), self._cwd(target), p.env_allow, p.timeout_s, key=key)

    def undo(
        self, target: Target, params: BaseModel, key: str, snapshot: Mapping[str, Any]
    ) -> dict[str, Any]:
        p = self._params(params)
        if not p.undo_argv:
            return {"undo": "not applicable"}
        return run_argv(p.undo_argv, self._cwd(target), p.env_allow, p.timeout_s, key=f"{key}:undo")


def _truncate(data: bytes | None, hidden: list[str]) -> tuple[str, bool]:
    data = data or b""
    for value in hidden:  # before cutting, so a value across the cut is not left half shown
        data = data.replace(value.encode(), HIDDEN.encode())
    return data[:OUTPUT_LIMIT].decode(errors="replace"), len(data) > OUTPUT_LIMIT


def _communicate(proc: subprocess.Popen[bytes], timeout_s: float) -> tuple[bytes, bytes, bool]:
    """The command's stdout and stderr (the first ``_KEEP`` bytes of each) and whether it timed out.

    Both pipes are read on this thread while the command runs, for up to ``timeout_s`` (then its
    tree is killed), and after it has exited for ``DRAIN_S`` at most: the command is judged by
    its own exit, and a process it left running (a daemon it started) may hold the pipes open for
    ever. The pipes are closed here whatever happens: such a daemon used to keep a reader thread
    and a descriptor of ours each, a runbook that starts one run often enough ran the engine out
    of file descriptors."""
    assert proc.stdout is not None and proc.stderr is not None
    bufs = {proc.stdout: bytearray(), proc.stderr: bytearray()}
    end = time.monotonic() + timeout_s
    drain_until: float | None = None
    timed_out = False
    with selectors.DefaultSelector() as sel:
        try:
            for pipe in bufs:
                sel.register(pipe, selectors.EVENT_READ)
            while sel.get_map():
                now = time.monotonic()
                if drain_until is None and proc.poll() is not None:
                    drain_until = now + DRAIN_S
                elif drain_until is None and now >= end:
                    timed_out = True
                    _kill_tree(proc)
                    drain_until = now + DRAIN_S
                if drain_until is not None and now >= drain_until:
                    break
                # its exit is looked for between reads: at most _POLL_S late
                wait = _POLL_S if drain_until is None else min(_POLL_S, drain_until - now)
                for key, _ in sel.select(max(0.0, wait)):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        continue
                    buf = bufs[key.fileobj]  # type: ignore[index]
                    if len(buf) < _KEEP:
                        buf += chunk[: _KEEP - len(buf)]
        finally:
            for pipe in bufs:
                pipe.close()
    if drain_until is None:  # both pipes ended before the command did
        try:
            proc.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_tree(proc)
    return bytes(bufs[proc.stdout]), bytes(bufs[proc.stderr]), timed_out


def _kill_tree(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the command's process group and every descendant still under it (one that
    started a session of its own is not in the group), then reap the command."""
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for child in descendants:
        with contextlib.suppress(psutil.Error):
            child.kill()
    proc.wait()


def _left_running(key: str) -> list[int]:
    """SIGKILL every process still running with ``AUTONOMIC_ACTION_KEY`` = ``key``, and its process
    group: a run of this very command (an undo, a workflow step's compensation) that an engine
    killed mid-call (SIGKILL, a crash) left running in its own session; the engine started again
    runs it anew. It would otherwise run beside it, both at once. Their pids, once gone (or after
    1 s: SIGKILLed, they run no more code; within the margin of :meth:`ShellActuator.call_limit_s`)."""
    found: list[psutil.Process] = []
    for proc in psutil.process_iter():
        try:
            if proc.pid != os.getpid() and proc.environ().get(ACTION_KEY_ENV) == key:
                found.append(proc)
        except psutil.Error:  # gone, a zombie, or not ours to read
            continue
    for proc in found:
        with contextlib.suppress(OSError):
            group = os.getpgid(proc.pid)
            if group != os.getpgrp():
                os.killpg(group, signal.SIGKILL)
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(found, timeout=1.0)
    return sorted(p.pid for p in found)


def run_argv(argv: list[str], cwd: str | None, env_allow: list[str], timeout_s: float, *,
             key: str | None = None) -> dict[str, Any]:
    """Run ``argv``; the journal detail on success, ActuatorError subclasses otherwise. ``key``,
    when given, is passed as ``AUTONOMIC_ACTION_KEY``, and a run of it an engine that died left
    running is killed first (``earlier_run_killed``: their pids)."""
    killed = _left_running(key) if key is not None else []
    env = {"PATH": os.environ.get("PATH", os.defpath)}
    env.update({name: os.environ[name] for name in env_allow if name in os.environ})
    if key is not None:
        env[ACTION_KEY_ENV] = key
    hidden = sorted({env[n] for n in env_allow if n in env and len(env[n]) >= MIN_SCRUB}, key=len, reverse=True)
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:  # missing executable, not executable, missing cwd
        raise TerminalActuatorError(f"cannot run {argv!r}: {exc}") from exc
    out, err, timed_out = _communicate(proc, timeout_s)
    if timed_out:
        raise RetryableActuatorError(f"{argv!r} timed out after {timeout_s:g} s")
    stdout, out_cut = _truncate(out, hidden)
    stderr, err_cut = _truncate(err, hidden)
    if proc.returncode != 0:
        raise TerminalActuatorError(f"{argv!r} exited with code {proc.returncode}: {stderr}")
    return {
        "argv": argv,
        "exit_code": proc.returncode,
        "stdout": stdout,
        "stderr": stderr,
        "stdout_truncated": out_cut,
        "stderr_truncated": err_cut,
        "duration_s": round(time.monotonic() - started, 3),
        **({"earlier_run_killed": killed} if killed else {}),
    }
