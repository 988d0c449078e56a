// Shared fixtures for the connection-table tests.
import { ManualClock } from '../../../src/core/clock.js';
import { ConnTable, type ConnSpec, type TemplateSpec } from '../../../src/core/conn/table.js';
import { Timeouts } from '../../../src/core/conn/timeouts.js';
import { addr4, IPPROTO_TCP, parseAddr, type Addr } from '../../../src/core/inet.js';
import { Dest } from '../../../src/core/model.js';

export const ip = (text: string): Addr => parseAddr(text)!;

export const VIP = ip('198.18.0.1');

export function makeDest(
  id: number,
  text: string,
  thresholds = { uThreshold: 0, lThreshold: 0 },
  port = 80,
): Dest {
  return new Dest(id, ip(text), port, { method: 'masq', weight: 1, ...thresholds });
}

export function makeTable(capacity = 64, start = 1_000_000) {
  const clock = new ManualClock(start);
  const timeouts = new Timeouts();
  const table = new ConnTable({ capacity, clock, timeouts });
  return { clock, timeouts, table };
}

/** A TCP connection from 10.0.0.<n>:(40000 + n) to VIP:80, bound to `dest`. */
export function connSpec(n: number, dest: Dest, overrides: Partial<ConnSpec> = {}): ConnSpec {
  return {
    af: 4,
    protocol: IPPROTO_TCP,
    caddr: addr4(0x0a000000 + n),
    cport: 40000 + (n % 20000),
    vaddr: VIP,
    vport: 80,
    daddr: dest.addr,
    dport: dest.port,
    dest,
    method: 0,
    serviceId: 1,
    template: -1,
    ...overrides,
  };
}

/** A deterministic uniform source in [0, 1) (a linear congruential generator), so evictions replay exactly. */
export function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 0x100000000;
  };
}

/** A TCP persistence template for `caddr` (already masked) on VIP:80, bound to `dest`. */
export function templateSpec(caddr: Addr, dest: Dest, timeoutMs = 300_000): TemplateSpec {
  return {
    af: 4,
    protocol: IPPROTO_TCP,
    caddr,
    vaddr: VIP,
    vport: 80,
    fwmark: 0,
    daddr: dest.addr,
    dport: 80,
    dest,
    serviceId: 1,
    timeoutMs,
  };
}
