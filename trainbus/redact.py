"""Credentials in URLs, hidden wherever a URL is shown or stored.

A remote URL may carry a secret: ``s3://KEY:SECRET@bucket/prefix``,
``https://TOKEN@host/repo``, a signed query (``?sig=...``). :func:`redact_url`
gives the URL to show (in a ``repr``, a state key, a message), with the user
information and the query values replaced by ``***``; :func:`secrets_in` lists
the secret parts, so that :func:`redact_text` can scrub them from text that
others wrote (an fsspec exception naming a path that holds the token).

Example:
    >>> redact_url("s3://AKIA:wJalr%2Fxyz@bucket/run?versionId=3")
    's3://***@bucket/run?versionId=***'
    >>> redact_url("file:///tmp/run")
    'file:///tmp/run'
    >>> url = "memory://alice:t0ken@bucket/run"
    >>> redact_text(f"no such file: /alice:t0ken@bucket/run/x", secrets_in(url))
    'no such file: /***@bucket/run/x'
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterable

MASK = "***"

_SHORTEST_QUERY_SECRET = 6
"""Shorter query values (``versionId=3``) are masked in the URL but not scrubbed from text."""
_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^/?#]*)@")


def _parts(url: str) -> list[str]:
    """The URLs of a chained fsspec URL (``simplecache::s3://...``), each on its own."""
    return url.split("::")


def redact_url(url: str) -> str:
    """``url`` with its user information and query values replaced by ``***``."""
    return "::".join(_redact_one(part) for part in _parts(url))


def _redact_one(url: str) -> str:
    url = _USERINFO.sub(lambda match: f"{match['scheme']}{MASK}@", url, count=1)
    base, question, query = url.partition("?")
    if not question:
        return url
    query, hash_mark, fragment = query.partition("#")
    fields = [
        f"{name}={MASK}" if equals else name
        for name, equals, _ in (item.partition("=") for item in query.split("&") if item)
    ]
    return f"{base}?{'&'.join(fields)}{hash_mark}{fragment}"


def secrets_in(url: str) -> tuple[str, ...]:
    """The secret parts of ``url`` (user information, its password, query values), as
    written and percent-decoded, longest first; empty for a URL without any."""
    found: set[str] = set()
    for part in _parts(url):
        match = _USERINFO.match(part)
        if match and match["userinfo"]:
            userinfo = match["userinfo"]
            found.add(userinfo)
            _, colon, password = userinfo.partition(":")
            if colon and password:
                found.add(password)
            elif not colon:  # a bare token as the user name (https://TOKEN@host)
                found.add(userinfo)
        _, question, query = part.partition("?")
        if question:
            for item in query.partition("#")[0].split("&"):
                value = item.partition("=")[2]
                if len(value) >= _SHORTEST_QUERY_SECRET:
                    found.add(value)
    decoded = {urllib.parse.unquote(secret) for secret in found}
    return tuple(sorted((found | decoded) - {""}, key=len, reverse=True))


def redact_text(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


__all__ = ["MASK", "redact_text", "redact_url", "secrets_in"]
