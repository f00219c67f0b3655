"""Real Prometheus, Alertmanager and demo-service processes for integration tests.

Each server gets its own directory (config, storage, log), listens on a free 127.0.0.1 port and
is ready (``/-/ready`` or ``/health`` answered 200) when a ``start_*`` helper returns. The pytest
fixtures ``prometheus_server``, ``alertmanager_server`` and ``demo_service`` are factories that
stop (terminate, wait, kill) everything they started at teardown; a test needing a server
for a whole module can call the ``start_*`` helpers itself and ``stop()`` them.

Use them from a test module with ``from servers import prometheus_server  # noqa: F401``
(``tests/integration`` is on ``sys.path`` under pytest's default import mode).
Tests are skipped, with the reason, only when a binary is missing (Debian packages
``prometheus`` and ``prometheus-alertmanager``; ``make sysdeps`` installs them).

``start_postgres`` starts a real PostgreSQL server (``initdb`` + ``postgres``, as the ``postgres``
user when we are root) for the store's tests; ``tests/conftest.py`` holds its fixtures
(``postgres_server``, ``postgres_url``, ``store_url``). Missing PostgreSQL binaries fail those
tests instead of skipping them: the store claims PostgreSQL, so it is always tested on it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml

T = TypeVar("T")

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
_ATTEMPTS = 3  # a free port may be taken between choosing it and the server binding it


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Callable[[], T | None], timeout: float = 10.0, what: str = "condition",
             interval: float = 0.1) -> T:
    """Poll ``check`` until it returns something truthy; fail the test after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def prometheus_binary() -> str:
    """Path of the prometheus binary; skips the test when it is not installed."""
    path = shutil.which("prometheus")
    if path is None:
        pytest.skip("prometheus binary not on PATH (Debian package 'prometheus'; run `make sysdeps`)")
    return path


def alertmanager_binary() -> str:
    """Path of the Alertmanager binary; skips the test when it is not installed."""
    path = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if path is None:
        pytest.skip("prometheus-alertmanager binary not on PATH (Debian package "
                    "'prometheus-alertmanager'; run `make sysdeps`)")
    return path


class _Process:
    """What every test server shares: its process and its log file."""

    proc: subprocess.Popen[bytes]
    log: Path

    def running(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _end(self, sig: int) -> None:
        """Send ``sig`` if it still runs, wait, kill it if it did not exit. Safe to call twice."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc.wait()


@dataclass
class Server(_Process):
    """A running server process and where to reach it."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str  # http://127.0.0.1:<port>
    host_port: str  # 127.0.0.1:<port>
    log: Path

    def stop(self) -> None:
        """Terminate, wait, then kill if it did not exit. Safe to call twice."""
        self._end(signal.SIGTERM)


def _start(name: str, workdir: Path, argv_for: Callable[[str], list[str]], ready_path: str) -> Server:
    """Start ``argv_for("127.0.0.1:<port>")`` and wait until ``ready_path`` answers 200."""
    workdir.mkdir(parents=True, exist_ok=True)
    for attempt in range(_ATTEMPTS):
        port = free_port()
        host_port = f"127.0.0.1:{port}"
        log = workdir / f"{name}-{attempt}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv_for(host_port), stdout=out, stderr=subprocess.STDOUT, cwd=workdir)
        server = Server(name, proc, f"http://{host_port}", host_port, log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and server.running():
            try:
                if httpx.get(server.url + ready_path, timeout=1.0).status_code == 200:
                    return server
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        server.stop()
        if "address already in use" not in server.log_tail().lower():
            pytest.fail(f"{name} did not become ready on {host_port} (exit {proc.returncode}):\n"
                        f"{server.log_tail()}")
    pytest.fail(f"{name}: no free port after {_ATTEMPTS} attempts")


def start_prometheus(
    workdir: Path,
    scrape_targets: Mapping[str, Sequence[str]] | Sequence[str],
    rule_files: Sequence[Path] = (),
    alertmanager_url: str | None = None,
    interval: str = "1s",
) -> Server:
    """A real Prometheus scraping ``scrape_targets`` (``host:port`` values, per job name; a plain
    list is job ``demo``) every ``interval``, evaluating ``rule_files`` as often, and sending
    alerts to ``alertmanager_url`` when given."""
    binary = prometheus_binary()
    jobs = dict(scrape_targets) if isinstance(scrape_targets, Mapping) else {"demo": list(scrape_targets)}
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "scrape_timeout": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(targets)}]} for job, targets in jobs.items()
        ],
        "rule_files": [str(p) for p in rule_files],
    }
    if alertmanager_url is not None:
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [_host_port(alertmanager_url)]}]}]}
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "prometheus.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    return _start(
        "prometheus",
        workdir,
        lambda hp: [binary, f"--config.file={config_file}", f"--web.listen-address={hp}",
                    f"--storage.tsdb.path={workdir / 'data'}"],
        "/-/ready",
    )


def start_alertmanager(workdir: Path, receiver_url: str, group_s: str = "1s") -> Server:
    """A real Alertmanager, clustering off, sending every group to the webhook ``receiver_url``
    (group_wait and group_interval ``group_s``, resolved alerts included)."""
    binary = alertmanager_binary()
    config = {
        "route": {
            "receiver": "test",
            "group_by": ["alertname", "service"],
            "group_wait": group_s,
            "group_interval": group_s,
            "repeat_interval": "1h",
        },
        "receivers": [{"name": "test", "webhook_configs": [{"url": receiver_url, "send_resolved": True}]}],
    }
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / "alertmanager.yml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    return _start(
        "alertmanager",
        workdir,
        lambda hp: [binary, f"--config.file={config_file}", f"--web.listen-address={hp}",
                    f"--storage.path={workdir / 'data'}", "--cluster.listen-address="],
        "/-/ready",
    )


def start_demo(workdir: Path, name: str = "x", pool_size: int = 50, fast_path: bool = False,
               traffic: float = 100, window: float = 2) -> Server:
    """The demo service (``python -m autonomic.demo.service``) with its config file in ``workdir``."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_file = workdir / f"{name}.yaml"
    config_file.write_text(yaml.safe_dump({"pool": {"size": pool_size}, "features": {"fast_path": fast_path}}))
    return _start(
        f"demo-{name}",
        workdir,
        lambda hp: [sys.executable, "-m", "autonomic.demo.service", "--name", name,
                    "--port", hp.rsplit(":", 1)[1], "--config", str(config_file),
                    "--traffic", str(traffic), "--window", str(window)],
        "/health",
    )


def _host_port(url: str) -> str:
    return url.split("://", 1)[-1].split("/", 1)[0]


# --- fixtures ------------------------------------------------------------------------------


@pytest.fixture
def prometheus_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Factory: ``prometheus_server(scrape_targets, rule_files=(), alertmanager_url=None)``."""
    started: list[Server] = []

    def start(scrape_targets: Mapping[str, Sequence[str]] | Sequence[str], rule_files: Sequence[Path] = (),
              alertmanager_url: str | None = None, interval: str = "1s") -> Server:
        server = start_prometheus(tmp_path / f"prometheus-{len(started)}", scrape_targets, rule_files,
                                  alertmanager_url, interval)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def alertmanager_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Factory: ``alertmanager_server(receiver_url)``."""
    started: list[Server] = []

    def start(receiver_url: str, group_s: str = "1s") -> Server:
        server = start_alertmanager(tmp_path / f"alertmanager-{len(started)}", receiver_url, group_s)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def demo_service(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Factory: ``demo_service(name="x", pool_size=50, ...)``."""
    started: list[Server] = []

    def start(name: str = "x", **kwargs: Any) -> Server:
        server = start_demo(tmp_path / f"demo-{name}-{len(started)}", name, **kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


# --- PostgreSQL ----------------------------------------------------------------------------

PG_SUPERUSER = "postgres"


def postgres_bindir(root: Path = Path("/usr/lib/postgresql")) -> Path:
    """The directory of the PostgreSQL server binaries (``initdb``, ``postgres``): Debian's
    newest ``<root>/<version>/bin``, else wherever ``initdb`` is on PATH. Fails the test (it does
    not skip, unlike Prometheus's) when there are none: the store's PostgreSQL tests must run
    wherever the suite runs (``make sysdeps`` installs the package ``postgresql``)."""
    found = sorted(root.glob("*/bin/initdb"), key=lambda p: _version_key(p.parent.parent.name))
    on_path = shutil.which("initdb")
    if found:
        return found[-1].parent
    if on_path is not None:
        return Path(on_path).parent
    pytest.fail(f"PostgreSQL server binaries not found (no {root}/*/bin/initdb, no initdb on PATH): "
                "install the Debian package 'postgresql' (`make sysdeps`)")


def _version_key(name: str) -> tuple[int, ...]:
    return tuple(int(p) for p in name.split(".") if p.isdigit())


@dataclass
class PostgresServer(_Process):
    """A running PostgreSQL server: trust auth for 127.0.0.1 only, no Unix socket, fsync off.
    ``url(database)`` is the SQLAlchemy URL (psycopg 3 driver) of one of its databases."""

    proc: subprocess.Popen[bytes]
    port: int
    workdir: Path
    log: Path

    def url(self, database: str = "postgres", password: str | None = None) -> str:
        auth = PG_SUPERUSER if password is None else f"{PG_SUPERUSER}:{password}"
        return f"postgresql+psycopg://{auth}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> Any:
        """A plain psycopg connection (autocommit) for setup and raw checks in tests."""
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user=PG_SUPERUSER, dbname=database,
                               autocommit=True, connect_timeout=2)

    def create_database(self, name: str) -> str:
        """Create an empty database ``name`` and return its SQLAlchemy URL."""
        with self.connect() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, closing whatever connections a test left open to it."""
        with self.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Fast shutdown (SIGINT: clients are disconnected), kill if it hangs, then remove the
        data directory. Safe to call twice."""
        self._end(signal.SIGINT)
        shutil.rmtree(self.workdir, ignore_errors=True)


def _as_postgres_user() -> dict[str, Any]:
    """Popen arguments that run the child as the ``postgres`` system user when we are root
    (``initdb`` and ``postgres`` refuse to run as root); nothing otherwise."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        pytest.fail("running as root, and there is no 'postgres' system user to run PostgreSQL as "
                    "(the Debian package 'postgresql' creates it: `make sysdeps`)")
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


def start_postgres() -> PostgresServer:
    """``initdb`` a fresh cluster in a new temporary directory (owned by the ``postgres`` user
    when we are root: pytest's own temporary directories are private to root), on /dev/shm when
    there is one, and start
    ``postgres`` on a free 127.0.0.1 port; ready when a connection succeeds. ``stop()`` removes it."""
    try:
        import psycopg
    except ImportError:
        pytest.fail("the PostgreSQL driver psycopg is not installed: pip install -e '.[postgres]' (or '.[dev]')")
    bindir = postgres_bindir()
    as_pg = _as_postgres_user()
    # in memory when the machine has a tmpfs: the cluster is thrown away at the end, and on a
    # disk each CREATE DATABASE (one per test) and migration takes about ten times as long
    shm = Path("/dev/shm")
    scratch = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    workdir = Path(tempfile.mkdtemp(prefix="autonomic-pg-", dir=scratch))
    if as_pg:
        os.chown(workdir, as_pg["user"], as_pg["group"])
    data = workdir / "data"
    env = {**os.environ, "LC_ALL": "C", "TZ": "UTC"}
    init = subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", PG_SUPERUSER, "--auth=trust", "--no-sync",
         "--encoding=UTF8", "--locale=C"],
        cwd=workdir, env=env, capture_output=True, text=True, **as_pg,
    )
    if init.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        pytest.fail(f"initdb failed (exit {init.returncode}):\n{init.stdout[-2000:]}{init.stderr[-2000:]}")
    # trust for TCP from 127.0.0.1 only: no Unix socket, no other address
    (data / "pg_hba.conf").write_text("host all all 127.0.0.1/32 trust\n")
    for attempt in range(_ATTEMPTS):
        port = free_port()
        log = workdir / f"postgres-{attempt}.log"
        with log.open("wb") as out:
            if as_pg:
                os.chown(log, as_pg["user"], as_pg["group"])
            proc = subprocess.Popen(
                [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-c", "listen_addresses=127.0.0.1",
                 "-c", "unix_socket_directories=", "-c", "fsync=off", "-c", "synchronous_commit=off",
                 "-c", "full_page_writes=off", "-c", "shared_buffers=32MB", "-c", "max_connections=200"],
                stdout=out, stderr=subprocess.STDOUT, cwd=workdir, env=env, **as_pg,
            )
        server = PostgresServer(proc, port, workdir, log)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline and server.running():
            try:
                server.connect().close()
                return server
            except psycopg.OperationalError:
                time.sleep(0.05)
        tail = server.log_tail()
        if server.running():
            server.proc.kill()
        server.proc.wait()
        if "address already in use" not in tail.lower():
            shutil.rmtree(workdir, ignore_errors=True)
            pytest.fail(f"postgres did not accept connections on 127.0.0.1:{port} (exit {proc.returncode}):\n{tail}")
    shutil.rmtree(workdir, ignore_errors=True)
    pytest.fail(f"postgres: no free port after {_ATTEMPTS} attempts")


_RESET = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends a reset, as a rejecting firewall


class PartitionProxy:
    """A TCP relay on a free 127.0.0.1 port to ``target`` (host, port) that can cut the network
    between its clients and the target, as a partition does. :meth:`hold` drops nothing but
    delivers nothing (packets lost: each side waits on an open connection, what is sent meanwhile
    arrives after :meth:`heal`, as TCP retransmits it); :meth:`refuse` resets every connection and
    refuses new ones (a route gone, a firewall rejecting). ``close()`` stops it."""

    def __init__(self, target: tuple[str, int]) -> None:
        import threading

        self.target = target
        self._flowing = threading.Event()
        self._flowing.set()
        self._refusing = False
        self._lock = threading.Lock()
        self._conns: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name="proxy-accept").start()

    def _accept(self) -> None:
        import threading

        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._refusing:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True, name="proxy-pipe").start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                self._flowing.wait()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def url(self, url: str) -> str:
        """``url`` (a SQLAlchemy URL to the target) through this proxy."""
        return url.replace(f":{self.target[1]}/", f":{self.port}/", 1)

    def hold(self) -> None:
        self._flowing.clear()

    def refuse(self) -> None:
        self._refusing = True
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
                # wakes the pipe thread blocked in recv on it: until that recv returns, close() does
                # not end the connection, and a client waiting on an answer (a query sent just
                # before) would hang, the proxy's kernel still answering its keepalives
                s.shutdown(socket.SHUT_RD)
            with contextlib.suppress(OSError):
                s.close()

    def heal(self) -> None:
        self._refusing = False
        self._flowing.set()

    def close(self) -> None:
        self._closed = True
        self.heal()
        self._listener.close()
        self.refuse()


class NotifySocket:
    """systemd's end of its notify protocol: a datagram socket bound at ``path``, or without one at
    a fresh name in the abstract namespace; ``variable`` is what ``NOTIFY_SOCKET`` says (``@name``
    for an abstract one), ``messages`` every message read, in order."""

    def __init__(self, path: Path | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if path is None:
            name = f"autonomic-test/{uuid.uuid4().hex}"
            self.sock.bind(b"\0" + name.encode())
            self.variable = f"@{name}"
        else:
            self.variable = str(path)
            self.sock.bind(self.variable)
        self.messages: list[str] = []

    def read(self, timeout: float) -> str | None:
        """The next message, or None when none came within ``timeout`` s."""
        self.sock.settimeout(timeout)
        try:
            text = self.sock.recv(65536).decode()
        except TimeoutError:
            return None
        self.messages.append(text)
        return text

    def wait(self, check: str, timeout: float = 60) -> str:
        """Read until a message contains ``check``; return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.read(max(0.01, deadline - time.monotonic()))
            if text is not None and check in text:
                return text
        pytest.fail(f"no message with {check!r} in {timeout:g} s; got {self.messages!r}")

    def close(self) -> None:
        self.sock.close()
