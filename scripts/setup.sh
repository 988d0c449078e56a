#!/usr/bin/env bash
# Installs what lvsd, its lab and its tests need on a fresh Debian machine, then builds.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  # iproute2/nftables: the lab and the director's plumbing; nginx-light: the real servers;
  # curl, wrk, socat, python3: the clients of the demo and the end-to-end tests (and python3 the
  # restart test's UDP echo on the real servers); dnsmasq-base and openssl:
  # the DNS server and the TLS certificates of the health-check tests; prometheus: promtool and
  # the server that scrapes lvsd's /metrics in the tests.
  apt-get install -y -q --no-install-recommends iproute2 nftables nginx-light curl wrk socat python3 procps \
    dnsmasq-base openssl prometheus
  # The tests run their own Prometheus on loopback; the package's service (on *:9090) is not wanted.
  if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl disable --now prometheus
  fi
else
  echo "setup: not root, skipping Debian packages (the lab and end-to-end tests need root)" >&2
fi

npm ci --no-audit --no-fund
npm run build
