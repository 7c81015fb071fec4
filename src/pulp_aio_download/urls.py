"""URL helpers: redaction of credentials and scheme checks. Internal."""

from __future__ import annotations

from urllib.parse import SplitResult, unquote, urlsplit

__all__ = ["SUPPORTED_SCHEMES", "origin", "redact_url", "split_userinfo"]

SUPPORTED_SCHEMES = frozenset({"http", "https", "file"})


def redact_url(url: str) -> str:
    """Return ``url`` with any userinfo removed (``user:pass@`` → ``***@``)."""
    if "@" not in url:  # no userinfo possible: the common case, once per transfer
        return url
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable url>"
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return SplitResult(
        parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment
    ).geturl()


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """Split ``url`` into (url without userinfo, username, password).

    Userinfo is percent-encoded (RFC 3986 section 3.2.1): the username and password are
    returned decoded (``s3cr3t-P%40ss`` → ``s3cr3t-P@ss``), as UTF-8.
    """
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    clean = SplitResult(
        parts.scheme, parts.netloc.rpartition("@")[2], parts.path, parts.query, parts.fragment
    ).geturl()
    user, password = parts.username, parts.password
    return (
        clean,
        None if user is None else unquote(user),
        None if password is None else unquote(password),
    )


def origin(url: str) -> tuple[str, str, int | None]:
    """The (scheme, host, port) origin of ``url``, with default ports made explicit."""
    parts = urlsplit(url)
    port = parts.port
    if port is None:
        port = {"http": 80, "https": 443}.get(parts.scheme)
    return parts.scheme, (parts.hostname or "").lower(), port
