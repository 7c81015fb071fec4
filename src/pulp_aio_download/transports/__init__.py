"""Transports: how bytes are fetched (HTTP/HTTPS through aiohttp, ``file://``)."""
