"""Database URLs carry passwords in two places; nothing tuner prints or ships may show either.

``postgresql+psycopg://user:SECRET@host/db`` keeps it in the user info, and
``postgresql+psycopg://user@host/db?password=SECRET`` in the query string (psycopg passes query
keys on as libpq connection options, so both work). Parsing is SQLAlchemy's ``make_url``, the
same parser that opens the database: what it sees as a password is what is hidden.
"""

from __future__ import annotations

from typing import Iterable
from urllib.parse import quote, quote_plus

from sqlalchemy.engine import URL, make_url

__all__ = ["redact_url", "url_secrets", "has_password", "scrub", "SECRET_QUERY_KEYS"]

MASK = "***"
UNPARSABLE = "<unparsable storage URL>"
SECRET_QUERY_KEYS = ("password", "sslpassword", "passwd", "pwd", "secret", "token")
"""Query keys whose value is a secret: libpq's ``password`` and ``sslpassword``, and the names
other drivers use. A key matches when it contains one of these (``access_token``)."""


def _is_secret_key(key: str) -> bool:
    low = key.lower()
    return any(word in low for word in SECRET_QUERY_KEYS)


def _parse(url: str) -> URL | None:
    try:
        return make_url(url)
    except Exception:  # noqa: BLE001 - any parse failure: not a URL we can show parts of
        return None


def url_secrets(url: str) -> list[str]:
    """Every secret ``url`` carries: the user-info password and secret query values."""
    parsed = _parse(url)
    if parsed is None:
        return []
    found = [parsed.password] if parsed.password else []
    for key, value in parsed.query.items():
        if _is_secret_key(key):
            found += [v for v in ((value,) if isinstance(value, str) else value) if v]
    return [str(s) for s in found]


def has_password(url: str) -> bool:
    """True when ``url`` holds a secret in its user info or its query string."""
    return bool(url_secrets(url))


def redact_url(url: str) -> str:
    """``url`` with every secret replaced by ``***``; an unparsable URL is not shown at all."""
    parsed = _parse(url)
    if parsed is None:
        return UNPARSABLE
    query = {k: (MASK if _is_secret_key(k) else v) for k, v in parsed.query.items()}
    if query != dict(parsed.query):
        parsed = parsed.set(query=query)
    # render_as_string percent-encodes query values; show the mask as the user-info one looks
    return parsed.render_as_string(hide_password=True).replace("=%2A%2A%2A", "=" + MASK)


def scrub(text: str, urls: Iterable[str | None]) -> str:
    """``text`` with every secret of ``urls`` replaced by ``***``, wherever it appears (a driver's
    error message may quote a connection option)."""
    for url in urls:
        if not url:
            continue
        for secret in sorted(url_secrets(url), key=len, reverse=True):
            for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
                text = text.replace(form, MASK)
    return text
