#!/usr/bin/env bash
# The README's test command. Installs the real engines the engine tests start on loopback
# (redis-server, Prometheus Alertmanager, promtool) when they are missing, then runs every test
# with every feature. The tests themselves never skip: without a binary they fail and say how to
# install it; this script is what makes a fresh Debian machine able to run them.
set -euo pipefail
cd "$(dirname "$0")/.."

# binary -> Debian package that ships it
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v prometheus-alertmanager >/dev/null 2>&1 || command -v alertmanager >/dev/null 2>&1 \
  || need+=(prometheus-alertmanager)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)

if [ "${#need[@]}" -gt 0 ]; then
  echo "installing missing engines for the tests: ${need[*]}"
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get not found: install ${need[*]} (Debian package names) yourself, then rerun" >&2
    exit 1
  fi
  sudo=""
  if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
  $sudo apt-get update
  # The packages' own services are not wanted: the tests start the binaries themselves on free
  # loopback ports. policy-rc.d stops dpkg from starting them during the install.
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
    $sudo chmod +x /usr/sbin/policy-rc.d
    trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${need[@]}"
fi

exec cargo test --all-features "$@"
