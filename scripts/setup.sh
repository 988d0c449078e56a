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
  # the server that scrapes lvsd's /metrics in the tests; keepalived: VRRP for the director pair
  # of the failover test and `lvsd demo --ha`; util-linux (setpriv, unshare) and systemd
  # (systemd-analyze verify): the capability and unit tests; chromium: the headless browser the
  # dashboard's end-to-end test drives (through puppeteer-core, which downloads no browser);
  # iptables: the legacy tables the doctor's test puts a drop rule in (iptables-legacy).
  apt-get install -y -q --no-install-recommends iproute2 nftables nginx-light curl wrk socat python3 procps \
    util-linux systemd \
    dnsmasq-base openssl prometheus keepalived chromium iptables
  # The tests run their own Prometheus on loopback; the package's service (on *:9090) is not wanted.
  if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl disable --now prometheus
  fi
  # The same for keepalived's service: the tests and the demo run their own, in namespaces.
  if command -v systemctl >/dev/null && systemctl is-active --quiet keepalived 2>/dev/null; then
    systemctl disable --now keepalived
  fi
else
  echo "setup: not root, skipping Debian packages (the lab and end-to-end tests need root)" >&2
fi

npm ci --no-audit --no-fund
npm run build
