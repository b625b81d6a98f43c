"""Secrets out of what is printed: database URLs with their password masked.

One helper for every place that shows a database URL or a message that may
hold one (start lines, error lines, HTTP error bodies): `mask_url` for a URL,
`scrub` for free text (a driver's message may quote the connection string).
The password becomes `***`, in the user-info part (`user:***@host`) and as a
`password=` parameter (`?password=...`, libpq's `password=...` key).
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://user:password@host ; the password runs to the last '@' before the path.
_USERINFO = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@?#]*:)(?P<secret>[^\s/?#]*)(?=@)")
# password=... as a query parameter or a libpq conninfo key (quoted or not)
_PARAMETER = re.compile(r"(?P<head>\bpassword\s*=(?!=)\s*)(?P<secret>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;,'\"]+)", re.I)


def scrub(text: str) -> str:
    """`text` with every URL password and `password=` value replaced by ***."""
    text = _USERINFO.sub(lambda m: m.group("head") + MASK, text)
    return _PARAMETER.sub(lambda m: m.group("head") + MASK, text)


def mask_url(url: str) -> str:
    """A database URL for display: its password (if any) masked, the rest as given."""
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except Exception:  # not a URL SQLAlchemy reads: mask what looks like a password
        return scrub(url)
    query = {key: (MASK if key.lower() == "password" else value) for key, value in parsed.query.items()}
    return scrub(parsed.set(query=query).render_as_string(hide_password=True))
