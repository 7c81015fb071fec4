#!/usr/bin/env bash
# Install the benchmark peers (Debian nginx, aria2, curl) and GNU time (which measures
# each tool's peak RSS) with apt-get when missing.
# Idempotent: does nothing when every tool is already installed.
set -euo pipefail

declare -A want=([nginx]=nginx [aria2c]=aria2 [curl]=curl)
missing=()
for tool in "${!want[@]}"; do
    if ! command -v "$tool" >/dev/null 2>&1 && ! [ -x "/usr/sbin/$tool" ]; then
        missing+=("${want[$tool]}")
    fi
done
# "time" is also a shell keyword, so look for the GNU binary itself.
if ! [ -x /usr/bin/time ]; then
    missing+=(time)
fi

if [ "${#missing[@]}" -eq 0 ]; then
    echo "benchmarks/install.sh: nginx, aria2c, curl and GNU time already installed"
    exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo="sudo"
    else
        echo "benchmarks/install.sh: need root (or sudo) to install: ${missing[*]}" >&2
        exit 1
    fi
fi

echo "benchmarks/install.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# The packaged nginx service is not used: the runner starts a private nginx from a temp config.
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
