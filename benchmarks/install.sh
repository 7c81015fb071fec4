#!/usr/bin/env bash
# Install the benchmark peers and what the runner needs, each only when missing:
#   - with apt-get: nginx, aria2, curl, GNU time (peak RSS of each tool), Debian's
#     python3-librepo (dnf's download engine, for the system /usr/bin/python3) and
#     libnginx-mod-http-lua (the WAN workload's per-request delay);
#   - with pip, into a venv of its own (never this project's): pulpcore, whose
#     HttpDownloader is a peer. Its place: $PULPCORE_VENV, default
#     ${XDG_CACHE_HOME:-~/.cache}/pulp-aio-download-bench/pulpcore-venv (run.py looks there).
# Idempotent: does nothing when everything is already installed.
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
if ! { [ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import librepo' 2>/dev/null; }; then
    missing+=(python3-librepo)
fi
if ! [ -e /usr/lib/nginx/modules/ngx_http_lua_module.so ]; then
    missing+=(libnginx-mod-http-lua)
fi

if [ "${#missing[@]}" -eq 0 ]; then
    echo "benchmarks/install.sh: Debian packages already installed"
else
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
    # The packaged nginx service is not used: the runner starts a private nginx from a temp
    # config (which loads the Lua module itself only for the WAN workload).
    $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Found, not imported: pulpcore.download needs Django settings, which pulpcore_peer.py makes.
found='import importlib.util as u, sys; sys.exit(not (u.find_spec("pulpcore.download") and u.find_spec("django")))'
venv="${PULPCORE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/pulp-aio-download-bench/pulpcore-venv}"
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "$found" 2>/dev/null; then
    echo "benchmarks/install.sh: pulpcore already installed in $venv"
    exit 0
fi
# pulpcore needs Python >= 3.11: the first such interpreter found.
python=""
for candidate in "${PULPCORE_PYTHON:-}" python3.13 python3.12 python3.11 python3 /usr/bin/python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 \
        && "$candidate" -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' \
            2>/dev/null; then
        python="$candidate"
        break
    fi
done
if [ -z "$python" ]; then
    echo "benchmarks/install.sh: pulpcore needs a Python >= 3.11 with venv (python3-venv)" >&2
    exit 1
fi
echo "benchmarks/install.sh: pip install pulpcore into $venv (with $python)"
rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
"$python" -m venv "$venv"
"$venv/bin/pip" install -q pulpcore
