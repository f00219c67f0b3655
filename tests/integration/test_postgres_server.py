"""The PostgreSQL server the store's tests run against: missing binaries fail (never skip) with
what to install, and a stopped server leaves no process, port or directory behind."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from servers import postgres_bindir, start_postgres


def test_missing_postgresql_binaries_fail_the_test_saying_what_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no initdb on PATH either

    with pytest.raises(pytest.fail.Exception, match=r"install the Debian package 'postgresql' \(`make sysdeps`\)"):
        postgres_bindir(tmp_path / "postgresql")


def test_the_newest_installed_version_is_used(tmp_path: Path) -> None:
    for version in ("9.6", "15", "13"):
        (tmp_path / version / "bin").mkdir(parents=True)
        (tmp_path / version / "bin" / "initdb").touch()
    assert postgres_bindir(tmp_path) == tmp_path / "15" / "bin"


def test_a_stopped_server_leaves_no_process_port_or_directory() -> None:
    server = start_postgres()
    with server.connect() as conn:
        assert conn.execute("SELECT current_setting('listen_addresses')").fetchone() == ("127.0.0.1",)
    server.stop()

    assert server.proc.poll() is not None
    assert not server.workdir.exists()
    with socket.socket() as sock, pytest.raises(ConnectionRefusedError):
        sock.connect(("127.0.0.1", server.port))
    server.stop()  # twice is fine
