"""TLS: one :class:`ssl.SSLContext` per remote, and readable reasons for TLS failures. Internal.

:func:`build_ssl_context` turns a :class:`~pulp_aio_download.config.TLSConfig` into a
context once, when the remote's session is created (building a context reads the system CA
store, which is too slow to do per request). :func:`classify_ssl_error` names what went
wrong in a failed handshake so :class:`~pulp_aio_download.errors.TLSError` messages can say
"unknown CA" rather than an OpenSSL error code; :func:`tls_error` builds that error.
"""

from __future__ import annotations

import logging
import os
import ssl
import tempfile
from pathlib import Path

from ..config import TLSConfig
from ..errors import ConfigError, TLSError

__all__ = ["build_ssl_context", "classify_ssl_error", "find_ssl_error", "tls_error"]

log = logging.getLogger(__name__)

# X509_V_ERR_* codes of OpenSSL's certificate verification (x509_vfy.h).
_VERIFY_REASONS: dict[int, str] = {
    2: "unknown CA",  # unable to get issuer certificate
    9: "certificate not yet valid",
    10: "certificate expired",
    18: "self-signed certificate",
    19: "unknown CA",  # self-signed certificate in chain
    20: "unknown CA",  # unable to get local issuer certificate
    21: "unknown CA",  # unable to verify the first certificate
    23: "certificate revoked",
    26: "certificate not valid for this purpose",
    62: "hostname mismatch",
    63: "hostname mismatch",  # email mismatch, reported the same way
    64: "hostname mismatch",  # IP address mismatch
}

# OpenSSL reason strings (ssl.SSLError.reason), most specific first.
_SSL_REASONS: tuple[tuple[str, str], ...] = (
    ("CERTIFICATE_VERIFY_FAILED", "certificate verification failed"),
    ("TLSV13_ALERT_CERTIFICATE_REQUIRED", "client certificate required"),
    ("SSLV3_ALERT_BAD_CERTIFICATE", "client certificate rejected"),
    ("TLSV1_ALERT_UNKNOWN_CA", "client certificate rejected (unknown CA)"),
    ("SSLV3_ALERT_CERTIFICATE_EXPIRED", "client certificate rejected (expired)"),
    ("SSLV3_ALERT_CERTIFICATE_UNKNOWN", "client certificate rejected"),
    ("PEER_DID_NOT_RETURN_A_CERTIFICATE", "client certificate required"),
    ("WRONG_VERSION_NUMBER", "not a TLS server (plain HTTP on a TLS port?)"),
    ("HTTP_REQUEST", "not a TLS server (plain HTTP on a TLS port?)"),
    ("UNSUPPORTED_PROTOCOL", "protocol version mismatch"),
    ("TLSV1_ALERT_PROTOCOL_VERSION", "protocol version mismatch"),
    ("NO_PROTOCOLS_AVAILABLE", "protocol version mismatch"),
    ("NO_SHARED_CIPHER", "no shared cipher"),
    ("NO_CIPHERS_AVAILABLE", "no shared cipher"),
    ("SSLV3_ALERT_HANDSHAKE_FAILURE", "handshake failure"),
    ("UNEXPECTED_EOF_WHILE_READING", "connection closed during handshake"),
)


def _read_error(what: str, path: str | Path, exc: BaseException) -> ConfigError:
    detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return ConfigError(f"TLSConfig.{what} {os.fspath(path)!r} cannot be used: {detail}")


def build_ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """The client :class:`ssl.SSLContext` of one remote; build it once per remote.

    * trusted CAs: the system store, plus ``ca_file`` and ``ca_data`` when given;
    * ``client_cert`` / ``client_key``: loaded straight from the configured files (the key
      is never copied anywhere);
    * ``verify=False``: no certificate or host name check, and a warning in the log;
    * ``min_version`` and ``ciphers`` applied as given.

    Always returns a context (also with ``verify=False``, so a client certificate and the
    minimum version still apply); aiohttp accepts it as ``ssl=``.

    Raises:
        ConfigError: a file is missing or unreadable, PEM data is invalid or the cipher
            string selects nothing; the message names the setting and the path.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if not tls.verify:
        log.warning(
            "TLS verification is disabled: server certificates and host names are not checked"
        )
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.ca_file is not None:
        try:
            context.load_verify_locations(cafile=os.fspath(tls.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise _read_error("ca_file", tls.ca_file, exc) from None
    if tls.ca_data is not None:
        try:
            context.load_verify_locations(cadata=tls.ca_data)
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigError(f"TLSConfig.ca_data is not valid PEM: {exc}") from None
    if tls.client_cert is not None:
        try:
            context.load_cert_chain(
                os.fspath(tls.client_cert),
                os.fspath(tls.client_key) if tls.client_key is not None else None,
            )
        except (OSError, ssl.SSLError) as exc:
            # Do not guess which of the two files is bad: name both (never their content).
            paths = os.fspath(tls.client_cert)
            if tls.client_key is not None:
                paths += f"' / '{os.fspath(tls.client_key)}"
            raise _read_error("client_cert/client_key", paths, exc) from None
    if tls.client_cert_data is not None:
        _load_pem_pair(context, tls.client_cert_data, tls.client_key_data)
    version = tls.tls_version
    if version is not None:
        context.minimum_version = version
    if tls.ciphers is not None:
        try:
            context.set_ciphers(tls.ciphers)
        except ssl.SSLError as exc:
            raise ConfigError(f"TLSConfig.ciphers {tls.ciphers!r} selects no cipher") from exc
    return context


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def _load_pem_pair(context: ssl.SSLContext, cert: str, key: str | None) -> None:
    """Load a client certificate (and key) given as PEM text: :mod:`ssl` reads them only
    from files, so they live in a private (0700) directory for the moment of loading."""
    with tempfile.TemporaryDirectory(prefix="pad-tls-") as directory:
        cert_path = Path(directory) / "cert.pem"
        key_path = Path(directory) / "key.pem" if key is not None else None
        _write_private(cert_path, cert)
        if key_path is not None and key is not None:
            _write_private(key_path, key)
        try:
            context.load_cert_chain(cert_path, key_path)
        except ssl.SSLError as exc:
            raise ConfigError(
                f"TLSConfig.client_cert_data/client_key_data is not a valid PEM certificate "
                f"and key: {exc.reason or exc}"
            ) from None


def find_ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The most informative :class:`ssl.SSLError` behind ``exc`` (itself or its chain).

    Understands aiohttp's wrappers (``ClientConnectorCertificateError.certificate_error``,
    ``ClientConnectorSSLError.os_error``) without importing aiohttp. aiohttp's wrappers are
    themselves ``ssl`` exceptions without any detail, so one carrying a verification code
    or an OpenSSL reason is preferred.
    """
    found: list[ssl.SSLError] = []
    seen: set[int] = set()
    pending: list[BaseException | None] = [exc]
    while pending:
        current = pending.pop(0)
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            found.append(current)
        for attr in ("certificate_error", "os_error"):
            inner = getattr(current, attr, None)
            if isinstance(inner, BaseException):
                pending.append(inner)
        pending.append(current.__cause__)
        pending.append(current.__context__)
    for err in found:
        if isinstance(getattr(err, "verify_code", None), int):
            return err
    for err in found:
        if getattr(err, "reason", None):
            return err
    return found[0] if found else None


def classify_ssl_error(exc: BaseException) -> str:
    """A short reason for a TLS failure: "unknown CA", "hostname mismatch", ...

    Looks through aiohttp's wrappers and the exception chain for the :class:`ssl.SSLError`;
    falls back to "handshake failure" when there is none (e.g. the peer reset the
    connection during the handshake).
    """
    err = find_ssl_error(exc)
    if err is None:
        return "handshake failure"
    if isinstance(err, ssl.SSLCertVerificationError):
        code = getattr(err, "verify_code", None)
        if isinstance(code, int) and code in _VERIFY_REASONS:
            return _VERIFY_REASONS[code]
        message = getattr(err, "verify_message", None)
        return (
            f"certificate verification failed: {message}"
            if message
            else "certificate verification failed"
        )
    raw_reason = getattr(err, "reason", None)
    reason = (raw_reason or "").upper()
    text = str(err).upper()
    for key, label in _SSL_REASONS:
        if key == reason or key in text:
            return label
    if isinstance(err, ssl.SSLEOFError | ssl.SSLZeroReturnError):
        return "connection closed during handshake"
    return f"handshake failure ({raw_reason})" if raw_reason else "handshake failure"


def tls_error(exc: BaseException, url: str | None = None) -> TLSError:
    """A :class:`TLSError` naming the reason of ``exc``; raise it ``from exc``."""
    return TLSError(f"TLS failed: {classify_ssl_error(exc)}", url=url)
