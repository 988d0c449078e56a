// Service snapshots as the engine hands them to the host plumbing: what a test needs to say which
// services and real servers are configured, with zero counters.

import assert from 'node:assert/strict';
import { parseAddr, type Addr } from '../../src/core/inet.js';
import type { ServiceSnapshot } from '../../src/core/ops.js';

function addr(text: string): Addr {
  const a = parseAddr(text);
  assert.ok(a, text);
  return a;
}

/** A masq service on vip:port (or fwmark `fwmark`, protocol 0) with its real servers. */
export function serviceSnapshot(
  vip: string,
  protocol: number,
  port: number,
  reals: [string, number][],
  fwmark = 0,
): ServiceSnapshot {
  const zero = { conns: 0, inPkts: 0, outPkts: 0, inBytes: 0, outBytes: 0 };
  const rates = { cps: 0, inpps: 0, outpps: 0, inbps: 0, outbps: 0 };
  const a = addr(vip);
  return {
    key: { af: a.af, protocol: (fwmark > 0 ? 0 : protocol) as 6, addr: a, port, fwmark },
    settings: { scheduler: 'rr', flags: 0, timeout: 0, netmaskPrefix: 32, pe: null },
    stats: zero,
    rates,
    dests: reals.map(([rip, rport]) => ({
      addr: addr(rip),
      port: rport,
      method: 'masq' as const,
      weight: 1,
      configuredWeight: 1,
      scheduled: true,
      admin: 'ready' as const,
      operatorWeight: null,
      health: 'up' as const,
      dynamicWeight: null,
      uThreshold: 0,
      lThreshold: 0,
      activeConns: 0,
      inactConns: 0,
      persistConns: 0,
      stats: zero,
      rates,
    })),
  };
}
