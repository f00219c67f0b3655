"""A tiny client for the demo service's fault endpoint (see autonomic.demo.service).

Usage::

    inject("http://127.0.0.1:8081", "conn_leak", rate=2, limit=45)
    status("http://127.0.0.1:8081")["faults"]   # {"conn_leak": {"rate": 2, "limit": 45}}
    clear("http://127.0.0.1:8081")
"""

from __future__ import annotations

from typing import Any

import httpx


class FaultRequestError(RuntimeError):
    """The demo service refused a fault request; ``status`` and the server's message are kept."""

    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message
        super().__init__(f"HTTP {status}: {message}")


def inject(base_url: str, fault: str, timeout: float = 5.0, **params: float) -> dict[str, Any]:
    """Turn ``fault`` on with ``params``; return the service's answer (its fault status).

    ``crash`` answers 202 and the service exits with code 3 shortly after.
    Raises FaultRequestError when the service rejects the request (unknown fault, bad params).
    """
    return _post(base_url, {"fault": fault, **params}, timeout)


def clear(base_url: str, timeout: float = 5.0) -> dict[str, Any]:
    """Clear every fault and free what they hold (leaked memory and connections)."""
    return _post(base_url, {"fault": "none"}, timeout)


def status(base_url: str, timeout: float = 5.0) -> dict[str, Any]:
    """The active faults with their params, and the leaked connections / megabytes held."""
    response = httpx.get(_url(base_url), timeout=timeout)
    _check(response)
    result: dict[str, Any] = response.json()
    return result


def _url(base_url: str) -> str:
    return base_url.rstrip("/") + "/fault"


def _post(base_url: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    response = httpx.post(_url(base_url), json=body, timeout=timeout)
    _check(response)
    result: dict[str, Any] = response.json()
    return result


def _check(response: httpx.Response) -> None:
    if response.is_success:
        return
    try:
        message = str(response.json().get("error", response.text))
    except ValueError:
        message = response.text
    raise FaultRequestError(response.status_code, message.strip())
