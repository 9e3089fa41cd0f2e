"""Who may talk to the collector: the Host header on loopback, a bearer token when exposed.

* Bound to a loopback address (the default), anything on the machine may send spans and
  read traces, but a browser page from elsewhere must not: a DNS-rebinding page reaches
  127.0.0.1 under its own host name, so a request whose ``Host`` names anything but a
  loopback host (``127.0.0.1`` and the rest of 127/8, ``localhost``, ``[::1]``, any port)
  is answered 421 before it is read.
* Bound to any other address, :class:`Collector` refuses to start without a token
  (``--auth-token`` / ``AIECS_TRACING_TOKEN``) unless told ``insecure_no_auth``. With a
  token, every HTTP port wants ``Authorization: Bearer <token>``; the web UI takes it once
  as ``/?token=<token>``, which sets an HttpOnly, SameSite=Strict cookie and redirects to
  the same page without it. UDP has no way to carry a token: it is not authenticated.
"""

from __future__ import annotations

import hmac
import ipaddress
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

TOKEN_COOKIE = "aiecs_tracing_token"
TOKEN_ENV = "AIECS_TRACING_TOKEN"


class ExposureError(ValueError):
    """Binding to a non-loopback address without a token or an explicit insecure opt-in."""


def is_loopback_address(host: str) -> bool:
    """Whether binding to ``host`` keeps the collector on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_header_is_loopback(value: str | None) -> bool:
    """A Host header naming a loopback host, with or without a port (absent: HTTP/1.0, allowed)."""
    if value is None:
        return True
    host = value.strip().lower()
    if host.startswith("["):
        host = host[1 : host.find("]")] if "]" in host else ""
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    host = host.rstrip(".")
    return host == "localhost" or host.endswith(".localhost") or (host != "" and is_loopback_address(host))


def token_matches(offered: str | None, token: str) -> bool:
    return offered is not None and hmac.compare_digest(offered.encode("utf-8", "replace"), token.encode("utf-8"))


def bearer(headers: dict[str, str]) -> str | None:
    scheme, _, value = headers.get("authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def cookie(headers: dict[str, str], name: str = TOKEN_COOKIE) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return unquote(value)  # the UI's cookie holds the token percent-encoded
    return None


def query_token(target: str) -> str | None:
    for key, value in parse_qsl(urlsplit(target).query, keep_blank_values=True):
        if key == "token":
            return value
    return None


def without_token(target: str) -> str:
    """The request target with its ``token`` parameter removed (where the UI redirects to)."""
    url = urlsplit(target)
    query = urlencode([(k, v) for k, v in parse_qsl(url.query, keep_blank_values=True) if k != "token"])
    return (url.path or "/") + (f"?{query}" if query else "")


def refusal_reason(collector: Any, head: Any, *, browser: bool = False) -> tuple[int, str] | None:
    """(status, message) when a request may not be served, from its head alone; None when it may.

    ``browser`` (the query port) also accepts the token as the UI's cookie or ``?token=``.
    """
    if collector.loopback_only and not host_header_is_loopback(head.headers.get("host")):
        return 421, "this collector only answers requests addressed to a loopback host (DNS rebinding protection)"
    token = collector.auth_token
    if not token:
        return None
    if token_matches(bearer(head.headers), token):
        return None
    if browser and (token_matches(cookie(head.headers), token) or token_matches(query_token(head.target), token)):
        return None
    hint = "; in a browser open /?token=<token> once" if browser else ""
    return 401, f"authentication required: send 'Authorization: Bearer <token>'{hint}"
