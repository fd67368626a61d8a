#!/usr/bin/env bash
# Make sure the system packages needed by the test suite and benchmarks exist.
#
# - PostgreSQL server binaries (initdb, pg_ctl): required by the `postgres`
#   tests, which start a throwaway server of their own. The cluster that the
#   Debian package creates automatically is not used.
# - wrk: used by `make bench`; optional, a failed install only warns.
# - chromium and chromium-driver: the console's browser tests drive headless Chromium.
#
# Idempotent and quiet when everything is already present. When packages are
# missing and cannot be installed (not root, no apt-get), this prints a
# warning and exits 0; the test fixtures then skip (or fail under CI).
set -uo pipefail

warn() { printf 'ensure-system-deps: warning: %s\n' "$*" >&2; }

have_pg_bins() {
    local d
    for d in /usr/lib/postgresql/*/bin; do
        if [[ -x "$d/initdb" && -x "$d/pg_ctl" ]]; then
            return 0
        fi
    done
    command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1
}

can_apt() {
    [[ "$(id -u)" -eq 0 ]] && command -v apt-get >/dev/null 2>&1
}

apt_updated=0
# Run a command quietly; show its output only if it fails.
quiet() {
    local out rc=0
    out="$("$@" 2>&1)" || rc=$?
    if [[ $rc -ne 0 ]]; then
        printf '%s\n' "$out" >&2
    fi
    return $rc
}

apt_install() {
    if [[ $apt_updated -eq 0 ]]; then
        quiet apt-get update -qq || return 1
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive quiet apt-get install -y -qq "$@"
}

if ! have_pg_bins; then
    if can_apt; then
        if ! apt_install postgresql; then
            warn "failed to install postgresql with apt-get; PostgreSQL tests will be skipped"
        elif ! have_pg_bins; then
            warn "postgresql installed but initdb/pg_ctl still not found"
        fi
    else
        warn "PostgreSQL server binaries (initdb, pg_ctl) not found and cannot install them" \
            "(need root and apt-get). Install e.g. 'apt-get install postgresql' or set" \
            "TURNOUT_PG_BIN to the directory holding initdb/pg_ctl."
    fi
fi

if ! command -v wrk >/dev/null 2>&1; then
    if can_apt; then
        if ! apt_install wrk; then
            warn "failed to install wrk; 'make bench' will not work"
        fi
    else
        warn "wrk not found and cannot install it; 'make bench' will not work"
    fi
fi

# strace: the test that no process of the server connects outside loopback traces them.
if ! command -v strace >/dev/null 2>&1; then
    if can_apt; then
        apt_install strace || warn "failed to install strace; the outbound-connection test will skip"
    else
        warn "strace not found and cannot install it; the outbound-connection test will skip"
    fi
fi

# haproxy: the load balancer in front of the cluster tests' nodes (tests/cluster).
if ! command -v haproxy >/dev/null 2>&1 && [[ ! -x /usr/sbin/haproxy ]]; then
    if can_apt; then
        apt_install haproxy || warn "failed to install haproxy; the cluster tests will skip"
    else
        warn "haproxy not found and cannot install it; the cluster tests will skip"
    fi
fi

# chromium + chromedriver: the console's tests (tests/console) drive headless Chromium.
if ! command -v chromedriver >/dev/null 2>&1 || ! command -v chromium >/dev/null 2>&1; then
    if can_apt; then
        apt_install chromium chromium-driver \
            || warn "failed to install chromium and chromium-driver; the console's browser tests will skip"
    else
        warn "chromium or chromedriver not found and cannot install them; the console's browser tests will skip"
    fi
fi

exit 0
