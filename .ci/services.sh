#!/bin/sh
# Installs the services the test suite runs for real, from Debian's own packages, only when they
# are missing: `prometheus` (the server, which the metrics tests start on a free loopback port,
# and `promtool`, which checks and unit-tests the alert rules). Idempotent: run it any number of
# times; when everything is there it changes nothing.
set -eu

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    exit 0
fi

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# A fresh container's package lists are empty: fetch them once, only then.
if ! apt-cache show prometheus >/dev/null 2>&1; then
    $SUDO apt-get update
fi
# Only the package itself, not the exporters it recommends. Where the package's own service may
# start (a host with systemd), it stays harmless: the tests never use it.
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends prometheus
