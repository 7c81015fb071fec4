"""pulpcore's content app in a process of its own (one ``AppStatus`` per process).

Run as ``python pulp_content_app.py PORT DOWNLOADERS TRIPWIRE`` with the site's environment
(``PULP_SETTINGS``...): ``DOWNLOADERS`` is ``adapter`` (the adapter installed, pulpcore's
``HttpDownloader`` armed to fail and record into the file ``TRIPWIRE``) or ``pulpcore``.
It serves ``pulpcore.content.server`` with aiohttp on 127.0.0.1:PORT until terminated.
"""

from __future__ import annotations

import sys
from pathlib import Path

import django


def main(port: int, downloaders: str, tripwire: Path) -> None:
    django.setup()
    if downloaders == "adapter":
        from pulp_aio_download.integrations.pulpcore import install

        sys.path.insert(0, str(Path(__file__).parent))
        from pulp_tripwire import arm

        install()
        arm(tripwire)
    from aiohttp import web
    from pulpcore.content import server

    web.run_app(server(), host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
