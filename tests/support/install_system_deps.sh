#!/usr/bin/env bash
# Install the system packages the test suite needs, if they are missing.
#
# Today that is the PostgreSQL server (initdb, pg_ctl, postgres), used by the
# PostgreSQL SqlCatalog tests (tests/support/postgres.py). Idempotent: quiet and
# instant when everything is already there. Installs with apt-get as root;
# otherwise prints what to install and exits non-zero.
set -euo pipefail

# Where Debian puts versioned server binaries (overridable for the script's own test).
pg_lib_dir="${ICEFEED_POSTGRES_LIBDIR:-/usr/lib/postgresql}"

have_postgres_server() {
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        return 0
    fi
    local bindir
    for bindir in "$pg_lib_dir"/*/bin; do
        if [[ -x "$bindir/initdb" && -x "$bindir/pg_ctl" && -x "$bindir/postgres" ]]; then
            return 0
        fi
    done
    return 1
}

if have_postgres_server; then
    exit 0
fi

packages=(postgresql)
if [[ "$(id -u)" -ne 0 ]]; then
    echo "install_system_deps: the PostgreSQL server (initdb, pg_ctl) is missing." >&2
    echo "install_system_deps: as root, run: apt-get update && apt-get install -y ${packages[*]}" >&2
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_system_deps: no apt-get here; install the PostgreSQL server" \
         "(initdb, pg_ctl, postgres) with your system's package manager." >&2
    exit 1
fi

echo "install_system_deps: installing ${packages[*]} (PostgreSQL server for the catalog tests)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
# Debian's package starts a cluster on port 5432; the tests start their own
# throwaway server, so the packaged one is left alone (no harm either way).

if ! have_postgres_server; then
    echo "install_system_deps: installed ${packages[*]} but initdb/pg_ctl are still not found" >&2
    exit 1
fi
echo "install_system_deps: PostgreSQL server installed"
