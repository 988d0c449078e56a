import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { test } from 'node:test';
import { IPPROTO_TCP } from '../../src/core/inet.js';
import { addressLabel, markLabel, renderMetrics, SERIES } from '../../src/http/metrics.js';
import { dataPath, stats } from '../helpers/snapshots.js';
import {
  addrKey,
  dest,
  GOLDEN_SNAPSHOT,
  GOLDEN_SYNC_DAEMONS,
  ip,
  markKey,
  service,
  snapshot,
} from './fixtures.js';
import { promtoolCheck, PROMTOOL_SKIP } from './helpers.js';

const BUILD = { version: '1.2.3', nodeVersion: 'v20.0.0' };
const GOLDEN = new URL('../../../test/http/metrics.golden.txt', import.meta.url);

/** The sample lines of one series. */
function lines(text: string, name: string): string[] {
  return text.split('\n').filter((line) => line.startsWith(`${name}{`) || line.startsWith(`${name} `));
}

test('the exposition of a hand-built snapshot matches test/http/metrics.golden.txt', () => {
  const text = renderMetrics(GOLDEN_SNAPSHOT, BUILD, GOLDEN_SYNC_DAEMONS);
  if (process.env.UPDATE_GOLDEN) writeFileSync(GOLDEN, text);
  assert.equal(text, readFileSync(GOLDEN, 'utf8'));
});

test('promtool accepts the exposition: no parse errors, no lint problems', { skip: PROMTOOL_SKIP }, () => {
  assert.deepEqual(promtoolCheck(renderMetrics(GOLDEN_SNAPSHOT, BUILD, GOLDEN_SYNC_DAEMONS)), {
    status: 0,
    output: '',
  });
});

test("node_ipvs_* label values are node_exporter's", () => {
  assert.equal(addressLabel(ip('2001:db8:0:0:1:0:0:1')), '2001:db8::1:0:0:1');
  assert.equal(addressLabel(ip('2001:0db8:0000:0000:0000:0000:0000:0001')), '2001:db8::1');
  assert.equal(addressLabel(ip('::')), '::');
  // Go's net.IP prints an IPv4-mapped address as IPv4.
  assert.equal(addressLabel(ip('::ffff:10.1.2.3')), '10.1.2.3');
  assert.equal(markLabel(23), '00000017');
  assert.equal(markLabel(0xabcdef), '00ABCDEF');
  assert.equal(markLabel(0xffffffff), 'FFFFFFFF');

  const text = renderMetrics(GOLDEN_SNAPSHOT, BUILD);
  assert.deepEqual(lines(text, 'node_ipvs_backend_weight'), [
    'node_ipvs_backend_weight{local_address="198.18.0.1",local_mark="",local_port="80",proto="TCP",remote_address="198.18.1.11",remote_port="80"} 3',
    'node_ipvs_backend_weight{local_address="198.18.0.1",local_mark="",local_port="80",proto="TCP",remote_address="198.18.1.12",remote_port="80"} 0',
    'node_ipvs_backend_weight{local_address="198.18.0.5",local_mark="",local_port="443",proto="TCP",remote_address="198.18.1.21",remote_port="8443"} 1',
    'node_ipvs_backend_weight{local_address="2001:db8::1",local_mark="",local_port="53",proto="UDP",remote_address="2001:db8:0:1::11",remote_port="53"} 7',
    // fwmark 23 of both families, one real server: one row, summed as node_exporter does (2 + 0
    // for the IPv4 service's, failed and inhibited); the unscheduled 2001:db8:0:1::12 is not listed.
    'node_ipvs_backend_weight{local_address="",local_mark="00000017",local_port="0",proto="FWM",remote_address="198.18.1.13",remote_port="0"} 2',
  ]);
  // The kernel's totals count SCTP; its per-backend rows leave SCTP out (procfs).
  assert.deepEqual(lines(text, 'node_ipvs_connections_total'), ['node_ipvs_connections_total 164']);
  assert.ok(!/node_ipvs_backend\S*proto="SCTP"/.test(text));
  assert.match(text, /lvsd_server_weight\{[^}]*proto="SCTP"[^}]*\} 5/);
});

test('counters past 2^53 print exactly', () => {
  const text = renderMetrics(GOLDEN_SNAPSHOT, BUILD);
  assert.match(
    text,
    /^lvsd_server_outgoing_bytes_total\{[^}]*remote_address="198\.18\.1\.12"[^}]*\} 9007199254740994$/m,
  );
  // (2^53 + 2) + 9,000,000 + 300 + 1001: odd, so no double holds it; the total is summed exactly.
  assert.match(text, /^node_ipvs_outgoing_bytes_total 9007199263742295$/m);
});

test('u64 counters print every digit and the node_ipvs totals wrap at 2^64, as the kernel total', () => {
  const max = 2n ** 64n - 1n;
  const text = renderMetrics(
    snapshot([
      service(addrKey(IPPROTO_TCP, '198.18.0.1', 80), [dest('198.18.1.11', 80, { stats: stats(max) })], {
        stats: stats(max),
      }),
      service(addrKey(IPPROTO_TCP, '198.18.0.2', 80), [], { stats: stats(2n ** 53n + 1n) }),
    ]),
    BUILD,
  );
  assert.match(text, /^lvsd_server_connections_total\{[^}]*\} 18446744073709551615$/m);
  assert.match(
    text,
    /^lvsd_service_connections_total\{[^}]*local_address="198\.18\.0\.2"[^}]*\} 9007199254740993$/m,
  );
  assert.match(text, /^node_ipvs_connections_total 9007199254740992$/m, '(2^64 - 1) + (2^53 + 1) - 2^64');
});

test('only what the snapshot has: no services, no drops, no persistence means no such series', () => {
  const text = renderMetrics(snapshot([service(addrKey(IPPROTO_TCP, '198.18.0.1', 80), [])]), BUILD);
  for (const name of [
    'node_ipvs_backend_weight',
    'lvsd_server_weight',
    'lvsd_datapath_dropped_packets_total',
  ]) {
    assert.deepEqual(lines(text, name), [], name);
  }
  assert.deepEqual(lines(text, 'lvsd_service_persistence_timeout_seconds'), []);
  assert.equal(lines(text, 'lvsd_service_info').length, 1);
  assert.deepEqual(lines(text, 'node_ipvs_connections_total'), ['node_ipvs_connections_total 0']);
});

test(
  'label values from the snapshot are escaped (a drop reason, a scheduler name)',
  { skip: PROMTOOL_SKIP },
  () => {
    const odd = snapshot(
      [
        service(markKey(1, 4), [dest('198.18.1.1', 0)], {
          settings: { scheduler: 'my"sched\\\n', flags: 0, timeout: 0, netmaskPrefix: 32, pe: null },
        }),
      ],
      { dataPath: dataPath({ drops: { 'we"ird\nreason\\': 2 } }) },
    );
    const text = renderMetrics(odd, BUILD);
    assert.match(text, /^lvsd_datapath_dropped_packets_total\{reason="we\\"ird\\nreason\\\\"\} 2$/m);
    assert.match(text, /scheduler="my\\"sched\\\\\\n"/);
    assert.deepEqual(promtoolCheck(text), { status: 0, output: '' });
  },
);

test('docs/metrics.md documents every series with its type, and only those', () => {
  const doc = readFileSync(new URL('../../../docs/metrics.md', import.meta.url), 'utf8');
  const rows = [...doc.matchAll(/^\| `((?:node_ipvs|lvsd)_[a-z_]+)` +\| (counter|gauge) +\|/gm)];
  assert.deepEqual(
    rows.map((m) => `${m[1]} ${m[2]}`).sort(),
    SERIES.map((s) => `${s.name} ${s.type}`).sort(),
  );
});
