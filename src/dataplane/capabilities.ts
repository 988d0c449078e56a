// What the data plane needs of the process: capabilities, not uid 0. Under systemd lvsd runs as
// its own user with AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW; the `ip` and `nft` it runs
// inherit the ambient set.

import { readFileSync } from 'node:fs';

/** capability.h's bit numbers. */
export const CAP_NET_ADMIN = 12;
export const CAP_NET_RAW = 13;

/** TUN devices, routes, rules, nftables and /proc/sys/net; raw sockets for ICMP and PING checks. */
export const DATAPLANE_CAPABILITIES: ReadonlyArray<{ name: string; bit: number }> = [
  { name: 'CAP_NET_ADMIN', bit: CAP_NET_ADMIN },
  { name: 'CAP_NET_RAW', bit: CAP_NET_RAW },
];

/** The effective set from /proc/<pid>/status's CapEff line (hex), or null when there is none. */
export function effectiveCapabilities(status: string): bigint | null {
  const m = /^CapEff:\s*([0-9a-fA-F]{1,16})\s*$/m.exec(status);
  return m ? BigInt(`0x${m[1]}`) : null;
}

/** The names of the capabilities in `needed` that `effective` lacks. */
export function missingCapabilities(
  effective: bigint,
  needed: ReadonlyArray<{ name: string; bit: number }> = DATAPLANE_CAPABILITIES,
): string[] {
  return needed.filter(({ bit }) => ((effective >> BigInt(bit)) & 1n) === 0n).map(({ name }) => name);
}

/**
 * Throws, naming what is missing, unless this process may run the data plane. `status` reads
 * /proc/self/status (injected for tests).
 */
export function checkDataplaneCapabilities(
  status: () => string = () => readFileSync('/proc/self/status', 'utf8'),
): void {
  const effective = effectiveCapabilities(status());
  if (effective === null)
    throw new Error('cannot read the capabilities of lvsd (no CapEff in /proc/self/status)');
  const missing = missingCapabilities(effective);
  if (missing.length > 0) {
    throw new Error(
      `the data plane needs ${missing.join(' and ')} (a TUN device, routes, nftables, raw sockets): ` +
        'run as root, or with AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW (packaging/lvsd.service), ' +
        'or with --no-dataplane',
    );
  }
}
