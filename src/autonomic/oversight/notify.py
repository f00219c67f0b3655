"""Telling people: console, JSON lines, Slack, a signed webhook and email, routed by level.

A notifier that fails or hangs never stops or slows the loop. :class:`Dispatcher` puts each
notification on one bounded queue per notifier and returns at once; one worker thread per
notifier delivers it, retrying with exponential backoff, and counts what was sent, what
failed and what was dropped because a queue was full. The same (level, title, body, incident)
within ``dedup_s`` is sent once.

Secrets never sit in YAML and are never logged: the webhook's HMAC secret, the SMTP
credentials and (optionally) the Slack URL are read from environment variables named in
the config, and failures name the receiving host only, never a URL (which may carry a token).
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import hmac
import json
import logging
import os
import queue
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urljoin, urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from autonomic.clock import duration
from autonomic.deadline import Client, within
from autonomic.errors import ConfigError, NotifierError, Problem
from autonomic.model import Level, Notification
from autonomic.oversight.server import is_loopback
from autonomic.printable import counted, printable
from autonomic.protocols import Notifier
from autonomic.redact import HIDDEN, scrub

log = logging.getLogger("autonomic.notify")

_SLACK_TEXT_MAX = 3000  # Slack's limit for one section block's (or context element's) text
_SLACK_MESSAGE_MAX = 40_000  # and for a message's plain ``text``
_ATOM = re.compile(r"[A-Za-z0-9_.-]{1,200}")  # a notification id that can be an email's Message-ID's left part


def _level_name(n: Notification) -> str:
    return n.level.value.upper()


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def _env(var: str, what: str) -> str:
    """The value of environment variable ``var``, which the field ``what`` names; ConfigError
    naming that field when it is unset or empty."""
    value = os.environ.get(var)
    if not value:
        raise ConfigError([Problem("", None, what, f"environment variable {var} is not set")])
    return value


# --- notifiers -------------------------------------------------------------------------------


class ConsoleNotifier:
    """Writes each notification as one log line on the ``autonomic.notify`` logger (an HTML
    report as its text)."""

    name = "console"

    def __init__(self, **_: Any) -> None:
        pass

    def send(self, notification: Notification) -> None:
        where = f" [{notification.service}]" if notification.service else ""
        ref = f" (incident {notification.incident_id[:8]})" if notification.incident_id else ""
        level = logging.WARNING if notification.level != Level.INFO else logging.INFO
        body = _readable(notification.body)
        log.log(level, "%s%s: %s%s%s", notification.level.value.upper(), where, notification.title,
                f" — {body}" if body else "", ref)


class JsonlNotifier:
    """Appends each notification as one JSON object per line to ``path``.

    The file is opened by its name for each line, so when an operator's logrotate moves or
    removes it, the next line starts a new file at ``path`` and nothing more goes into the moved
    one (logrotate needs neither ``copytruncate`` nor a signal). With ``max_bytes``, the notifier
    rotates it itself: a line that would take the file past ``max_bytes`` first moves it to
    ``path.1`` (``path.1`` to ``path.2``, and so on), keeping ``backups`` old files and removing
    the oldest, as Python's RotatingFileHandler names them. A line is never split: one longer
    than ``max_bytes`` is written whole into a file of its own. Rotation is this process's: two
    processes writing one file with ``max_bytes`` may each rotate it."""

    name = "jsonl"

    def __init__(self, path: str | Path, max_bytes: int | None = None, backups: int = 5, **_: Any) -> None:
        self.path = Path(path)
        self.max_bytes, self.backups = max_bytes, backups
        self._lock = threading.Lock()

    def send(self, notification: Notification) -> None:
        data = (json.dumps(notification.model_dump(mode="json"), sort_keys=True) + "\n").encode("utf-8")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.max_bytes is not None:
                self._rotate_before(len(data))
            with self.path.open("ab") as fh:
                fh.write(data)

    def _rotate_before(self, size: int) -> None:
        """Rotate the file when ``size`` more bytes would take it past ``max_bytes`` (an empty or
        missing file is never rotated)."""
        assert self.max_bytes is not None
        try:
            current = self.path.stat().st_size
        except FileNotFoundError:
            return
        if current == 0 or current + size <= self.max_bytes:
            return
        for n in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                os.replace(older, self.path.with_name(f"{self.path.name}.{n + 1}"))
        os.replace(self.path, self.path.with_name(f"{self.path.name}.1"))


def _post(url: str, content: bytes, headers: dict[str, str], timeout_s: float) -> None:
    """POST ``content``; NotifierError (naming the host only) unless the answer is 2xx. A 2xx
    answer's status is all that is read: its body is not (httpx's timeout bounds each read, not
    the body, so a receiver trickling one, or sending gigabytes, would hold the notifier). A
    refusal says the receiver's reason (its body's first line, see :func:`_reason`) and a
    redirect where it pointed (the host; not followed: the message would go elsewhere)."""
    host = _host(url)
    deadline = time.monotonic() + timeout_s
    retry_after: float | None = None
    try:
        with Client() as client, within(timeout_s), \
                client.stream("POST", url, content=content, headers=headers, timeout=timeout_s) as response:
            status = response.status_code
            if 200 <= status < 300:
                return
            if status in (429, 503):
                retry_after = _retry_after(response.headers.get("retry-after"))
            if response.is_redirect:
                location = response.headers.get("location")
                detail = f" (a redirect to {_host(urljoin(url, location))}, not followed)" if location else ""
            else:
                detail = _reason(_first_bytes(response, deadline), url)
    except httpx.TimeoutException:
        raise NotifierError(f"{host}: timed out after {timeout_s:g} s") from None
    except httpx.HTTPError as exc:
        raise NotifierError(f"{host}: {type(exc).__name__}") from None
    asked = f" (it asks to be tried again in {duration(retry_after)})" if retry_after is not None else ""
    raise NotifierError(f"{host}: HTTP {status}{detail}{asked}", retry_after_s=retry_after)


def _retry_after(value: str | None) -> float | None:
    """The seconds a ``Retry-After`` header asks a client to wait (a number of seconds, or an
    HTTP date), or None when it is absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


_REASON_BYTES = 300  # of a refusal's body, read for its reason (Slack's: "no_service", "invalid_blocks")


def _first_bytes(response: httpx.Response, deadline: float) -> bytes:
    """The first :data:`_REASON_BYTES` of ``response``'s body, read until ``deadline`` at the latest;
    what came before a failed read."""
    data = bytearray()
    with contextlib.suppress(httpx.HTTPError):
        for chunk in response.iter_bytes():
            data += chunk[: _REASON_BYTES - len(data)]
            if len(data) >= _REASON_BYTES or time.monotonic() >= deadline:
                break
    return bytes(data)


def _reason(body: bytes, url: str) -> str:
    """``": <the body's first line>"`` (of its text, for an HTML page; at most 120 characters,
    control characters escaped), or "" for an empty one. Whatever of ``url`` a receiver quotes
    back is hidden: its path (which holds a Slack webhook's token) as ``/***``, its path segments
    of 16 characters or more, and its credentials (:func:`autonomic.redact.scrub`)."""
    decoded = body.decode("utf-8", errors="replace").strip()
    if decoded.startswith("<"):  # a proxy's error page: its text ("502 Bad Gateway"), not "<html>"
        decoded = _html_text(decoded)
    lines = decoded.splitlines()
    text = lines[0].strip() if lines else ""
    path = urlsplit(url).path
    if len(path) > 1:
        for shown in sorted({path, unquote(path)}, key=len, reverse=True):
            text = text.replace(shown, "/***")
        for segment in path.split("/"):
            if len(segment) >= 16:
                text = text.replace(segment, HIDDEN).replace(unquote(segment), HIDDEN)
    text = printable(scrub(text, url))
    return f": {text[:119]}…" if len(text) > 120 else f": {text}" if text else ""


class SlackNotifier:
    """Posts to a Slack-compatible incoming webhook: ``{"text": ..., "blocks": [...]}``."""

    name = "slack"

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self._url = url
        self.timeout_s = timeout_s

    def __repr__(self) -> str:  # the URL is a credential
        return f"SlackNotifier(host={_host(self._url)!r})"

    @staticmethod
    def payload(n: Notification) -> dict[str, Any]:
        """The message: a plain ``text`` fallback and blocks with the body and its context. The
        notification's text (which may come from outside: an alert's annotations) has ``&``, ``<``
        and ``>`` escaped, so Slack shows a ``<!channel>`` or ``<url|label>`` in it as written
        rather than notifying everyone or drawing a link. A whole HTML page (an HTML report) is
        sent as its text: Slack would show the markup. Each text is cut to Slack's limits (a
        title from a long alert description, a service from an alert's label), which would
        otherwise have Slack refuse the message."""
        head = f"[{_level_name(n)}] {_slack_escape(n.title)}"
        context = [f"service: {_slack_cut(_slack_escape(n.service), 1000)}"] if n.service else []
        if n.incident_id:
            context.append(f"incident: {_slack_escape(n.incident_id[:8])}")
        context.append(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(n.ts)))
        blocks: list[dict[str, Any]] = [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{_slack_cut(head, _SLACK_TEXT_MAX - 2)}*"}}]
        text = _slack_escape(_readable(n.body))
        if text:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _slack_cut(text)}})
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]})
        return {"text": _slack_cut(head + (f": {text}" if text else ""), _SLACK_MESSAGE_MAX), "blocks": blocks}

    def send(self, notification: Notification) -> None:
        body = json.dumps(self.payload(notification)).encode()
        _post(self._url, body, {"Content-Type": "application/json"}, self.timeout_s)


def _slack_escape(text: str) -> str:
    """``text`` as Slack shows it literally: ``&``, ``<`` and ``>`` as entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack_cut(text: str, limit: int = _SLACK_TEXT_MAX) -> str:
    """Escaped ``text`` within ``limit`` characters (one block's), cut (never inside an entity)
    with an ellipsis. Slack refuses a whole message one of whose texts is too long."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&")
    if amp >= 0 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + "…"


SIGNATURE_HEADER = "X-Autonomic-Signature"
TIMESTAMP_HEADER = "X-Autonomic-Timestamp"


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Autonomic-Signature`` value: ``sha256=`` + HMAC-SHA256 hex over ``<timestamp>.<body>``."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


class WebhookNotifier:
    """POSTs the notification as JSON (its ``id`` the same on every delivery of it: a receiver
    drops one it has seen). With ``secret_env`` set, the secret is read from that
    environment variable and every request carries ``X-Autonomic-Signature`` over
    ``<timestamp>.<body>``; ``X-Autonomic-Timestamp`` (unix seconds) is always sent."""

    name = "webhook"

    def __init__(self, url: str, secret_env: str | None = None, timeout_s: float = 5.0) -> None:
        self._url = url
        self._secret = _env(secret_env, "secret_env") if secret_env else None
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"WebhookNotifier(host={_host(self._url)!r}, signed={self._secret is not None})"

    def send(self, notification: Notification) -> None:
        body = json.dumps(notification.model_dump(mode="json"), sort_keys=True).encode()
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)
        _post(self._url, body, headers, self.timeout_s)


class EmailNotifier:
    """Sends one email per notification over SMTP, subject ``[autonomic] <LEVEL> <title>`` on one
    line (line breaks in the title, say from an alert's multi-line summary, become spaces).
    Credentials, when needed, come from the environment variables named. With ``starttls`` the
    server's certificate is verified against the system's CAs (``SSL_CERT_FILE`` names another
    bundle, a private CA's) and its name against ``host``, before anything else is said: the
    login and the mail never go to a server that cannot prove it is ``host`` (smtplib's own
    default verifies nothing)."""

    name = "email"

    def __init__(
        self,
        host: str,
        port: int = 25,
        *,
        sender: str,
        to: Sequence[str],
        starttls: bool = False,
        username_env: str | None = None,
        password_env: str | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        if not to:
            raise ConfigError("to: at least one recipient is needed")
        self.host, self.port, self.sender, self.to = host, port, sender, list(to)
        self.starttls, self.timeout_s = starttls, timeout_s
        self._login = (
            (_env(username_env, "username_env"), _env(password_env, "password_env"))
            if username_env and password_env else None
        )

    def message(self, n: Notification) -> EmailMessage:
        """The mail. A body that is a whole HTML page (a report scheduled with ``format: html``)
        goes as a text/html part, after a plain-text part holding its text. Its ``Message-ID`` is
        ``<notification id@autonomic>``: the same on every delivery of one notification, so a
        mail client or list shows a resend as the one mail it is."""
        page = n.body if _is_page(n.body) else None
        if page is not None:
            n = n.model_copy(update={"body": _html_text(page)})
        msg = EmailMessage()
        msg["Subject"] = " ".join(f"[autonomic] {_level_name(n)} {n.title}".split())  # a header is one line
        msg["From"] = self.sender
        msg["To"] = ", ".join(self.to)
        if n.id and _ATOM.fullmatch(n.id):
            msg["Message-ID"] = f"<{n.id}@autonomic>"
        lines = [n.body] if n.body else []
        lines.append("")
        if n.service:
            lines.append(f"service: {n.service}")
        if n.incident_id:
            lines.append(f"incident: {n.incident_id}")
        lines.append("at: " + time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(n.ts)))
        msg.set_content("\n".join(lines).lstrip("\n") + "\n")
        if page is not None:
            msg.add_alternative(page, subtype="html")
        return msg

    def send(self, notification: Notification) -> None:
        where = f"{self.host}:{self.port}"
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout_s) as smtp:
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if self._login is not None:
                    smtp.login(*self._login)
                smtp.send_message(self.message(notification), from_addr=self.sender, to_addrs=self.to)
        except ssl.SSLCertVerificationError as exc:  # why, in OpenSSL's words ("self-signed certificate")
            raise NotifierError(f"{where}: {type(exc).__name__} ({exc.verify_message}): the server's "
                                "certificate is not trusted; nothing was sent") from None
        except (OSError, smtplib.SMTPException) as exc:
            code = getattr(exc, "smtp_code", None)
            raise NotifierError(f"{where}: {type(exc).__name__}" + (f" {code}" if code else "")) from None


class _Text(HTMLParser):
    """The text of an HTML page, one line per block, without its head, styles or charts."""

    _SKIP = frozenset({"head", "style", "script", "svg"})
    _BLOCK = frozenset({"h1", "h2", "h3", "p", "li", "tr", "table", "ul", "div", "center", "hr", "br"})

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")
        elif tag == "td":
            self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def _is_page(body: str) -> bool:
    """A body that is a whole HTML page (a report scheduled with ``format: html``)."""
    return body.lstrip()[:15].lower() == "<!doctype html>"


def _readable(body: str) -> str:
    """The body as a person reads it where markup is not drawn (a chat message, a log line): the
    text of a whole HTML page, anything else as it is."""
    return _html_text(body) if _is_page(body) else body


def _html_text(page: str) -> str:
    parser = _Text()
    parser.feed(page)
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


def builtin_notifiers() -> dict[str, type]:
    """The notifier types the registry knows by name (those buildable from ``path`` alone);
    :func:`build_dispatcher` builds every type from its spec."""
    return {"console": ConsoleNotifier, "jsonl": JsonlNotifier}


# --- config -----------------------------------------------------------------------------------


class _NotifierSpecBase(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = Field(default=None, min_length=1)  # shown in counters; default the type
    min_level: Level = Level.INFO
    levels: list[Level] | None = Field(default=None, min_length=1)  # exact levels; overrides min_level

    @model_validator(mode="after")
    def _one_routing(self) -> _NotifierSpecBase:
        if self.levels is not None and "min_level" in self.model_fields_set:
            raise ValueError("give either levels (exact levels) or min_level, not both")
        return self

    def accepts(self) -> frozenset[Level]:
        """The levels this notifier receives."""
        if self.levels is not None:
            return frozenset(self.levels)
        return frozenset(lv for lv in Level if lv.rank >= self.min_level.rank)


def _http_url(v: str) -> str:
    parts = urlsplit(v)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    return v


class ConsoleSpec(_NotifierSpecBase):
    """``type: console``: one log line per notification."""

    type: Literal["console"]


class JsonlSpec(_NotifierSpecBase):
    """``type: jsonl``: one JSON object per line appended to ``path`` (relative to the config);
    with ``max_bytes``, rotated at that size keeping ``backups`` old files (default 5)."""

    type: Literal["jsonl"]
    path: str = Field(min_length=1)
    max_bytes: int | None = Field(default=None, ge=1, strict=True)
    backups: int = Field(default=5, ge=1, le=1000, strict=True)

    @model_validator(mode="after")
    def _backups_with_max_bytes(self) -> JsonlSpec:
        if "backups" in self.model_fields_set and self.max_bytes is None:
            raise ValueError("backups: rotation is by size; give max_bytes too (the size, in bytes, a file "
                             "is rotated at)")
        return self


class SlackSpec(_NotifierSpecBase):
    """``type: slack``: an incoming-webhook URL, given as ``url_env`` (recommended: the URL holds
    a token) or ``url``."""

    type: Literal["slack"]
    url: str | None = None
    url_env: str | None = None
    timeout_s: float = Field(default=5.0, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str | None) -> str | None:
        return v if v is None else _http_url(v)

    @model_validator(mode="after")
    def _one_url(self) -> SlackSpec:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give exactly one of url and url_env")
        return self


class WebhookSpec(_NotifierSpecBase):
    """``type: webhook``: POST the notification JSON, HMAC-signed with the secret in ``secret_env``."""

    type: Literal["webhook"]
    url: str
    secret_env: str | None = None
    timeout_s: float = Field(default=5.0, gt=0, le=60)

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        return _http_url(v)


class EmailSpec(_NotifierSpecBase):
    """``type: email``: SMTP; credentials from ``username_env`` / ``password_env``, sent only over
    STARTTLS (``starttls: true``) or to a relay on loopback."""

    type: Literal["email"]
    host: str = Field(min_length=1)
    port: int = Field(default=25, ge=1, le=65535)
    sender: str = Field(min_length=3)
    to: list[str] = Field(min_length=1)
    starttls: bool = False
    username_env: str | None = None
    password_env: str | None = None
    timeout_s: float = Field(default=10.0, gt=0, le=120)

    @model_validator(mode="after")
    def _credentials_together(self) -> EmailSpec:
        if (self.username_env is None) != (self.password_env is None):
            raise ValueError("give both username_env and password_env, or neither")
        if self.password_env is not None and not self.starttls and not is_loopback(self.host):
            # smtplib logs in over whatever the connection is: without TLS, AUTH PLAIN or LOGIN is the
            # password in base64, readable by anyone on the path to the relay
            raise ValueError(f"starttls: a login to {self.host!r} without STARTTLS would send the SMTP password "
                             "(password_env) across the network in clear; set starttls: true (the server's "
                             "certificate is verified), or log in only to a relay on this machine (127.0.0.1)")
        return self


NotifierSpec = Annotated[
    ConsoleSpec | JsonlSpec | SlackSpec | WebhookSpec | EmailSpec, Field(discriminator="type")
]


def build_notifier(spec: ConsoleSpec | JsonlSpec | SlackSpec | WebhookSpec | EmailSpec, base_dir: Path) -> Notifier:
    """The notifier a spec describes. ConfigError when a named environment variable is unset."""
    if isinstance(spec, ConsoleSpec):
        return ConsoleNotifier()
    if isinstance(spec, JsonlSpec):
        path = Path(spec.path).expanduser()
        return JsonlNotifier(path if path.is_absolute() else base_dir / path, max_bytes=spec.max_bytes,
                             backups=spec.backups)
    if isinstance(spec, SlackSpec):
        url = spec.url if spec.url is not None else _http_url(_env(str(spec.url_env), "url_env"))
        return SlackNotifier(url, timeout_s=spec.timeout_s)
    if isinstance(spec, WebhookSpec):
        return WebhookNotifier(spec.url, secret_env=spec.secret_env, timeout_s=spec.timeout_s)
    return EmailNotifier(spec.host, spec.port, sender=spec.sender, to=spec.to, starttls=spec.starttls,
                         username_env=spec.username_env, password_env=spec.password_env, timeout_s=spec.timeout_s)


def build_dispatcher(
    specs: Iterable[ConsoleSpec | JsonlSpec | SlackSpec | WebhookSpec | EmailSpec],
    base_dir: Path,
    *,
    source: str = "",
    **options: Any,
) -> Dispatcher:
    """A running :class:`Dispatcher` over the notifiers ``specs`` describe (names made unique:
    a second ``slack`` becomes ``slack-2``). ``options`` go to the Dispatcher. A notifier that
    cannot be built (its ``*_env`` variable unset) is a ConfigError naming ``source`` (the config
    file) and ``notifiers[i].<field>``."""
    routes: list[Route] = []
    seen: set[str] = set()
    for i, spec in enumerate(specs):
        try:
            notifier = build_notifier(spec, base_dir)
        except ConfigError as err:
            raise ConfigError([Problem(source, None, f"notifiers[{i}]" + (f".{p.field}" if p.field else ""),
                                       p.message) for p in err.problems]) from None
        base = spec.name or spec.type
        name, i = base, 1
        while name in seen:
            i += 1
            name = f"{base}-{i}"
        seen.add(name)
        routes.append(Route(notifier, levels=spec.accepts(), name=name))
    return Dispatcher(routes, **options)


# --- dispatch ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """One notifier and the levels it receives (``levels``, else every level from ``min_level`` up)."""

    notifier: Notifier
    min_level: Level = Level.INFO
    levels: frozenset[Level] | None = None
    name: str | None = None  # default: the notifier's own name

    @property
    def label(self) -> str:
        return self.name or self.notifier.name

    def accepts(self, level: Level) -> bool:
        return level in self.levels if self.levels is not None else level.rank >= self.min_level.rank


_STOP = object()
RETRY_AFTER_MAX_S = 30.0  # a receiver's Retry-After waited out in place, at most; a longer one is left to later
OUTAGE_REMIND_S = 1800.0  # a notifier failing all along is said to be, at WARNING, at most this often


@dataclass
class _Outage:
    """A notifier failing since ``since`` (monotonic seconds): how many deliveries it failed, and
    when that was last logged at WARNING."""

    since: float
    failures: int
    told_at: float


class _Pending:
    """How many routes are still to go through one notification, and which of them gave up on it;
    calls ``done`` with those (see :meth:`Dispatcher.send`) when none are left. Starts at one: the
    sender's own hold, so a route that finishes before the next one is queued does not make it
    done early."""

    def __init__(self, done: Callable[[list[str]], None] | None) -> None:
        self._done = done
        self._left = 1
        self._failed: list[str] = []
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self._left += 1

    def finish(self, failed: str | None = None) -> None:
        with self._lock:
            self._left -= 1
            if failed is not None:
                self._failed.append(failed)
            last = self._left == 0
        if last and self._done is not None:
            try:
                self._done(sorted(self._failed))
            except Exception:
                log.exception("after a notification was sent: its done callback failed")


class Dispatcher:
    """Fans each notification out to every route that accepts its level, without blocking.

    ``send`` drops a duplicate (same level, title, body and incident within ``dedup_s`` of the
    notification's ``ts``: a second approval request on one incident, titled alike, differs in
    its body and is sent), then puts the notification on each matching route's bounded queue
    and returns. Each route's worker thread tries up to ``max_attempts`` times, waiting
    ``backoff_s``, then twice that, ... between attempts, or as long as the receiver asked
    (``NotifierError.retry_after_s``: Slack's 429 says when) when that is longer; a receiver that
    asks for more than :data:`RETRY_AFTER_MAX_S` is not tried again now (the caller's later retry,
    the engine's outbox, is the one to wait that long). A notification that finds its queue
    full is dropped and counted. Counters: ``sent`` (deliveries), ``failures`` (per route
    name, after the last attempt), ``dropped``, ``deduplicated``; ``stats()`` returns them.
    ``on_failure(name)`` is called once per failed delivery. ``synchronous=True`` delivers
    inside ``send`` (tests, the CLI).

    Logs stay quiet through an outage: a notifier's first failed delivery is a WARNING saying
    what failed and, with ``retry_note``, when what it did not take is tried again; its later
    failures are DEBUG (with a WARNING every :data:`OUTAGE_REMIND_S` that it still fails), and
    its next delivery is one INFO line, "delivered again after N failures over D". ``now`` is
    the clock those spans are measured on."""

    def __init__(
        self,
        routes: Iterable[Route | tuple[Notifier, Level]] = (),
        *,
        synchronous: bool = False,
        max_attempts: int = 3,
        backoff_s: float = 1.0,
        dedup_s: float = 300.0,
        queue_size: int = 1000,
        on_failure: Callable[[str], None] | None = None,
        retry_note: str | None = None,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.routes = [r if isinstance(r, Route) else Route(r[0], min_level=r[1]) for r in routes]
        self.retry_note = retry_note
        self._now = now
        self._outages: dict[str, _Outage] = {}
        self.synchronous = synchronous
        self.max_attempts = max(1, max_attempts)
        self.backoff_s = backoff_s
        self.dedup_s = dedup_s
        self.on_failure = on_failure
        self.sent = 0
        self.failures: dict[str, int] = {}
        self.dropped = 0
        self.deduplicated = 0
        self._lock = threading.Lock()
        self._recent: dict[tuple[str, str, str, str | None], float] = {}
        self._closed = False
        self._queues: list[queue.Queue[Any]] = []
        self._workers: list[threading.Thread] = []
        if not synchronous:
            for route in self.routes:
                q: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
                worker = threading.Thread(target=self._work, args=(route, q), name=f"notify-{route.label}",
                                          daemon=True)
                self._queues.append(q)
                self._workers.append(worker)
                worker.start()

    # --- the caller's side ------------------------------------------------------------------

    def accepts(self, level: Level) -> bool:
        """Whether any route receives notifications of ``level``."""
        return any(route.accepts(level) for route in self.routes)

    def send(self, notification: Notification, done: Callable[[list[str]], None] | None = None, *,
             only: Collection[str] | None = None, dedup: bool = True) -> None:
        """Queue ``notification`` for every route that accepts its level (of those named in
        ``only``, when given); returns at once. ``done`` is called (on a worker thread, or here)
        once every such route is through with it, with the names of those that gave up on it after
        their last attempt (empty: delivered everywhere); at once for a duplicate or when no route
        takes it. Not when a route dropped it (its queue full, or the dispatcher closing): then it
        was not tried, and the caller's record of it (the engine's outbox) keeps it. ``dedup=False``:
        a retry of one sent before, not a duplicate."""
        tracker = _Pending(done)
        if dedup and self._duplicate(notification):
            tracker.finish()
            return
        for i, route in enumerate(self.routes):
            if not route.accepts(notification.level) or (only is not None and route.label not in only):
                continue
            tracker.add()
            if self.synchronous:
                tracker.finish(None if self._deliver(route, notification) else route.label)
                continue
            if self._closed:
                self._count_drop(route)
                continue
            try:
                self._queues[i].put_nowait((notification, tracker))
            except queue.Full:
                self._count_drop(route)
        tracker.finish()  # the hold taken when it was made: done only once every route is through

    def _duplicate(self, n: Notification) -> bool:
        key = (n.level.value, n.title, n.body, n.incident_id)
        with self._lock:
            last = self._recent.get(key)
            if last is not None and abs(n.ts - last) < self.dedup_s:
                self.deduplicated += 1
                return True
            self._recent[key] = n.ts
            if len(self._recent) > 512:
                self._recent = {k: t for k, t in self._recent.items() if abs(n.ts - t) < self.dedup_s}
        return False

    def _count_drop(self, route: Route) -> None:
        with self._lock:
            self.dropped += 1
        log.warning("notifier %s: queue full or closed, notification dropped", route.label)

    def stats(self) -> dict[str, Any]:
        """The counters, plus how many notifications wait in each route's queue."""
        with self._lock:
            return {
                "sent": self.sent,
                "failures": dict(self.failures),
                "dropped": self.dropped,
                "deduplicated": self.deduplicated,
                "pending": {r.label: q.qsize() for r, q in zip(self.routes, self._queues, strict=False)},
            }

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued notification was delivered or failed; False on timeout."""
        deadline = time.monotonic() + timeout
        while any(q.unfinished_tasks for q in self._queues):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (within ``timeout`` overall), then stop the workers."""
        self._closed = True
        deadline = time.monotonic() + timeout
        for q in self._queues:
            with contextlib.suppress(queue.Full):
                q.put(_STOP, timeout=max(0.0, deadline - time.monotonic()))
        for worker in self._workers:
            worker.join(max(0.0, deadline - time.monotonic()))
        stuck = [w.name for w in self._workers if w.is_alive()]
        if stuck:
            log.warning("notifiers still busy after %.1f s: %s", timeout, ", ".join(stuck))

    # --- the workers' side ------------------------------------------------------------------

    def _work(self, route: Route, q: queue.Queue[Any]) -> None:
        while True:
            item = q.get()
            try:
                if item is _STOP:
                    return
                notification, tracker = item
                tracker.finish(None if self._deliver(route, notification) else route.label)
            finally:
                q.task_done()

    def _deliver(self, route: Route, notification: Notification) -> bool:
        """Try ``route`` up to ``max_attempts`` times; whether it delivered."""
        name = route.label
        for attempt in range(1, self.max_attempts + 1):
            try:
                route.notifier.send(notification)
            except Exception as exc:  # a broken notifier must never stop the loop
                asked = exc.retry_after_s if isinstance(exc, NotifierError) else None
                if attempt < self.max_attempts and (asked is None or asked <= RETRY_AFTER_MAX_S):
                    delay = max(self.backoff_s * 2 ** (attempt - 1), asked or 0.0)
                    with self._lock:
                        down = name in self._outages
                    log.log(logging.DEBUG if down else logging.WARNING,
                            "notifier %s: attempt %d of %d failed (%s); retrying in %.1f s",
                            name, attempt, self.max_attempts, exc, delay)
                    time.sleep(delay)
                    continue
                with self._lock:
                    self.failures[name] = self.failures.get(name, 0) + 1
                self._failed(name, exc, attempt)
                if self.on_failure is not None:
                    try:
                        self.on_failure(name)
                    except Exception:
                        log.exception("notifier %s: on_failure callback failed", name)
                return False
            with self._lock:
                self.sent += 1
                outage = self._outages.pop(name, None)
            if outage is not None:
                log.info("notifier %s: delivered again after %s over %s", name, counted(outage.failures, "failure"),
                         duration(self._now() - outage.since))
            return True
        return False

    def _failed(self, name: str, exc: Exception, tried: int) -> None:
        """Log a delivery ``name`` gave up on: at WARNING the first of an outage (and every
        :data:`OUTAGE_REMIND_S` while it lasts), at DEBUG the others."""
        now = self._now()
        with self._lock:
            outage = self._outages.get(name)
            if outage is None:
                outage = self._outages[name] = _Outage(since=now, failures=0, told_at=now)
            outage.failures += 1
            first, remind = outage.failures == 1, now - outage.told_at >= OUTAGE_REMIND_S
            if remind:
                outage.told_at = now
            failures, since = outage.failures, outage.since
        attempts = counted(tried, "attempt")
        if first:
            log.warning("notifier %s failed after %s: %s; %slater failures are logged at DEBUG until it delivers "
                        "again", name, attempts, exc, f"{self.retry_note}; " if self.retry_note else "")
        elif remind:
            log.warning("notifier %s still failing: %s over %s (the last after %s: %s)", name,
                        counted(failures, "failure"), duration(now - since), attempts, exc)
        else:
            log.debug("notifier %s failed after %s: %s (failure %d of this outage)", name, attempts, exc, failures)
