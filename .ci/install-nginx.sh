#!/bin/sh
# Install the nginx the PULP_MANIFEST tests start from a config they write
# (tests/plugins/nginx.py). The packaged nginx service is never used.
# Idempotent: does nothing when nginx is already installed.
set -eu

if command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; then
    echo "nginx already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx
# Debian starts the packaged service on install; the tests do not need it.
$SUDO sh -c 'command -v service >/dev/null 2>&1 && service nginx stop >/dev/null 2>&1 || true'

if ! command -v nginx >/dev/null 2>&1 && ! [ -x /usr/sbin/nginx ]; then
    echo "nginx installed but not found" >&2
    exit 1
fi
echo "nginx installed"
