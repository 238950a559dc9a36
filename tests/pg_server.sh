#!/usr/bin/env bash
# Start (or reuse) a throwaway PostgreSQL server on loopback for the test suite; print its URL.
#
# `make test` exports the URL as AGENTOPT_TEST_PG, so every archive test also runs against a real
# server. Installs Debian's postgresql package when no server binaries are found (needs root).
set -euo pipefail
PORT=${AGENTOPT_TEST_PG_PORT:-54329}
DATA=${TMPDIR:-/tmp}/agentopt-test-pg-$PORT
URL="postgresql+psycopg://agentopt@127.0.0.1:$PORT/agentopt_test"

# The server's directory (a client-only install has psql there, but no initdb).
bin_dir() { ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1 | xargs -r dirname; }
if [ -z "$(bin_dir)" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "pg_server: installing Debian's postgresql package" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2 \
            || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2; }
    else
        echo "pg_server: no PostgreSQL server found; install it or set AGENTOPT_TEST_PG to a server URL" >&2
        exit 1
    fi
fi
BIN=$(bin_dir)
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

if ! "$BIN/pg_isready" -q -h 127.0.0.1 -p "$PORT"; then
    if [ ! -f "$DATA/PG_VERSION" ]; then
        mkdir -p "$DATA"
        [ "$(id -u)" = 0 ] && chown postgres "$DATA"
        as_owner "$BIN/initdb" -D "$DATA" -U agentopt --auth=trust -E UTF8 >/dev/null
    fi
    as_owner "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 \
        -o "-p $PORT -k $DATA -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
fi
"$BIN/psql" -q -h 127.0.0.1 -p "$PORT" -U agentopt -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'agentopt_test'" | grep -q 1 \
    || "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U agentopt agentopt_test
echo "$URL"
