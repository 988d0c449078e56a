// Any table the director can hold renders as an exposition Prometheus accepts: no duplicate series
// (fwmark services of both families, mixed-family real servers), promtool finds nothing to say.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { addr4, addr6, IPPROTO_SCTP, IPPROTO_TCP, IPPROTO_UDP } from '../../src/core/inet.js';
import type { Addr } from '../../src/core/inet.js';
import type { ServiceKey } from '../../src/core/model.js';
import type { Snapshot } from '../../src/core/ops.js';
import { renderMetrics } from '../../src/http/metrics.js';
import { dataPath, dest, rates, service, snapshot, stats } from '../helpers/snapshots.js';
import { promtoolCheck, PROMTOOL_SKIP } from './helpers.js';

const BUILD = { version: '0.0.0', nodeVersion: 'v20.0.0' };
const u32 = fc.integer({ min: 0, max: 0xffffffff });
// Few distinct values, so that keys collide where they can.
const v4 = fc.constantFrom(0xc6120001, 0xc6120002, 0x7f000001).map(addr4);
const v6 = fc.oneof(
  fc.tuple(u32, u32, u32, u32).map(([a, b, c, d]) => addr6(a, b, c, d)),
  fc.constantFrom(addr6(0x20010db8, 0, 0, 1), addr6(0, 0, 0xffff, 0xc6120001), addr6(0, 0, 0, 0)),
);
const anyAddr = fc.oneof(v4, v6);
const PORT = fc.constantFrom(0, 80, 443, 65535);
const counter = fc.oneof(fc.nat(), fc.constant(2 ** 53 + 2), fc.maxSafeNat());

const key: fc.Arbitrary<ServiceKey> = fc.oneof(
  fc
    .record({
      addr: anyAddr,
      protocol: fc.constantFrom(IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP),
      port: PORT,
    })
    .map(({ addr, protocol, port }) => ({ af: addr.af, protocol, addr, port, fwmark: 0 })),
  fc
    .record({ af: fc.constantFrom(4 as const, 6 as const), fwmark: fc.constantFrom(1, 23, 0xffffffff) })
    .map(({ af, fwmark }) => ({
      af,
      protocol: 0 as const,
      addr: af === 4 ? addr4(0) : addr6(0, 0, 0, 0),
      port: 0,
      fwmark,
    })),
);

const destArb = fc
  .record({
    addr: anyAddr,
    port: PORT,
    weight: fc.integer({ min: 0, max: 65535 }),
    active: fc.nat(),
    conns: counter,
    bytes: counter,
    cps: fc.nat(),
  })
  .map((r) =>
    dest('0.0.0.0', r.port, {
      addr: r.addr,
      weight: r.weight,
      activeConns: r.active,
      stats: stats(r.conns, r.conns, r.conns, r.bytes, r.bytes),
      rates: rates(r.cps),
    }),
  );

const addrId = (a: Addr) => `${a.af}:${a.a}:${a.b}:${a.c}:${a.d}`;
const keyId = (k: ServiceKey) => `${k.af}/${k.protocol}/${addrId(k.addr)}/${k.port}/${k.fwmark}`;

const snapshotArb: fc.Arbitrary<Snapshot> = fc
  .tuple(
    fc.uniqueArray(
      fc.record({
        key,
        dests: fc.uniqueArray(destArb, { selector: (d) => `${addrId(d.addr)}/${d.port}`, maxLength: 4 }),
        scheduler: fc.string({ maxLength: 8 }),
      }),
      { selector: (s) => keyId(s.key), maxLength: 6 },
    ),
    fc.dictionary(fc.string({ minLength: 1, maxLength: 12 }), fc.nat()),
  )
  .map(([services, drops]) =>
    snapshot(
      services.map((s) =>
        service(s.key, s.dests, {
          settings: { scheduler: s.scheduler, flags: 0, timeout: 0, netmaskPrefix: 32, pe: null },
        }),
      ),
      { dataPath: dataPath({ drops }) },
    ),
  );

/** name{labels} of every sample line. */
function seriesIds(text: string): string[] {
  return text
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('#'))
    .map((line) => line.slice(0, line.lastIndexOf(' ')));
}

test('every series of any table appears once', () => {
  fc.assert(
    fc.property(snapshotArb, (snap) => {
      const ids = seriesIds(renderMetrics(snap, BUILD));
      assert.equal(new Set(ids).size, ids.length);
    }),
    { numRuns: 300 },
  );
});

test('promtool accepts the exposition of any table', { skip: PROMTOOL_SKIP }, () => {
  fc.assert(
    fc.property(snapshotArb, (snap) => {
      assert.deepEqual(promtoolCheck(renderMetrics(snap, BUILD)), { status: 0, output: '' });
    }),
    { numRuns: 25 },
  );
});
