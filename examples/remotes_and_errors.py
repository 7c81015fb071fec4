"""Remote settings and the errors a plugin catches.

    python examples/remotes_and_errors.py [BASE_URL] [--data-dir DIR]

A named remote carries its network settings (retries, timeouts with stall detection,
headers, concurrency, rate limit); requests name it. Every failure is a ``DownloadError``
with the URL (never credentials) and a clear message; subclasses say what went wrong.
"""

from __future__ import annotations

import asyncio
import sys

from _sample import parse_args, parse_pulp_manifest, repository

import pulp_aio_download as pad

MIRROR = pad.RemoteConfig(
    name="mirror",
    headers={"X-Example": "pulp-aio-download"},
    retry=pad.RetryPolicy(attempts=2, backoff=0.1),
    timeouts=pad.Timeouts(connect=10, min_speed=1024, stall_window=30),
    max_connections=8,
    rate_limit=50,
)


async def main() -> int:
    args = parse_args(__doc__ or "")
    async with repository(args.base_url) as base:
        config = pad.EngineConfig(data_dir=args.data_dir, remotes={"mirror": MIRROR})
        async with pad.DownloadEngine(config) as engine:
            async with engine.session("mirror").get(base.rstrip("/") + "/PULP_MANIFEST") as r:
                url, _, sha256, size = parse_pulp_manifest(await r.text(), base)[0]
            ok = await engine.download(
                url, expected_digests={"sha256": sha256}, expected_size=size, remote="mirror"
            )
            print(f"ok: {ok.url} -> {ok.location} after {ok.attempts} attempt(s)")
            seen = []
            attempts: list[tuple[str, dict[str, object]]] = [
                ("wrong digest", {"expected_digests": {"sha256": "0" * 64}}),
                ("wrong size", {"expected_size": size + 1}),
            ]
            for label, kwargs in attempts:
                try:
                    await engine.download(url, remote="mirror", **kwargs)  # type: ignore[arg-type]
                except pad.DigestMismatch as exc:
                    seen.append("DigestMismatch")
                    print(f"{label}: DigestMismatch {exc.algorithm} expected {exc.expected}")
                except pad.SizeMismatch as exc:
                    seen.append("SizeMismatch")
                    print(f"{label}: SizeMismatch expected {exc.expected}, got {exc.actual}")
            try:
                await engine.download(base.rstrip("/") + "/no-such-file", remote="mirror")
            except pad.HTTPStatusError as exc:
                seen.append("HTTPStatusError")
                print(f"missing: HTTPStatusError {exc.status} for {exc.url}")
            try:
                await engine.download(url, remote="nobody")
            except pad.ConfigError as exc:  # raised before any I/O
                seen.append("ConfigError")
                print(f"unknown remote: ConfigError: {exc}")
    expected = ["DigestMismatch", "SizeMismatch", "HTTPStatusError", "ConfigError"]
    return 0 if seen == expected else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
