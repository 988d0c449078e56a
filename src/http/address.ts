// `lvsd --http` addresses: PORT (loopback), IPV4:PORT or [IPV6]:PORT. Only IP literals: a host
// name would make the bound address depend on the resolver. Pure.

import { formatAddr, parseIPv4, parseIPv6 } from '../core/inet.js';
import type { Addr } from '../core/inet.js';

export interface ListenAddress {
  /** An IP literal as node's listen() takes it (no brackets). */
  readonly host: string;
  readonly port: number;
}

export const DEFAULT_HTTP_HOST = '127.0.0.1';

function parsePort(text: string): number | null {
  if (!/^[0-9]{1,5}$/.test(text)) return null;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : null;
}

export function parseListenAddress(text: string): ListenAddress | { error: string } {
  const usage = `"${text}" is not PORT, IPV4:PORT or [IPV6]:PORT`;
  if (/^[0-9]+$/.test(text)) {
    const port = parsePort(text);
    return port === null ? { error: `port ${text} is not 1..65535` } : { host: DEFAULT_HTTP_HOST, port };
  }
  const m = /^(?:\[([^\]]*)\]|([^:[\]]*)):([^:]*)$/.exec(text);
  if (!m) return { error: usage };
  const [, v6, v4, portText] = m as unknown as [string, string | undefined, string | undefined, string];
  if (v4 === '') {
    return { error: `"${text}" has no address: write PORT for loopback, or 0.0.0.0:PORT for every address` };
  }
  const addr: Addr | null = v6 !== undefined ? parseIPv6(v6) : parseIPv4(v4!);
  if (!addr) {
    if (v6 !== undefined) return { error: `[${v6}] is not an IPv6 address` };
    if (/[a-z]/i.test(v4!))
      return { error: `${v4} is a host name: give an IP address (127.0.0.1, [::1], 0.0.0.0)` };
    return { error: `${v4} is not an IPv4 address` };
  }
  const port = parsePort(portText);
  if (port === null) return { error: `port ${portText || '(none)'} is not 1..65535` };
  return { host: formatAddr(addr), port };
}

/** 127.0.0.0/8 and ::1 (IPv4-mapped loopback included). */
export function isLoopback({ host }: ListenAddress): boolean {
  const v4 = parseIPv4(host.startsWith('::ffff:') ? host.slice(7) : host);
  if (v4) return v4.a >>> 24 === 127;
  return host === '::1';
}

/** http://host:port with IPv6 in brackets. */
export function listenUrl({ host, port }: ListenAddress): string {
  return host.includes(':') ? `http://[${host}]:${port}` : `http://${host}:${port}`;
}
