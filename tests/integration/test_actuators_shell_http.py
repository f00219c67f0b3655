"""The shell actuator running real commands; the http actuator against a real local server."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from autonomic.errors import RetryableActuatorError, TerminalActuatorError
from autonomic.execute.http import HttpActuator, HttpBinding, HttpParams
from autonomic.execute.shell import ShellActuator, ShellBinding, ShellParams
from autonomic.protocols import Actuator, ActuatorContext, Target


class WallClock:
    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@pytest.fixture
def ctx(tmp_path: Path) -> ActuatorContext:
    return ActuatorContext(clock=WallClock(), state_dir=tmp_path)


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


# --- shell -----------------------------------------------------------------------------------


def shell_target(cwd: Path | None = None) -> Target:
    return Target(service="api", binding=ShellBinding(cwd=str(cwd) if cwd else None))


def test_shell_captures_stdout_and_runs_in_the_bound_cwd(ctx: ActuatorContext, tmp_path: Path) -> None:
    act = ShellActuator(ctx)
    assert isinstance(act, Actuator)
    p = ShellParams(argv=py("import os; print('hello', os.getcwd())"))
    detail = act.apply(shell_target(tmp_path), p, "k", act.snapshot(shell_target(), p))
    assert detail["exit_code"] == 0
    assert detail["stdout"] == f"hello {tmp_path}\n"
    assert detail["stdout_truncated"] is False
    assert act.applied(shell_target(), p, "k", {}) is None


def test_shell_truncates_output_to_4_kib(ctx: ActuatorContext) -> None:
    p = ShellParams(argv=py("import sys; print('x' * 10000); print('y' * 5000, file=sys.stderr)"))
    detail = ShellActuator(ctx).apply(shell_target(), p, "k", {})
    assert detail["stdout"] == "x" * 4096 and detail["stdout_truncated"] is True
    assert detail["stderr"] == "y" * 4096 and detail["stderr_truncated"] is True


def test_shell_nonzero_exit_is_terminal_with_code_and_stderr(ctx: ActuatorContext) -> None:
    p = ShellParams(argv=py("import sys; print('disk full', file=sys.stderr); sys.exit(3)"))
    with pytest.raises(TerminalActuatorError, match="code 3.*disk full"):
        ShellActuator(ctx).apply(shell_target(), p, "k", {})


def test_shell_timeout_is_retryable_and_kills_the_command(ctx: ActuatorContext) -> None:
    p = ShellParams(argv=py("import time; time.sleep(30)"), timeout_s=0.3)
    started = time.monotonic()
    with pytest.raises(RetryableActuatorError, match="timed out"):
        ShellActuator(ctx).apply(shell_target(), p, "k", {})
    assert time.monotonic() - started < 5


def _daemon(pidfile: Path, then: str) -> list[str]:
    """A command that starts a daemon in a session of its own (out of the command's process group)
    which inherits its stdout and sleeps 30 s writing its pid to ``pidfile``, and then runs ``then``."""
    child = f"import os, time; open({str(pidfile)!r}, 'w').write(str(os.getpid())); time.sleep(30)"
    return py(f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {child!r}], "
              f"start_new_session=True); {then}")


def _wait_pid(pidfile: Path) -> int:
    deadline = time.monotonic() + 5
    while not pidfile.exists() or not pidfile.read_text():
        assert time.monotonic() < deadline, "the daemon never started"
        time.sleep(0.02)
    return int(pidfile.read_text())


def test_shell_timeout_kills_a_descendant_in_its_own_session_and_does_not_wait_for_it(
        ctx: ActuatorContext, tmp_path: Path) -> None:
    """The command hangs after starting a daemon that left its process group and holds its
    stdout: the timeout comes on time (it waited for the daemon's end, or for ever) and the daemon
    is killed with the command."""
    import psutil

    pidfile = tmp_path / "daemon.pid"
    p = ShellParams(argv=_daemon(pidfile, "time.sleep(30)"), timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(RetryableActuatorError, match="timed out"):
        ShellActuator(ctx).apply(shell_target(), p, "k", {})
    assert time.monotonic() - started < 5
    pid = _wait_pid(pidfile)
    deadline = time.monotonic() + 5
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the daemon was left running"
        time.sleep(0.02)


def test_shell_a_command_that_exits_leaving_a_daemon_holding_its_stdout_succeeds_at_once(
        ctx: ActuatorContext, tmp_path: Path) -> None:
    """It exited 0 at once: that is its result, with its output. Waiting for the daemon to close
    the pipe made it a timeout, and a retryable one: the runbook ran again, starting a second daemon."""
    import os
    import signal

    pidfile = tmp_path / "daemon.pid"
    p = ShellParams(argv=_daemon(pidfile, "print('started')"), timeout_s=5.0)
    started = time.monotonic()
    try:
        detail = ShellActuator(ctx).apply(shell_target(), p, "k", {})
        assert detail["exit_code"] == 0 and detail["stdout"] == "started\n"
        assert time.monotonic() - started < 4
    finally:
        os.kill(_wait_pid(pidfile), signal.SIGKILL)


def test_shell_a_daemon_left_holding_the_output_keeps_no_thread_or_descriptor_of_the_engines(
        ctx: ActuatorContext, tmp_path: Path) -> None:
    """A runbook that starts a daemon (a restart in the background) succeeds at once, but the
    daemon holds the pipes: each run kept two reader threads blocked on them and their two
    descriptors, until the daemon ended. A runbook run often enough ran the engine out of file
    descriptors. Now the pipes are read on the caller's thread and closed when it is done."""
    import os
    import signal
    import threading

    import psutil

    me = psutil.Process()
    threads, fds = threading.active_count(), me.num_fds()
    daemons = []
    try:
        for i in range(3):
            pidfile = tmp_path / f"daemon{i}.pid"
            p = ShellParams(argv=_daemon(pidfile, "print('started')"), timeout_s=5.0)
            assert ShellActuator(ctx).apply(shell_target(), p, f"k{i}", {})["stdout"] == "started\n"
            daemons.append(_wait_pid(pidfile))
            assert psutil.Process(daemons[-1]).is_running()  # still holding what was our stdout pipe
        assert threading.active_count() == threads
        assert me.num_fds() == fds
    finally:
        for pid in daemons:
            os.kill(pid, signal.SIGKILL)


def test_shell_an_undo_an_engine_that_died_left_running_is_killed_before_it_is_run_again(
        ctx: ActuatorContext, tmp_path: Path) -> None:
    """The engine was SIGKILLed while an undo runbook ran (ROLLING_BACK): the runbook, in a session
    of its own, lives on. The engine started again runs the undo anew, as a rollback cut short is:
    the old run is killed first (its process group with it), never the two at once. Before, the
    second ran beside the first, both undoing the same change."""
    import os
    import signal
    import subprocess
    import uuid

    import psutil

    from autonomic.execute.shell import ACTION_KEY_ENV

    runs = tmp_path / "runs.log"
    undo = py(f"import os, sys, time\nlog = open({str(runs)!r}, 'a', buffering=1)\n"
              "log.write(f'start {os.getpid()}\\n')\ntime.sleep(float(sys.argv[1]))\n"
              "log.write(f'end {os.getpid()}\\n')")
    key = f"act-{uuid.uuid4().hex[:24]}"
    # the run the dead engine left: started as run_argv starts it, with the undo's key
    left = subprocess.Popen([*undo, "30"], env={"PATH": os.environ["PATH"], ACTION_KEY_ENV: f"{key}:undo"},
                            start_new_session=True)
    try:
        wait = time.monotonic() + 5
        while f"start {left.pid}" not in (runs.read_text() if runs.exists() else ""):
            assert time.monotonic() < wait, "the left run never started"
            time.sleep(0.02)
        p = ShellParams(argv=["true"], undo_argv=[*undo, "0.2"])
        detail = ShellActuator(ctx).undo(shell_target(), p, key, {})
        assert not psutil.pid_exists(left.pid) or psutil.Process(left.pid).status() == psutil.STATUS_ZOMBIE
        lines = runs.read_text().splitlines()
        assert lines[0] == f"start {left.pid}" and f"end {left.pid}" not in lines
        assert [line.split()[0] for line in lines[1:]] == ["start", "end"]  # the new run, alone
        assert detail["exit_code"] == 0 and detail["earlier_run_killed"] == [left.pid]
        assert "earlier_run_killed" not in ShellActuator(ctx).undo(shell_target(), p, key, {})
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(left.pid, signal.SIGKILL)
        left.wait()


def test_shell_missing_executable_is_terminal(ctx: ActuatorContext) -> None:
    p = ShellParams(argv=["autonomic-no-such-command", "x"])
    with pytest.raises(TerminalActuatorError, match="autonomic-no-such-command"):
        ShellActuator(ctx).apply(shell_target(), p, "k", {})


def test_shell_env_has_only_path_and_allowed_names(
    ctx: ActuatorContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTONOMIC_T_ALLOWED", "yes")
    monkeypatch.setenv("AUTONOMIC_T_SECRET", "hunter2")
    code = "import json, os; print(json.dumps(dict(os.environ)))"
    p = ShellParams(argv=py(code), env_allow=["AUTONOMIC_T_ALLOWED", "AUTONOMIC_T_UNSET"])
    env = json.loads(ShellActuator(ctx).apply(shell_target(), p, "k", {})["stdout"])
    assert env["AUTONOMIC_T_ALLOWED"] == "yes"
    assert "AUTONOMIC_T_SECRET" not in env and "AUTONOMIC_T_UNSET" not in env
    assert set(env) - {"LC_CTYPE"} == {"PATH", "AUTONOMIC_T_ALLOWED", "AUTONOMIC_ACTION_KEY"}  # python may add LC_CTYPE


def test_shell_a_runbook_gets_its_actions_key_the_same_at_every_attempt_so_a_rerun_can_be_a_noop(
    ctx: ActuatorContext, tmp_path: Path
) -> None:
    """A runbook that timed out is run again: with the action's key it can tell a second run of
    the same action (here: it records done keys in a file) from a new action."""
    done = tmp_path / "done"
    code = ("import os, pathlib, sys\nkey = os.environ['AUTONOMIC_ACTION_KEY']\n"
            f"f = pathlib.Path({str(done)!r})\nseen = f.read_text().split() if f.exists() else []\n"
            "print('noop' if key in seen else 'did it')\nf.write_text(' '.join([*seen, key]))\n")
    act, p = ShellActuator(ctx), ShellParams(argv=py(code), undo_argv=py(code))
    assert [act.apply(shell_target(), p, k, {})["stdout"] for k in ("a1", "a1", "a2")] == \
        ["did it\n", "noop\n", "did it\n"]
    assert act.undo(shell_target(), p, "a1", {})["stdout"] == "did it\n"  # the undo has a key of its own
    assert done.read_text().split() == ["a1", "a1", "a2", "a1:undo"]


def test_shell_undo_runs_undo_argv_or_is_not_applicable(ctx: ActuatorContext) -> None:
    act = ShellActuator(ctx)
    p = ShellParams(argv=py("pass"), undo_argv=py("print('undone')"))
    assert act.undo(shell_target(), p, "k", {})["stdout"] == "undone\n"
    assert act.undo(shell_target(), ShellParams(argv=py("pass")), "k", {}) == {"undo": "not applicable"}


def test_shell_describe_and_params_validation(ctx: ActuatorContext) -> None:
    text = ShellActuator(ctx).describe(shell_target(), ShellParams(argv=["echo", "a b"], timeout_s=5))
    assert text == "run echo 'a b' for api (timeout 5 s)"
    with pytest.raises(ValueError, match="argv"):
        ShellParams(argv=[])
    with pytest.raises(ValueError, match="timeout_s"):
        ShellParams(argv=["x"], timeout_s=4000)



def test_shell_runs_the_runbook_its_binding_names_in_the_bound_cwd(ctx: ActuatorContext, tmp_path: Path) -> None:
    binding = ShellBinding(cwd=str(tmp_path), runbooks={"disk-cleanup": py("import os; print('clean', os.getcwd())")})
    t, p = Target(service="api", binding=binding), ShellParams(runbook="disk-cleanup")
    assert ShellActuator(ctx).apply(t, p, "k", {})["stdout"].strip() == f"clean {tmp_path}"
    assert ShellActuator(ctx).describe(t, p).startswith("run runbook disk-cleanup: ")


def test_shell_a_runbook_the_binding_does_not_name_is_terminal_and_named(ctx: ActuatorContext) -> None:
    binding = ShellBinding(runbooks={"rotate-logs": ["true"]})
    t, p = Target(service="api", binding=binding), ShellParams(runbook="disk-cleanup")
    assert binding.lacks(p.model_dump()) == "its shell binding has no runbook 'disk-cleanup' (it has: rotate-logs)"
    assert binding.lacks(ShellParams(runbook="rotate-logs").model_dump()) is None
    with pytest.raises(TerminalActuatorError, match="no runbook 'disk-cleanup'"):
        ShellActuator(ctx).apply(t, p, "k", {})


def test_shell_a_command_whose_first_item_is_empty_is_refused_when_it_loads_naming_the_field() -> None:
    """``argv: [""]`` (a variable left out of a template, say) passed validation and failed only
    when run, as "cannot run ['']: Permission denied: ''". It is now refused when the pattern or
    the config loads, naming the field; an empty argument after the program is an argument."""
    from autonomic.config import load_config_data
    from autonomic.errors import ConfigError

    for bad, field in (({"argv": [""]}, "argv"), ({"argv": ["true"], "undo_argv": [" ", "x"]}, "undo_argv")):
        with pytest.raises(ValueError, match=f"{field}\n.*the first item must name the program to run"):
            ShellParams.model_validate(bad)
    with pytest.raises(ConfigError, match="runbooks.disk-cleanup: the first item must name the program to run"):
        load_config_data({"services": [{"name": "web", "actuators": {"shell": {
            "runbooks": {"disk-cleanup": ["", "--keep-days", "7"]}}}}]}, source="a.yaml", base_dir=Path("/tmp"))
    assert ShellParams(argv=["echo", ""]).argv == ["echo", ""]


def test_shell_params_need_argv_or_runbook_not_both(ctx: ActuatorContext) -> None:
    for bad in ({}, {"argv": ["x"], "runbook": "disk-cleanup"}):
        with pytest.raises(ValueError, match="either argv"):
            ShellParams.model_validate(bad)
    with pytest.raises(ValueError, match="runbook"):
        ShellParams(runbook="Disk Cleanup")  # a name, as the binding's keys are
    with pytest.raises(ValueError, match="runbooks"):
        ShellBinding.model_validate({"runbooks": {"disk-cleanup": []}})


# --- http ------------------------------------------------------------------------------------


class Recorder(BaseHTTPRequestHandler):
    requests: list[dict[str, Any]]

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        self.server.requests.append(  # type: ignore[attr-defined]
            {
                "method": self.command,
                "path": self.path,
                "body": json.loads(body) if body else None,
                "key": self.headers.get("Idempotency-Key"),
                "auth": self.headers.get("Authorization"),
            }
        )
        if self.path == "/slow":
            time.sleep(1.0)
        if self.path == "/trickle-headers":  # the status line, then a header a byte every 0.1 s (10 s)
            with contextlib.suppress(OSError):  # the client hung up
                self.wfile.write(b"HTTP/1.1 200 OK\r\n")
                for byte in b"X-Slow: " + b"a" * 92:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                    time.sleep(0.1)
            self.close_connection = True
            return
        if self.path in ("/trickle", "/huge"):  # 100 bytes, one every 0.1 s; or 200 MB at once
            size, piece, pause = (100, b"x", 0.1) if self.path == "/trickle" else (200 << 20, b"y" * (1 << 20), 0)
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            sent = self.server.sent = 0  # type: ignore[attr-defined]
            with contextlib.suppress(OSError):  # the client hung up
                while sent < size:
                    self.wfile.write(piece)
                    self.wfile.flush()
                    sent = self.server.sent = sent + len(piece)  # type: ignore[attr-defined]
                    time.sleep(pause)
            return
        if self.path.startswith("/echo/"):  # a server that quotes the credential it was sent
            status = int(self.path.rsplit("/", 1)[-1])
            echoed = f"rejected credential: {self.headers.get('Authorization')}".encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(echoed)))
            self.end_headers()
            self.wfile.write(echoed)
            return
        if self.path == "/moved":  # to a login page, whose URL carries a token
            self.send_response(302)
            self.send_header("Location", "https://login.example/sso?session=abcdefgh12345678")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        status = int(self.path.rsplit("/", 1)[-1]) if self.path.startswith("/status/") else 200
        payload = b"no such thing here" if status >= 400 else b'{"ok": true}'
        self.send_response(status)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    srv.requests = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def http_target(port: int) -> Target:
    binding = HttpBinding(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": "Bearer s3cret"})
    return Target(service="api", binding=binding)


def test_http_sends_method_path_body_and_idempotency_key(
    ctx: ActuatorContext, server: ThreadingHTTPServer
) -> None:
    act = HttpActuator(ctx)
    assert isinstance(act, Actuator)
    t = http_target(server.server_address[1])
    p = HttpParams.model_validate({"method": "put", "path": "/admin/drain", "json": {"drain": True}})
    detail = act.apply(t, p, "action-42", act.snapshot(t, p))
    assert server.requests == [  # type: ignore[attr-defined]
        {"method": "PUT", "path": "/admin/drain", "body": {"drain": True}, "key": "action-42",
         "auth": "Bearer s3cret"}
    ]
    assert detail["status"] == 200
    assert "s3cret" not in json.dumps(detail) and "s3cret" not in repr(t.binding)
    assert act.applied(t, p, "action-42", {}) is None


def test_http_undo_sends_the_undo_request_with_its_own_key(
    ctx: ActuatorContext, server: ThreadingHTTPServer
) -> None:
    act = HttpActuator(ctx)
    t = http_target(server.server_address[1])
    p = HttpParams.model_validate(
        {"path": "/admin/drain", "undo": {"method": "DELETE", "path": "/admin/drain", "json": {"x": 1}}}
    )
    act.undo(t, p, "action-43", {})
    assert server.requests[-1]["method"] == "DELETE"  # type: ignore[attr-defined]
    assert server.requests[-1]["key"] == "action-43:undo"  # type: ignore[attr-defined]
    assert server.requests[-1]["body"] == {"x": 1}  # type: ignore[attr-defined]
    assert act.undo(t, HttpParams(path="/x"), "action-43", {}) == {"undo": "not applicable"}


def test_http_unexpected_status_is_terminal_with_status_and_body(
    ctx: ActuatorContext, server: ThreadingHTTPServer
) -> None:
    t = http_target(server.server_address[1])
    with pytest.raises(TerminalActuatorError, match="status 404.*no such thing here") as info:
        HttpActuator(ctx).apply(t, HttpParams(path="/status/404"), "k", {})
    assert "s3cret" not in str(info.value)
    detail = HttpActuator(ctx).apply(t, HttpParams(path="/status/202", expect_status=[202]), "k", {})
    assert detail["status"] == 202


def test_http_a_redirect_is_not_followed_and_the_error_says_where_it_pointed(
    ctx: ActuatorContext, server: ThreadingHTTPServer
) -> None:
    """A redirect is not followed (the binding's credentials would go where it points): terminal,
    and the error now names where it pointed (its credentials hidden), the clue to what is wrong (a
    base_url on http for an https service, a login page). Before it said only "status 302"."""
    t = http_target(server.server_address[1])
    with pytest.raises(TerminalActuatorError) as info:
        HttpActuator(ctx).apply(t, HttpParams(path="/moved"), "k", {})
    assert str(info.value) == ("POST /moved on api: status 302 (redirect to https://login.example/sso?session=***, "
                               "not followed) (expected [200]): ")
    assert len(server.requests) == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_http_a_server_or_proxy_that_cannot_answer_now_is_retryable_as_a_refused_connection_is(
    ctx: ActuatorContext, server: ThreadingHTTPServer, status: int
) -> None:
    """429, 502, 503, 504: the service (or the proxy before it) cannot answer now, as when its
    connection is refused, which is retried. Before, these were terminal: a fix behind nginx failed
    at once where the same service reached directly was retried. A 500 (the service answered, and
    failed) stays terminal, and a status the pattern expects is a success."""
    t = http_target(server.server_address[1])
    with pytest.raises(RetryableActuatorError, match=f"status {status} .*no such thing here") as info:
        HttpActuator(ctx).apply(t, HttpParams(path=f"/status/{status}"), "k", {})
    assert "s3cret" not in str(info.value)
    with pytest.raises(TerminalActuatorError, match="status 500"):
        HttpActuator(ctx).apply(t, HttpParams(path="/status/500"), "k", {})
    assert HttpActuator(ctx).apply(t, HttpParams(path=f"/status/{status}", expect_status=[status]), "k", {})


@pytest.mark.parametrize("status", [200, 401])
def test_http_a_credential_the_server_echoes_back_is_hidden_in_results_and_errors(
    ctx: ActuatorContext, server: ThreadingHTTPServer, status: int
) -> None:
    token = "tok-0123456789abcdef"
    binding = HttpBinding(base_url=f"http://127.0.0.1:{server.server_address[1]}",
                          headers={"Authorization": f"Bearer {token}"})
    t = Target(service="api", binding=binding)
    p = HttpParams(path=f"/echo/{status}")
    if status == 200:
        shown = json.dumps(HttpActuator(ctx).apply(t, p, "k", {}))
    else:
        with pytest.raises(TerminalActuatorError) as info:
            HttpActuator(ctx).apply(t, p, "k", {})
        shown = str(info.value)
    assert "rejected credential: ***" in shown
    assert token not in shown


def test_http_headers_env_sends_a_credential_read_from_the_environment_at_each_call_and_hides_it(
    ctx: ActuatorContext, server: ThreadingHTTPServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A credential kept out of autonomic.yaml: read from its variable when the request is made
    (a rotated token is used at the next call), sent, never shown; an unset variable is a terminal
    error naming it; a header given both ways is refused when the config loads."""
    binding = HttpBinding(base_url=f"http://127.0.0.1:{server.server_address[1]}",
                          headers_env={"Authorization": "AUTONOMIC_TEST_ADMIN_AUTH"})
    t = Target(service="api", binding=binding)
    monkeypatch.setenv("AUTONOMIC_TEST_ADMIN_AUTH", "Bearer tok-0123456789abcdef")
    HttpActuator(ctx).apply(t, HttpParams(path="/admin/drain"), "k1", {})
    monkeypatch.setenv("AUTONOMIC_TEST_ADMIN_AUTH", "Bearer tok-rotated-99999999")
    with pytest.raises(TerminalActuatorError) as info:
        HttpActuator(ctx).apply(t, HttpParams(path="/echo/401"), "k2", {})
    assert [r["auth"] for r in server.requests] == ["Bearer tok-0123456789abcdef",  # type: ignore[attr-defined]
                                                    "Bearer tok-rotated-99999999"]
    assert "rejected credential: ***" in str(info.value) and "tok-rotated" not in str(info.value)
    monkeypatch.delenv("AUTONOMIC_TEST_ADMIN_AUTH")
    with pytest.raises(TerminalActuatorError, match=r"AUTONOMIC_TEST_ADMIN_AUTH \(headers_env.Authorization\)"):
        HttpActuator(ctx).apply(t, HttpParams(path="/admin/drain"), "k3", {})
    with pytest.raises(ValueError, match="headers and headers_env both set authorization"):
        HttpBinding(base_url="http://127.0.0.1:1", headers={"authorization": "x"},
                    headers_env={"Authorization": "V"})


def test_http_connection_refused_is_retryable(ctx: ActuatorContext) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(RetryableActuatorError):
        HttpActuator(ctx).apply(http_target(port), HttpParams(path="/x"), "k", {})


def test_http_timeout_is_retryable(ctx: ActuatorContext, server: ThreadingHTTPServer) -> None:
    t = http_target(server.server_address[1])
    with pytest.raises(RetryableActuatorError, match="timed out"):
        HttpActuator(ctx).apply(t, HttpParams(path="/slow", timeout_s=0.2), "k", {})


def test_http_a_body_sent_a_byte_at_a_time_does_not_hold_the_call_past_its_limit(
    ctx: ActuatorContext, server: ThreadingHTTPServer
) -> None:
    """httpx's ``timeout_s`` bounds each read, not the body: a server trickling its answer (a byte
    every 0.1 s, under a ``timeout_s`` of 0.5) held the call for the whole 10 s, past the
    ``call_limit_s`` the takeover grace and the watchdog count on. Now the body is read for 3 ×
    ``timeout_s`` at the latest and the call is judged by its status."""
    t = http_target(server.server_address[1])
    p = HttpParams(path="/trickle", timeout_s=0.5)
    started = time.monotonic()
    detail = HttpActuator(ctx).apply(t, p, "k", {})
    took = time.monotonic() - started
    assert took < HttpActuator(ctx).call_limit_s(t, p) == 2.0, took
    assert detail["status"] == 200 and 0 < len(detail["body"]) < 100


def test_http_headers_sent_a_byte_at_a_time_do_not_hold_the_call_past_its_limit(
    ctx: ActuatorContext, server: ThreadingHTTPServer
) -> None:
    """Before the body, the headers: httpx reads them whole before the body's deadline applies,
    each read under ``timeout_s``, so a server sending a header byte every 0.1 s held the call for
    the whole 10 s. The exchange now has one deadline, 3 x ``timeout_s``: a retryable timeout."""
    t = http_target(server.server_address[1])
    p = HttpParams(path="/trickle-headers", timeout_s=0.5)
    started = time.monotonic()
    with pytest.raises(RetryableActuatorError, match="timed out after 0.5 s"):
        HttpActuator(ctx).apply(t, p, "k", {})
    took = time.monotonic() - started
    assert took < HttpActuator(ctx).call_limit_s(t, p) == 2.0, took


def test_http_a_huge_body_is_not_read_whole(ctx: ActuatorContext, server: ThreadingHTTPServer) -> None:
    """Only the first 200 characters of an answer are kept, but all of it was read into memory
    (a 200 MB body: 200 MB held, twice over as text). Now 64 KiB of it at most are read, and the
    connection closed: the server could not send the rest."""
    t = http_target(server.server_address[1])
    detail = HttpActuator(ctx).apply(t, HttpParams(path="/huge"), "k", {})
    assert detail["status"] == 200 and detail["body"] == "y" * 200
    time.sleep(0.2)  # the server's write into a closed connection fails
    assert server.sent < 50 << 20, server.sent  # type: ignore[attr-defined]


def test_http_validation_names_the_field(ctx: ActuatorContext) -> None:
    with pytest.raises(ValueError, match="path"):
        HttpParams(path="admin")
    with pytest.raises(ValueError, match="method"):
        HttpParams.model_validate({"method": "TRACE", "path": "/x"})
    with pytest.raises(ValueError, match="base_url"):
        HttpBinding(base_url="ftp://example.com")
    text = HttpActuator(ctx).describe(http_target(1), HttpParams.model_validate({"path": "/a", "json": {}}))
    assert text == "POST /a with a JSON body on api, expecting [200]"


RUNBOOK_WORKFLOW = """
id: svc-down-runbooks
match: {cause: down, kind: state}
action:
  steps:
    - {name: drain, type: shell, params: {argv: [touch, drained]}}
    - {name: mark, type: shell, params: {argv: [touch, marked], undo_argv: [rm, marked]}}
    - {name: restart, type: shell, params: {argv: [sh, -c, "echo cannot restart >&2; exit 3"]}}
prior_confidence: 1.0
rollback_safe: true
verify: {metric: up, min: 1, window_s: 10, delay_s: 3, min_samples: 3}
"""


def test_a_runbook_workflow_that_fails_half_way_says_which_steps_it_undid_and_which_had_no_undo(
        tmp_path: Path) -> None:
    """A real engine runs three real runbooks: the third fails, so the second (which has an
    ``undo_argv``) is undone and the first (which has none) is left as it ran. The failure says
    so: "compensated steps: 2; not undone, having no undo: step 1/3 shell:drain". Before, it said
    "compensated steps: 2, 1", as though the drain had been undone too."""
    from autonomic.config import load_config_data
    from autonomic.engine import Engine
    from autonomic.knowledge import Store
    from autonomic.model import ActionState, Level, Sample
    from autonomic.oversight.notify import Dispatcher
    from autonomic.testing import FakeClock, FakeNotifier, ReplaySource

    (tmp_path / "patterns").mkdir()
    (tmp_path / "patterns" / "runbooks.yaml").write_text(RUNBOOK_WORKFLOW)
    work = tmp_path / "work"
    work.mkdir()
    config = load_config_data({
        "engine": {"interval_s": 1, "state_dir": str(tmp_path / "state"), "host_metrics": False, "settle_s": 0},
        "services": [{"name": "svc", "actuators": {"shell": {"cwd": str(work)}},
                      "thresholds": {"down_after": 2, "sustain": 2}}],
        "patterns": [str(tmp_path / "patterns")], "builtin_patterns": False,
        "policy": {"autonomy": "auto", "confidence_threshold": 0.5},
    }, source="test.yaml", base_dir=tmp_path)
    clock, notifier, source = FakeClock(time.time()), FakeNotifier(), ReplaySource([])
    store = Store("sqlite://")
    engine = Engine(config, clock=clock, store=store, sources=[source],
                    notifiers=Dispatcher([(notifier, Level.INFO)], synchronous=True, dedup_s=0))
    engine.start()
    try:
        for _ in range(6):
            source._samples.append(Sample("svc", "up", clock.now(), 0.0))
            engine.tick()
            clock.advance(1.0)
        (action,) = store.actions()
    finally:
        engine.shutdown()
    assert action.state == ActionState.FAILED
    assert action.error == ("step 3/3 shell:restart failed: ['sh', '-c', 'echo cannot restart >&2; exit 3'] exited "
                            "with code 3: cannot restart\n; compensated steps: 2; not undone, having no undo: "
                            "step 1/3 shell:drain")
    assert (work / "drained").exists() and not (work / "marked").exists()
    summary = next(s for s in action.steps if s.detail.get("workflow") == "summary")
    assert summary.detail["compensated"] == [2, 1] and summary.detail["no_undo"] == [1]
    assert any("not undone, having no undo: step 1/3 shell:drain" in n.body
               for n in notifier.sent if n.level == Level.ALERT)
