// DNS_CHECK (keepalived check_dns.c): one query (recursion desired, random id) of the configured
// type and name over UDP. Replies with another id or without the response bit are not ours and
// are ignored; a response with a non-zero RCODE fails; any other response passes. The query is a
// dozen bytes written here: the check reads only the reply's header, so a DNS library would add
// a dependency for nothing.

import { randomInt } from 'node:crypto';
import { ErrorCodes, LvsError } from '../core/errors.js';
import type { CheckerConfig } from './config.js';
import { registerChecker, result, type Checker } from './checker.js';
import { udpExchange } from './udp.js';

type DnsConfig = Extract<CheckerConfig, { kind: 'DNS_CHECK' }>;

const TYPE_CODES: Record<DnsConfig['type'], number> = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  MX: 15,
  TXT: 16,
  AAAA: 28,
};
const RCODE_NAMES = ['NOERROR', 'FORMERR', 'SERVFAIL', 'NXDOMAIN', 'NOTIMP', 'REFUSED'];

/** The name's labels in wire form, or an error for a name DNS cannot carry. */
function encodeName(name: string): Buffer {
  const labels = name === '.' || name === '' ? [] : name.replace(/\.$/, '').split('.');
  const parts: Buffer[] = [];
  for (const label of labels) {
    const bytes = Buffer.from(label, 'latin1');
    if (bytes.length === 0 || bytes.length > 63)
      throw new LvsError(ErrorCodes.INVALID, `DNS_CHECK name ${JSON.stringify(name)}: bad label`);
    parts.push(Buffer.from([bytes.length]), bytes);
  }
  parts.push(Buffer.from([0]));
  const wire = Buffer.concat(parts);
  if (wire.length > 255)
    throw new LvsError(ErrorCodes.INVALID, `DNS_CHECK name ${JSON.stringify(name)}: too long`);
  return wire;
}

/** A standard query with RD set (RFC 1035 section 4.1). */
export function dnsQuery(id: number, qname: Buffer, type: number): Buffer {
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id, 0);
  header.writeUInt16BE(0x0100, 2);
  header.writeUInt16BE(1, 4);
  const question = Buffer.alloc(4);
  question.writeUInt16BE(type, 0);
  question.writeUInt16BE(1, 2);
  return Buffer.concat([header, qname, question]);
}

export function dnsChecker(config: DnsConfig): Checker {
  const qname = encodeName(config.name);
  const type = TYPE_CODES[config.type];
  return {
    kind: config.kind,
    timeoutMs: config.connectTimeoutMs,
    check(attempt) {
      const id = randomInt(0x10000);
      return udpExchange(
        config.target,
        dnsQuery(id, qname, type),
        attempt,
        (reply, t0) => {
          if (reply.length < 12 || reply.readUInt16BE(0) !== id || (reply[2]! & 0x80) === 0) return null;
          const rcode = reply[3]! & 0x0f;
          if (rcode !== 0) return result(t0, false, 'L7STS', `DNS rcode ${RCODE_NAMES[rcode] ?? rcode}`);
          return result(t0, true, 'L7OK', `DNS answer (${reply.readUInt16BE(6)} records)`);
        },
        (t0) => result(t0, false, 'L7TOUT', `no DNS response within ${config.connectTimeoutMs} ms`),
      );
    },
  };
}

registerChecker({ kinds: ['DNS_CHECK'], create: dnsChecker });
