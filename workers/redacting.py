"""Keeping secrets out of logs, errors and arguments: the one place URLs are redacted.

A Redis URL (``redis://user:password@host``) or a capture URL (``rtsp://admin:secret@camera``) carries
its credentials in the userinfo part, sometimes also in the query (``?password=…``). ``redact_url`` keeps
what an operator needs to recognise the URL (scheme, user, host, port, path) and replaces the secrets;
``redact_text`` does the same for every URL inside a longer text (an exception's message, a log line).
Pure string functions: no import of redis or ray, safe to call anywhere.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

MASK = "***"
# Query parameters whose values are secrets (redis-py accepts password= and username= in the query).
SECRET_QUERY_KEYS = frozenset({"password", "pass", "pwd", "secret", "token", "auth", "access_token", "key"})
# scheme://userinfo@ — the userinfo may hold anything but whitespace, '/' and '@' before the last '@'.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s/@]*@)")
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def has_secret(url: str | None) -> bool:
    """Whether ``url`` carries a password (in its userinfo or its query)."""
    return bool(url) and redact_url(url) != url


def redact_url(url: str) -> str:
    """``url`` with its password (and any secret query value) replaced by ``***``.

    ``redis://user:pw@host:6379/0`` → ``redis://user:***@host:6379/0``; ``redis://:pw@host`` →
    ``redis://:***@host``; ``rtsp://admin@cam`` (a user, no password) is kept as it is. Anything that does
    not parse as a URL is returned with a URL-looking userinfo masked all the same, never raising: this
    runs inside error paths."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an invalid IPv6 netloc: fall back to the pattern
        return _mask_userinfo(url)
    if not parts.scheme or not parts.netloc:
        return _mask_userinfo(url)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:{MASK}@{host}"
        elif parts.scheme.startswith("redis"):
            # redis://secret@host: redis-py reads a lone userinfo as... nothing, but people mean a password.
            netloc = f"{MASK}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key.lower() in SECRET_QUERY_KEYS for key, _ in pairs):
            query = urlencode(
                [(key, MASK if key.lower() in SECRET_QUERY_KEYS else value) for key, value in pairs],
                safe="/*",
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """``text`` with every URL in it passed through ``redact_url``."""
    if "://" not in text:
        return text
    return _URL.sub(lambda match: redact_url(match.group(0)), text)


def _mask_userinfo(text: str) -> str:
    def mask(match: re.Match[str]) -> str:
        userinfo = match.group("userinfo")[:-1]
        masked = f"{userinfo.split(':', 1)[0]}:{MASK}" if ":" in userinfo else MASK
        return f"{match.group('scheme')}{masked}@"

    return _USERINFO.sub(mask, text)
