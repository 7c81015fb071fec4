#!/bin/sh
# Install the PostgreSQL server the catalog tests start (tests/plugins/postgres.py).
# Idempotent: does nothing when initdb is already available.
set -eu

have_initdb() {
    command -v initdb >/dev/null 2>&1 && return 0
    for bindir in /usr/lib/postgresql/*/bin; do
        [ -x "$bindir/initdb" ] && [ -x "$bindir/pg_ctl" ] && return 0
    done
    return 1
}

if have_initdb; then
    echo "PostgreSQL server already installed"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi

$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql

if ! have_initdb; then
    echo "postgresql installed but initdb not found" >&2
    exit 1
fi
echo "PostgreSQL server installed"
