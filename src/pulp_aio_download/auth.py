"""Composable request authentication for :attr:`RemoteConfig.auth` (the public home of
:mod:`.transports.auth`, where the transports apply it)."""

from __future__ import annotations

from .transports.auth import Auth as Auth
from .transports.auth import BasicAuth as BasicAuth
from .transports.auth import BearerTokenAuth as BearerTokenAuth
from .transports.auth import basic_auth_header as basic_auth_header
from .transports.auth import parse_www_authenticate as parse_www_authenticate

__all__ = ["Auth", "BasicAuth", "BearerTokenAuth", "basic_auth_header", "parse_www_authenticate"]
