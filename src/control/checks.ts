// Field checks shared by the control protocol and the configuration document: each names the
// field it refuses, so that a bad request or a bad file says exactly what is wrong and where.

import type { TunnelCsum, TunnelSettings, TunnelType } from '../core/model.js';

/** A value refused by a check; its message names the field. */
export class Invalid extends Error {}

export function check(condition: boolean, what: string): asserts condition {
  if (!condition) throw new Invalid(what);
}

export function record(value: unknown, what: string): Record<string, unknown> {
  check(typeof value === 'object' && value !== null && !Array.isArray(value), `${what} must be an object`);
  return value as Record<string, unknown>;
}

export function int(value: unknown, min: number, max: number, what: string): number {
  check(
    typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max,
    `${what} must be an integer in ${min}..${max}`,
  );
  return value;
}

export function str(value: unknown, pattern: RegExp, what: string): string {
  check(typeof value === 'string' && pattern.test(value), `${what} is not valid`);
  return value;
}

export const U32 = 0xffffffff;
/** Scheduler and persistence-engine names: IP_VS_SCHEDNAME_MAXLEN less the NUL. */
export const NAME = /^[\x21-\x7e]{1,15}$/;
/** A network interface name: IFNAMSIZ less the NUL, no blanks or slashes. */
export const IFNAME = /^[^\s/]{1,15}$/;
/** Real-server thresholds, as the kernel bounds them. */
export const MAX_THRESHOLD = 0x7fffffff;
/** The largest sync message that fits in an IPv4/UDP datagram. */
export const MAX_SYNC_LEN = 65535 - 28;

const TUNNEL_TYPES: readonly TunnelType[] = ['ipip', 'gue', 'gre'];
const TUNNEL_CSUMS: readonly TunnelCsum[] = ['nocsum', 'csum', 'remcsum'];

/** A tunnelling real server's encapsulation; what a type takes is the service table's to check. */
export function tunnelSettings(value: unknown, what: string): TunnelSettings {
  const o = record(value, what);
  check(
    TUNNEL_TYPES.includes(o.type as TunnelType),
    `${what}.type must be one of ${TUNNEL_TYPES.join(', ')}`,
  );
  check(
    TUNNEL_CSUMS.includes(o.csum as TunnelCsum),
    `${what}.csum must be one of ${TUNNEL_CSUMS.join(', ')}`,
  );
  return {
    type: o.type as TunnelType,
    port: int(o.port, 0, 65535, `${what}.port`),
    csum: o.csum as TunnelCsum,
  };
}
