"""Secrets as they may be shown (not at all): in errors, logs, the audit log and explanations.

A URL in the config may carry a credential: a password (``https://user:pw@host``), a token as
the user part (``https://TOKEN@host``) or a query value (``?token=...``). :func:`shown_url`
keeps the scheme, host, port and path and replaces each of those by ``***``;
:func:`scrub` does the same to every place they occur in a message (an HTTP client's error
text may quote the URL).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl, unquote

from autonomic.printable import rewrite_record

HIDDEN = "***"
# a credential shorter than this is not searched for elsewhere in a message (it would garble
# "HTTP 401 after 1 s" for ?limit=1); the URL itself is always shown without it
MIN_SCRUB = 8


def _split(url: str) -> tuple[str, str | None, str]:
    """(before the user part, the user part or None, after it). The user part runs to the
    *last* "@" of the URL: a password may hold an unescaped "@", "/", "?" or "#", which URL
    parsers split on (and would then show part of it as the host or the path)."""
    scheme, sep, rest = url.partition("://")
    head, rest = (f"{scheme}://", rest) if sep else ("", url)
    userinfo, at, tail = rest.rpartition("@")
    return (head, userinfo, tail) if at else (head, None, rest)


def _query_values(tail: str) -> list[str]:
    """Every query value after the user part, as written and as decoded."""
    query = tail.partition("?")[2].partition("#")[0]
    raw = [part.partition("=")[2] for part in query.split("&") if part]
    return [*raw, *(v for _, v in parse_qsl(query, keep_blank_values=False))]


def credentials(url: str, *, password_only: bool = False) -> list[str]:
    """The credentials ``url`` carries, longest first: its password (or a user part without one,
    which may be a token), as written and percent-decoded, and its query values.
    ``password_only``: the password alone (a database URL, whose user is a role name and whose
    query holds options like ``sslmode``)."""
    head, userinfo, tail = _split(url)
    found: list[str] = []
    if userinfo:
        user, colon, password = userinfo.partition(":")
        if colon or not password_only:
            secret = password if colon else user
            found += [secret, unquote(secret)]  # as written and as a client decodes it
    if not password_only:
        found.extend(_query_values(tail))
    return sorted({s for s in found if s}, key=len, reverse=True)


def shown_url(url: str, *, keep_user: bool = False) -> str:
    """``url`` with its password (or a user part without one) and query values as ``***``.
    ``keep_user``: a user part without a password is shown (a database URL's role name, which
    an authentication error is about, rather than a token as in ``https://TOKEN@host``)."""
    head, userinfo, tail = _split(url)
    auth = ""
    if userinfo is not None:
        user, colon, _ = userinfo.partition(":")
        auth = f"{user}:{HIDDEN}@" if colon else f"{user if keep_user else HIDDEN}@"
    path, _, query = tail.partition("#")[0].partition("?")
    keys = [part.partition("=")[0] for part in query.split("&") if part]
    shown_query = "&".join(f"{k}={HIDDEN}" for k in keys)
    return f"{head}{auth}{path}" + (f"?{shown_query}" if shown_query else "")


def scrub(text: str, url: str) -> str:
    """``text`` with ``url`` shown as :func:`shown_url`, and every credential of it at least
    :data:`MIN_SCRUB` characters long as ``***`` wherever else it occurs."""
    text = text.replace(url, shown_url(url))
    for secret in credentials(url):
        if len(secret) >= MIN_SCRUB:
            text = text.replace(secret, HIDDEN)
    return text


# header names that carry credentials (an http binding's other headers, Content-Type say, are not secrets)
_CREDENTIAL_HEADER = re.compile(r"auth|token|key|secret|pass|cookie|session|credential|signature", re.IGNORECASE)


def is_credential_header(name: str) -> bool:
    """Whether an HTTP header named ``name`` carries a credential (Authorization, X-Api-Key,
    Cookie, X-Auth-Token, ...): its value is hidden wherever it could be shown."""
    return bool(_CREDENTIAL_HEADER.search(name))


class Secrets:
    """The secret values this process holds (what the config's ``*_env`` variables contain, a
    database password), hidden as ``***`` wherever they would be written: the last net under
    the specific rules above, for a secret that reaches a message by a path nobody foresaw (a
    server quoting a credential back, a service printing its environment into the log tail an
    error carries). Values shorter than :data:`MIN_SCRUB` are not searched for. An instance, not
    a module global: the engine makes one from its config and hands it to the store (the audit
    log), the notifications and, in ``autonomic run``, the log handlers (:meth:`log_filter`)."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._values = sorted({v for v in values if len(v) >= MIN_SCRUB}, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._values)

    def text(self, text: str) -> str:
        """``text`` with every secret value in it as ``***``."""
        for value in self._values:
            if value in text:
                text = text.replace(value, HIDDEN)
        return text

    def data(self, value: Any, keep: frozenset[str] = frozenset()) -> Any:
        """``value`` (JSON-like: dicts, lists, strings, numbers) with every secret in its strings
        (keys included) as ``***``; the same object when there is nothing to hide. The value of a
        key in ``keep``, at any depth, is left as it is (what an undo must put back)."""
        if not self._values:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(k) if isinstance(k, str) else k: v if k in keep else self.data(v, keep)
                    for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.data(v, keep) for v in value)
        return value

    def log_filter(self) -> logging.Filter:
        """A filter for log handlers: each record's message, formatted, with the secrets hidden
        (and any exception text, which is formatted when the record is)."""
        secrets = self

        class _Hide(logging.Filter):
            def filter(self, record: logging.LogRecord) -> bool:
                if secrets:
                    rewrite_record(record, secrets.text)
                return True

        return _Hide()
