"""Telling systemd how the engine is doing: its notify protocol (``sd_notify(3)``), no dependency.

A ``Type=notify`` unit gives the process ``$NOTIFY_SOCKET``: an AF_UNIX datagram socket, a path or,
starting with ``@``, an abstract name. Each message is one datagram of ``KEY=value`` lines. The
engine sends ``READY=1`` once it runs (see ``autonomic run``), a ``STATUS=`` line that
``systemctl status`` shows, ``STOPPING=1`` when it begins to stop, however it stops (a signal,
the leader's lease lost, the loop failing), with a ``STATUS=`` line saying why, and, with
``WatchdogSec=`` (``$WATCHDOG_USEC``, for the process ``$WATCHDOG_PID`` names, if any), ``WATCHDOG=1`` every half
of that, but only while the loop's :class:`~autonomic.liveness.Watchdog` says it makes progress:
once one step has lasted past ``stuck_after_s`` the beats stop and systemd restarts the engine
(``WatchdogSec=`` later), as the kubelet does when ``/healthz`` fails. A thread that beat on a timer
whatever the loop did would keep a hung engine alive for ever. Without ``$NOTIFY_SOCKET`` (not
under systemd) nothing is sent.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, MutableMapping

log = logging.getLogger("autonomic.sdnotify")

# the variables systemd hands the unit's main process; taken out of the environment once read, so
# the services and runbooks the engine starts do not inherit them (a child speaking the protocol
# would otherwise report to autonomic's unit: refused by NotifyAccess=main, one journal line each)
_VARIABLES = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")


class NotifyConfigError(ValueError):
    """A variable of the notify protocol that cannot be used (its name and value in the message)."""


class SystemdNotify:
    """One datagram socket to systemd's ``address`` (a path, or bytes starting with NUL for an
    abstract name); ``watchdog_s`` is ``WatchdogSec=`` when systemd expects this process's beats,
    else None. Safe to use from several threads (one ``sendto`` per message)."""

    def __init__(self, address: str | bytes, watchdog_s: float | None = None) -> None:
        self.address = address
        self.watchdog_s = watchdog_s
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # not inherited (PEP 446)
        self._sock.setblocking(False)  # a full queue costs one message, never a thread
        self._failed: str | None = None
        self._status: str | None = None
        self.ready_sent = False
        self.stopping_sent = False

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str], pid: int) -> SystemdNotify | None:
        """The notifier systemd asked for through ``environ`` (``os.environ``), or None when
        ``NOTIFY_SOCKET`` is unset or empty (not under systemd: nothing is ever sent). The three
        variables are removed from ``environ`` either way. Raises NotifyConfigError naming the
        variable when one cannot be used (a ``vsock:`` address, a ``WATCHDOG_USEC`` that is no
        positive number of microseconds)."""
        values = {name: environ.pop(name, "") for name in _VARIABLES}
        where = values["NOTIFY_SOCKET"]
        if not where:
            return None
        address: str | bytes
        if where.startswith("@"):
            address = b"\0" + where[1:].encode()
        elif where.startswith("/"):
            address = where
        else:
            raise NotifyConfigError(f"NOTIFY_SOCKET={where!r}: only an AF_UNIX socket (an absolute path, or an "
                                    "abstract name starting with '@') is supported")
        watchdog_s = None
        usec, for_pid = values["WATCHDOG_USEC"], values["WATCHDOG_PID"]
        if usec:
            try:
                watchdog_s = int(usec) / 1e6
            except ValueError:
                watchdog_s = 0.0
            if not watchdog_s > 0:
                raise NotifyConfigError(f"WATCHDOG_USEC={usec!r}: must be a positive whole number of microseconds")
            if for_pid:
                if not for_pid.isdigit():
                    raise NotifyConfigError(f"WATCHDOG_PID={for_pid!r}: must be a process id")
                if int(for_pid) != pid:  # meant for another process (this one was started by it)
                    watchdog_s = None
        return cls(address, watchdog_s)

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines as one message; False when it could not be sent (said once
        per reason as a warning: a beat lost now and then is harmless, none arriving is not)."""
        try:
            self._sock.sendto("\n".join(assignments).encode(), self.address)
        except OSError as exc:
            reason = f"{type(exc).__name__}: {exc.strerror or exc}"
            if reason != self._failed:
                log.warning("systemd notify socket %r: cannot send %s (%s)", _shown(self.address),
                            assignments[0].partition("=")[0], reason)
            self._failed = reason
            return False
        self._failed = None
        return True

    def status(self, text: str, *, ready: bool = False) -> None:
        """``STATUS=text`` (one line, when it changed) and, with ``ready``, ``READY=1`` (once)."""
        text = " ".join(text.split())[:300]
        lines = [] if text == self._status else [f"STATUS={text}"]
        if ready and not self.ready_sent:
            lines.insert(0, "READY=1")
        if lines and self.send(*lines):
            self._status = text
            self.ready_sent = self.ready_sent or ready

    def stopping(self, why: str) -> None:
        """``STOPPING=1`` and ``STATUS=why``: the engine begins to stop (systemd's stop timeout
        applies now); once: the first reason told stands (a SIGTERM, then the loop ending on it)."""
        if self.stopping_sent:
            return
        self.stopping_sent = self.send("STOPPING=1", f"STATUS={' '.join(why.split())[:300]}")

    def keep_watchdog(self, stuck: Callable[[], str | None], done: threading.Event) -> threading.Thread | None:
        """Start the thread that sends ``WATCHDOG=1`` every half of ``watchdog_s`` while
        ``stuck()`` says None (the loop makes progress), until ``done``; None when systemd
        expects no beats. When the loop is stuck it sends none, says so once in the log, and
        beats again if the loop comes back before systemd ends the process."""
        if self.watchdog_s is None:
            return None
        every = self.watchdog_s / 2
        thread = threading.Thread(target=self._beat, args=(stuck, done, every), name="autonomic-sd-watchdog",
                                  daemon=True)
        thread.start()
        return thread

    def _beat(self, stuck: Callable[[], str | None], done: threading.Event, every: float) -> None:
        said: str | None = None
        while True:
            why = stuck()
            if why is None:
                if said is not None:
                    log.warning("the engine loop makes progress again (it was %s); sending WATCHDOG=1 again",
                                said.partition(": ")[2])
                said = None
                self.send("WATCHDOG=1")
            elif said is None:
                log.error("%s; WATCHDOG=1 is no longer sent, so systemd ends and restarts the engine within "
                          "WatchdogSec (%g s)", why, self.watchdog_s)
                said = why
                self.status(f"STUCK: {why}")
            if done.wait(every):
                return

    def close(self) -> None:
        self._sock.close()


def _shown(address: str | bytes) -> str:
    return "@" + address[1:].decode(errors="replace") if isinstance(address, bytes) else address
