"""Integrations with other software. Each needs its own extra and is imported only by name
(``pulp_aio_download.integrations.pulpcore``); the core package never imports them."""
