#!/bin/sh
# Install microsocks, the real SOCKS5 server the SOCKS proxy tests start (tests/plugins/socks.py).
# Idempotent: does nothing when microsocks is already available. Only the binary is used: the
# tests run it on their own port, with their own credentials; the package starts no service.
set -eu

have_microsocks() {
    command -v microsocks >/dev/null 2>&1 || [ -x /usr/bin/microsocks ]
}

if have_microsocks; then
    echo "microsocks already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends microsocks

if ! have_microsocks; then
    echo "microsocks installed but not found" >&2
    exit 1
fi
echo "microsocks installed"
