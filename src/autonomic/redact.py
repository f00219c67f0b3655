"""URLs as they may be shown: in errors, logs, the audit log and explanations.

A URL in the config may carry a credential: a password (``https://user:pw@host``), a token as
the user part (``https://TOKEN@host``) or a query value (``?token=...``). :func:`shown_url`
keeps the scheme, host, port and path and replaces each of those by ``***``;
:func:`scrub` does the same to every place they occur in a message (an HTTP client's error
text may quote the URL).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

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


def _secrets(url: str) -> list[str]:
    head, userinfo, tail = _split(url)
    found: list[str] = []
    if userinfo:
        user, colon, password = userinfo.partition(":")
        found.append(password if colon else user)
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
    for secret in _secrets(url):
        if len(secret) >= MIN_SCRUB:
            text = text.replace(secret, HIDDEN)
    return text
