"""Redaction: the one place that decides what a span may not carry. Pure functions, never raise.

Two questions, asked everywhere a span can receive text (arguments, tags and nested tag
dicts, ``log_kv``, exception messages, stack traces, status descriptions, captured headers,
URLs and query strings):

* **Is this name a secret?** (:func:`is_secret_key`) Names are split into tokens on ``_ - .``,
  spaces and camelCase (``encryptionKey`` -> ``encryption key``); a secret word (config's
  ``secret_keys`` plus ``extra_secret_keys``) matches a run of whole tokens, optionally
  followed by a plural ``s`` (not for ``token``: ``max_tokens`` is a count), ``id`` or
  digits (``sessionid``, ``password2``). A word of five letters or more also matches the end
  of a longer token (``dbpassword``, ``accesstoken``, ``xapikey``); shorter ones (``pass``,
  ``auth``, ``pwd``, ``jwt``) only whole tokens, so ``db_pass`` is a secret and
  ``passenger``, ``bypass``, ``author`` and ``oauth`` are not; nor is ``tokenizer_name`` (a
  secret word followed by more letters is another word).
* **Does this text hold a secret?** (:func:`scrub_text`) Values are scrubbed for URLs with
  userinfo (``postgresql://app:[REDACTED]@db``), ``name=value`` pairs whose name is a secret
  (query strings with ``&`` or ``;``, form bodies, libpq DSNs ``password=S host=h``,
  ``Password=S;`` connection strings), ``name: value`` and quoted ``'name': 'value'`` pairs
  (header lines, dict reprs and JSON in error messages) and ``Bearer <token>``. A string
  with none of ``= @ :`` and no ``earer`` is returned as is after four ``in`` tests, and one
  with ``=``/``:`` is scanned for pairs only if it holds a secret name's last token
  (``pass``, ``token``, ``key``...): the hot path pays for scrubbing only when a secret could
  be there (bench/core.py rows unchanged; a 40-character URL costs 0.5 us more, 4 us when it
  does hold a ``key=`` pair).

Secret names are always redacted whole (``[REDACTED]``); values keep their shape around
the secret (the host of a DSN, the other query parameters). URL query values use
OpenTelemetry's spelling ``REDACTED`` (:func:`redact_query`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any, TypeGuard

from .config import DEFAULT_SECRET_KEYS

REDACTED = "[REDACTED]"
URL_REDACTED = "REDACTED"  # the OpenTelemetry semantic conventions' spelling for URLs

#: Header values never written to a span, whatever the capture allow-list says.
SENSITIVE_HEADERS = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "api-key",
        "apikey",
        "x-auth-token",
        "x-access-token",
        "x-csrf-token",
        "x-xsrf-token",
        "x-amz-security-token",
        "x-goog-api-key",
        "x-session-id",
    }
)
#: Query parameters whose values are replaced by ``REDACTED`` (besides secret-looking names).
SENSITIVE_QUERY_PARAMS = frozenset(
    {
        "sig",
        "signature",
        "x-amz-signature",
        "x-amz-credential",
        "x-amz-security-token",
        "awsaccesskeyid",
        "x-goog-signature",
        "x-goog-credential",
        "key",
        "code",
        "client_secret",
        "auth",
        "pwd",
        "pass",
    }
)

_CACHE_MAX = 4096
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_SEPARATORS = re.compile(r"[^a-z0-9]+")


def name_tokens(name: str) -> list[str]:
    """``X-Api-Key`` -> ``['x', 'api', 'key']``, ``encryptionKey`` -> ``['encryption', 'key']``."""
    return [t for t in _SEPARATORS.split(_CAMEL.sub("_", name).lower()) if t]


def _word_regex(words: tuple[str, ...]) -> re.Pattern[str]:
    """One pattern over ``_``-joined name tokens that matches any of ``words``."""
    alternatives = []
    for word in words:
        tokens = name_tokens(word)
        if not tokens:
            continue
        suffix = r"(?:id|\d+)?" if tokens == ["token"] else r"(?:s|id|\d+)?"
        compact = "".join(tokens)
        prefix = "[a-z0-9]*" if len(compact) >= 5 else ""
        alternatives.append(prefix + re.escape(compact) + suffix)
        if len(tokens) > 1:
            alternatives.append(re.escape("_".join(tokens)) + suffix)
    if not alternatives:
        return re.compile(r"(?!)")
    return re.compile(r"(?:^|_)(?:" + "|".join(sorted(set(alternatives))) + r")(?:_|$)")


def _hints(words: tuple[str, ...]) -> tuple[str, ...]:
    """Substrings one of which any secret name holds (each word's last token; the query list's).

    A text without any of them cannot hold a ``secret=value`` pair, so it is not scanned for
    one. (``in`` on the lowered text: a case-insensitive regex alternation is ten times slower.)
    """
    hints = {name_tokens(w)[-1] for w in (*words, *SENSITIVE_QUERY_PARAMS) if name_tokens(w)}
    return tuple(sorted(h for h in hints if not any(o != h and o in h for o in hints)))  # "pass" covers "passwd"


def _has_hint(text: str, hints: tuple[str, ...]) -> bool:
    lowered = text.lower()
    for hint in hints:
        if hint in lowered:
            return True
    return False


class _Words:
    __slots__ = ("words", "regex", "hint", "cache")

    def __init__(self, words: tuple[str, ...]) -> None:
        self.words = words
        self.regex = _word_regex(words)
        self.hint = _hints(words)
        self.cache: dict[str, bool] = {}


_by_id: dict[int, _Words] = {}
_last: _Words = _Words(DEFAULT_SECRET_KEYS)  # the hot path asks about one manager's words in a row


def _words_entry(words: tuple[str, ...]) -> _Words:
    global _last
    entry = _last
    if entry.words is words:
        return entry
    entry = _by_id.get(id(words))  # type: ignore[assignment]
    if entry is None or entry.words is not words:  # a new tuple (ids are reused after collection)
        if len(_by_id) >= 64:
            _by_id.clear()
        entry = _by_id[id(words)] = _Words(words)
    _last = entry
    return entry


def is_secret_key(key: Any, secret_keys: Iterable[str] = DEFAULT_SECRET_KEYS) -> bool:
    """Whether the name ``key`` names a secret (see the module docstring for the matching)."""
    try:
        entry = _last
        if entry.words is not secret_keys:
            entry = _words_entry(secret_keys if type(secret_keys) is tuple else tuple(secret_keys))
        cache = entry.cache
        hit = cache.get(key) if type(key) is str else None
        if hit is None:
            text = key if type(key) is str else str(key)
            hit = entry.regex.search("_".join(name_tokens(text[:200]))) is not None
            if type(key) is str:
                if len(cache) >= _CACHE_MAX:
                    cache.clear()
                cache[key] = hit
        return hit
    except Exception:
        return False


# --- process-wide words for the integrations ----------------------------------------------
# Headers and query strings are redacted where no manager is at hand (a middleware installed
# before its manager exists): they use the defaults plus every manager's secret_keys.
_INTEGRATION_EXTRA = ("signature", "credential")
_integration_words: tuple[str, ...] = (*DEFAULT_SECRET_KEYS, *_INTEGRATION_EXTRA)


def register_secret_keys(words: Iterable[str]) -> None:
    """Add a manager's secret names to those the integrations use for headers and queries."""
    global _integration_words
    new = tuple(w for w in words if w not in _integration_words)
    if new:
        _integration_words = (*_integration_words, *new)
        _param_cache.clear()


def integration_secret_keys() -> tuple[str, ...]:
    return _integration_words


def is_sensitive_header(name: str) -> bool:
    """Known credential headers, and any whose name looks secret (``private-token``)."""
    return name.lower() in SENSITIVE_HEADERS or is_secret_key(name, _integration_words)


_param_cache: dict[str, bool] = {}


def is_sensitive_param(name: str) -> bool:
    """Whether a query parameter's value must not reach a span (``token``, ``api_key``, ``sig``...)."""
    cached = _param_cache.get(name)
    if cached is None:
        from urllib.parse import unquote_plus

        lowered = unquote_plus(name).lower()
        cached = lowered in SENSITIVE_QUERY_PARAMS or is_secret_key(lowered, _integration_words)
        if len(_param_cache) >= _CACHE_MAX:
            _param_cache.clear()
        _param_cache[name] = cached
    return cached


_QUERY_SPLIT = re.compile(r"([&;])")


def redact_query(query: str) -> str:
    """``a=1&token=abc`` -> ``a=1&token=REDACTED`` (``;`` separates too); unchanged when clean."""
    if not query or "=" not in query:
        return query
    parts = _QUERY_SPLIT.split(query) if ";" in query else query.split("&")
    changed = False
    for index, part in enumerate(parts):
        key, sep, value = part.partition("=")
        if sep and value and is_sensitive_param(key):
            parts[index] = f"{key}={URL_REDACTED}"
            changed = True
    if not changed:
        return query
    return "".join(parts) if ";" in query else "&".join(parts)


# --- values -----------------------------------------------------------------------------------
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^/\s:@?#]*):([^/\s?#]*)@")
# a name, optionally quoted, then = or : (the value is found by hand: quoted, or up to a delimiter)
_PAIR = re.compile(r"""(?<![\w.\-])(["']?)([A-Za-z_][\w.\-]{0,80})\1[ \t]*([=:])[ \t]*""")
_BEARER = re.compile(r"\b([Bb]earer)\s+[A-Za-z0-9\-._~+/]+=*")
_AUTH_SCHEMES = ("bearer ", "basic ", "digest ", "token ", "negotiate ", "apikey ")
_DELIMITERS = frozenset(" \t\r\n&;,#\"'<>(){}[]")


def may_hold_secret(text: str) -> bool:
    """The hot path's precheck: False means :func:`scrub_text` would return ``text`` itself."""
    return "=" in text or "@" in text or ":" in text or "earer" in text


def scrub_text(text: str, secret_keys: tuple[str, ...] = DEFAULT_SECRET_KEYS) -> str:
    """``text`` with the secrets it holds replaced by ``[REDACTED]`` (see the module docstring)."""
    if not ("=" in text or "@" in text or ":" in text or "earer" in text):
        return text
    try:
        if "@" in text and "://" in text:
            text = _USERINFO.sub(r"\1:" + REDACTED + "@", text)
        if ("=" in text or ":" in text) and _has_hint(text, _words_entry(secret_keys).hint):
            text = _scrub_pairs(text, secret_keys)
        if "earer" in text:
            text = _BEARER.sub(r"\1 " + REDACTED, text)
        return text
    except Exception:
        return REDACTED


def _scrub_pairs(text: str, secret_keys: tuple[str, ...]) -> str:
    out: list[str] = []
    done = 0
    pos = 0
    length = len(text)
    while pos < length:
        match = _PAIR.search(text, pos)
        if match is None:
            break
        name = match.group(2)
        start = match.end()
        pos = start
        secret = is_secret_key(name, secret_keys) or (
            match.group(3) == "=" and match.start() > 0 and text[match.start() - 1] in "?&;"
            and name.lower() in SENSITIVE_QUERY_PARAMS
        )
        if not secret or start >= length:
            continue
        first = text[start]
        if first in "\"'":
            end = text.find(first, start + 1)
            start += 1
            if end == -1:
                end = length
        else:
            lowered = text[start : start + 10].lower()
            for scheme in _AUTH_SCHEMES:  # Authorization: Bearer <token>: the token is the secret
                if lowered.startswith(scheme):
                    start += len(scheme)
                    while start < length and text[start] == " ":
                        start += 1
                    break
            end = start
            while end < length and text[end] not in _DELIMITERS:
                end += 1
        if end > start and text[start:end] != REDACTED:
            out.append(text[done:start])
            out.append(REDACTED)
            done = end
        pos = max(end, pos)
    if not out:
        return text
    out.append(text[done:])
    return "".join(out)


def redact_text(text: str, secret_keys: tuple[str, ...] = DEFAULT_SECRET_KEYS, limit: int = 0) -> str:
    """:func:`scrub_text` of the part of ``text`` that a ``limit``-character attribute keeps.

    A megabyte argument is not scanned whole: the first ``limit`` characters plus a margin
    (so a secret cut by the truncation is still recognised) are.
    """
    if limit and len(text) > limit + 256:
        text = text[: limit + 256]
    return scrub_text(text, secret_keys)


def is_secret_pair(value: Any, secret_keys: tuple[str, ...]) -> TypeGuard[Sequence[Any]]:
    """A ``(name, value, ...)`` header tuple/list whose name is a secret."""
    return (
        type(value) in (tuple, list)
        and 2 <= len(value) <= 3
        and type(value[0]) is str
        and is_secret_key(value[0], secret_keys)
    )


_NAME_FIELDS = frozenset({"name", "key", "header", "Name", "Key", "Header"})


def secret_named_entry(value: Any, secret_keys: tuple[str, ...]) -> str | None:
    """For ``{"name": "Authorization", "value": S}`` (HAR headers, AWS tags): the name field."""
    if len(value) > 4:
        return None
    field: str  # a key equal to one of _NAME_FIELDS when returned
    for field in value:
        if field in _NAME_FIELDS:
            name = value[field]
            if type(name) is str and is_secret_key(name, secret_keys):
                return field
    return None
