"""URLs as they may be shown: in errors, logs, the audit log and explanations.

A URL in the config may carry a credential: a password (``https://user:pw@host``), a token as
the user part (``https://TOKEN@host``) or a query value (``?token=...``). :func:`shown_url`
keeps the scheme, host, port and path and replaces each of those by ``***``;
:func:`scrub` does the same to every place they occur in a message (an HTTP client's error
text may quote the URL).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

HIDDEN = "***"


def _secrets(url: str) -> list[str]:
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    found: list[str] = []
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    if userinfo:
        user, colon, password = userinfo.partition(":")
        found.append(password if colon else user)
    found.extend(v for _, v in parse_qsl(parts.query, keep_blank_values=False))
    return sorted({s for s in found if s}, key=len, reverse=True)


def shown_url(url: str, *, keep_user: bool = False) -> str:
    """``url`` with its password (or a user part without one) and query values as ``***``.
    ``keep_user``: a user part without a password is shown (a database URL's role name, which
    an authentication error is about, rather than a token as in ``https://TOKEN@host``)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<a URL that cannot be parsed>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{HIDDEN}@{hostport}" if colon else f"{user if keep_user else HIDDEN}@{hostport}"
    query = "&".join(f"{k}={HIDDEN}" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
    out = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else f"{netloc}{parts.path}"
    return out + (f"?{query}" if query else "")


def scrub(text: str, url: str) -> str:
    """``text`` with ``url`` shown as :func:`shown_url` and every credential in it as ``***``."""
    text = text.replace(url, shown_url(url))
    for secret in _secrets(url):
        text = text.replace(secret, HIDDEN)
    return text
