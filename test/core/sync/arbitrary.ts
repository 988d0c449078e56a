// fast-check generators of valid sync records, shared by the codec and role tests.

import fc from 'fast-check';
import { addr4, addr6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP, type Addr } from '../../../src/core/inet.js';
import { CONN_F_TEMPLATE, syncStateName, type SyncConn } from '../../../src/core/sync/conn.js';

const u32 = fc.integer({ min: 0, max: 0xffffffff });
const port = fc.integer({ min: 0, max: 0xffff });
const seq = fc
  .tuple(u32, u32, u32)
  .map(([initSeq, delta, previousDelta]) => ({ initSeq, delta, previousDelta }));

function addrOf(af: 4 | 6): fc.Arbitrary<Addr> {
  return af === 4 ? u32.map(addr4) : fc.tuple(u32, u32, u32, u32).map(([a, b, c, d]) => addr6(a, b, c, d));
}

const STATE_COUNT: Record<number, number> = { [IPPROTO_TCP]: 11, [IPPROTO_UDP]: 1, [IPPROTO_SCTP]: 14 };

export const syncConnArb: fc.Arbitrary<SyncConn> = fc
  .record({
    af: fc.constantFrom<4 | 6>(4, 6),
    template: fc.boolean(),
    protocol: fc.constantFrom(IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP),
    otherFlags: fc.integer({ min: 0, max: 0xffffffff }),
    stateSeed: fc.nat(),
    withSeq: fc.boolean(),
    pe: fc.option(
      fc.record({
        name: fc.stringMatching(/^[a-z]{1,16}$/),
        data: fc.uint8Array({ minLength: 1, maxLength: 255 }),
      }),
      { nil: undefined },
    ),
  })
  .chain((r) =>
    fc
      .record({
        cport: port,
        vport: port,
        dport: port,
        fwmark: u32,
        timeoutSec: u32,
        caddr: addrOf(r.af),
        vaddr: addrOf(r.af),
        daddr: addrOf(r.af),
        seqIn: seq,
        seqOut: seq,
      })
      .map((f) => {
        // Bit 6 (HASHED) never travels: the encoder clears it as the kernel does.
        const flags = ((r.otherFlags & ~0x1040) | (r.template ? CONN_F_TEMPLATE : 0)) >>> 0;
        const state = r.stateSeed % (r.template ? 2 : STATE_COUNT[r.protocol]!);
        const conn: SyncConn = {
          af: r.af,
          protocol: r.protocol,
          flags,
          state,
          stateName: syncStateName(r.protocol, flags, state)!,
          cport: f.cport,
          vport: f.vport,
          dport: f.dport,
          fwmark: f.fwmark,
          timeoutSec: f.timeoutSec,
          caddr: f.caddr,
          vaddr: f.vaddr,
          daddr: f.daddr,
        };
        if (r.withSeq) conn.seq = { in: f.seqIn, out: f.seqOut };
        if (r.pe) conn.pe = { name: r.pe.name, data: r.pe.data };
        return conn;
      }),
  );

/** A record for examples: an ESTABLISHED masqueraded TCP connection unless `fields` say otherwise. */
export function exampleConn(
  fields: Partial<SyncConn> & Pick<SyncConn, 'caddr' | 'vaddr' | 'daddr'>,
): SyncConn {
  const merged = {
    af: fields.caddr.af,
    protocol: IPPROTO_TCP,
    flags: 0,
    state: 1,
    cport: 0,
    vport: 0,
    dport: 0,
    fwmark: 0,
    timeoutSec: 0,
    ...fields,
  };
  return { ...merged, stateName: syncStateName(merged.protocol, merged.flags, merged.state)! };
}

/** A DNS flow through the director (UDP, 300 s), 198.18.0.2 -> 198.18.0.1 -> 198.18.1.11 unless `fields` say otherwise. */
export function exampleUdp(fields: Partial<SyncConn> = {}): SyncConn {
  return exampleConn({
    protocol: IPPROTO_UDP,
    state: 0,
    cport: 5000,
    vport: 53,
    dport: 53,
    timeoutSec: 300,
    caddr: addr4(0xc6120002),
    vaddr: addr4(0xc6120001),
    daddr: addr4(0xc612010b),
    ...fields,
  });
}
