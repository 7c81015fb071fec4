"""Composable request authentication for :attr:`RemoteConfig.auth`."""

from __future__ import annotations

import abc
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import aiohttp

__all__ = ["Auth"]


class Auth(abc.ABC):
    """An auth scheme: adds headers to a request and may answer a 401 challenge.

    The engine calls :meth:`apply` before every request to the request's origin (never on a
    redirect to another origin) and, on a ``401``, :meth:`challenge`; when that returns True
    the request is retried once with :meth:`apply` called again.
    """

    def apply(self, url: str, headers: MutableMapping[str, str]) -> None:  # noqa: B027
        """Add credentials to ``headers`` for a request to ``url``."""

    async def challenge(
        self,
        url: str,
        status: int,
        headers: Mapping[str, str],
        session: aiohttp.ClientSession,
    ) -> bool:
        """Handle a ``401`` answer to ``url``; True to retry the request once."""
        return False
