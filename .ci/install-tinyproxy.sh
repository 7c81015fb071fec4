#!/bin/sh
# Install tinyproxy, the real proxy the proxy tests start (tests/plugins/tinyproxy.py).
# Idempotent: does nothing when tinyproxy is already available. Only the binary is used:
# the tests run it from their own config, on their own port; the package's service is not
# needed, so it is stopped if the package started it.
set -eu

have_tinyproxy() {
    command -v tinyproxy >/dev/null 2>&1 || [ -x /usr/bin/tinyproxy ] || [ -x /usr/sbin/tinyproxy ]
}

if have_tinyproxy; then
    echo "tinyproxy already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends tinyproxy
if command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl stop tinyproxy >/dev/null 2>&1 || true
fi

if ! have_tinyproxy; then
    echo "tinyproxy installed but not found" >&2
    exit 1
fi
echo "tinyproxy installed"
