#!/usr/bin/env bash
# Print the path of a headless-capable Chromium for the report test, installing Debian's chromium
# package when none is found (needs root), as tests/pg_server.sh does for PostgreSQL.
set -euo pipefail
found=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$found" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "chromium.sh: installing Debian's chromium package" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >&2 \
            || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >&2; }
        found=$(command -v chromium)
    else
        echo "chromium.sh: no Chromium found; install it or set AGENTOPT_TEST_CHROMIUM to its path" >&2
        exit 1
    fi
fi
echo "$found"
