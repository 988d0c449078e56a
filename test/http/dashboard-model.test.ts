// The dashboard's pure side: frames from snapshots, the event log from two frames, check history,
// the connection sample, and the checking of POST /api/action bodies.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { IPPROTO_TCP } from '../../src/core/inet.js';
import type { ConnSnapshot, DestChecks, Snapshot } from '../../src/core/ops.js';
import {
  actionOp,
  buildFrame,
  CHECK_HISTORY_LENGTH,
  CheckHistory,
  CONN_SAMPLE_ROWS,
  connSample,
  EventLog,
  frameEvents,
  parseActionRequest,
  serverId,
  serviceId,
} from '../../src/http/dashboard-model.js';
import type { Frame } from '../../src/http/dashboard-model.js';
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

const frame = (snap: Snapshot, time = 1000, sync = GOLDEN_SYNC_DAEMONS): Frame =>
  buildFrame(snap, sync, new CheckHistory(), { time, actions: true, connections: [] });

test('services and real servers are named as ipvsadm -Ln prints them', () => {
  assert.equal(serviceId(addrKey(IPPROTO_TCP, '198.18.0.1', 80)), 'TCP 198.18.0.1:80');
  assert.equal(serviceId(addrKey(17, '2001:db8::1', 53)), 'UDP [2001:db8::1]:53');
  assert.equal(serviceId(markKey(23, 4)), 'FWM 23');
  assert.equal(serviceId(markKey(23, 6)), 'FWM 23 IPv6');
  assert.equal(serverId(dest('2001:db8:0:1::11', 53)), '[2001:db8:0:1::11]:53');
});

test('a frame lists services in -Ln order with their real servers, weights, checks and totals', () => {
  const f = frame(GOLDEN_SNAPSHOT);
  assert.deepEqual(
    f.services.map((s) => s.id),
    [
      'TCP 198.18.0.1:80',
      'SCTP 198.18.0.1:9',
      'TCP [::ffff:198.18.0.5]:443',
      'UDP [2001:db8::1]:53',
      'FWM 23',
      'FWM 23 IPv6',
    ],
  );
  const web = f.services[0]!;
  assert.equal(web.persistentTimeout, 300);
  assert.equal(web.activeConns, 9);
  assert.equal(web.inactConns, 6);
  const drained = web.servers.find((s) => s.id === '198.18.1.12:80')!;
  assert.deepEqual(
    [drained.admin, drained.weight, drained.configuredWeight, drained.operatorWeight],
    ['drain', 0, 4, 2],
  );
  const checked = web.servers.find((s) => s.id === '198.18.1.11:80')!;
  assert.equal(checked.checks?.checkers.length, 2);
  assert.deepEqual(
    checked.history.map((r) => [r.kind, r.ok]),
    [
      ['HTTP_GET', true],
      ['TCP_CHECK', false],
    ],
  );
  assert.deepEqual(
    f.sync.map((d) => d.state),
    ['master', 'backup'],
  );
  assert.equal(f.connTable?.entries, 21);
  // JSON all the way (it goes out as server-sent events).
  assert.deepEqual(JSON.parse(JSON.stringify(f)), f);
});

function withDest(snap: Snapshot, svcIndex: number, destIndex: number, change: object): Snapshot {
  const copy = structuredClone(snap);
  Object.assign(copy.services[svcIndex]!.dests[destIndex]!, change);
  return copy;
}

test('the event log reads health, admin, weight, configuration and sync role changes from two frames', () => {
  const before = frame(GOLDEN_SNAPSHOT);
  assert.deepEqual(frameEvents(before, frame(GOLDEN_SNAPSHOT, 2000)), []);

  // GOLDEN_SNAPSHOT.services[1] is TCP 198.18.0.1:80; dests[1] is 198.18.1.11:80 (checked).
  const checks: DestChecks = {
    alive: false,
    checkers: [],
    lastChange: { up: false, reason: 'HTTP_GET timed out', time: 1 },
  };
  let next = withDest(GOLDEN_SNAPSHOT, 1, 1, { health: 'down', checks });
  next = withDest(next, 1, 0, { admin: 'ready', operatorWeight: null, configuredWeight: 5 });
  next.services.pop(); // TCP [::ffff:198.18.0.5]:443
  next.services.push(
    service(addrKey(IPPROTO_TCP, '198.18.0.9', 25), [dest('198.18.1.40', 25)], {
      settings: { scheduler: 'rr', flags: 0, timeout: 0, netmaskPrefix: 32, pe: null },
    }),
  );
  next.services[0]!.dests = []; // FWM 23 IPv6 loses its real server
  const events = frameEvents(before, frame(next, 2000, GOLDEN_SYNC_DAEMONS.slice(0, 1)));
  assert.deepEqual(
    events.map((e) => `${e.kind} ${e.text}`),
    [
      'health TCP 198.18.0.1:80 -> 198.18.1.11:80 is down (was up): HTTP_GET timed out',
      'admin TCP 198.18.0.1:80 -> 198.18.1.12:80 set to ready (was drain)',
      'config TCP 198.18.0.1:80 -> 198.18.1.12:80 configured weight 5 (was 4)',
      'weight TCP 198.18.0.1:80 -> 198.18.1.12:80 operator weight cleared (was 2)',
      'config service TCP 198.18.0.9:25 added (rr)',
      'config TCP 198.18.0.9:25 -> 198.18.1.40:25 added, weight 1',
      'config FWM 23 IPv6 -> 198.18.1.13:0 removed',
      'config service TCP [::ffff:198.18.0.5]:443 removed',
      'sync sync daemon backup on eth1 (id 7) stopped',
    ],
  );
  assert.ok(events.every((e) => e.time === 2000));
});

test('check history keeps each new result once, the last CHECK_HISTORY_LENGTH, and forgets removed servers', () => {
  const history = new CheckHistory();
  const checked = (time: number, ok: boolean): Snapshot =>
    snapshot([
      service(addrKey(IPPROTO_TCP, '198.18.0.1', 80), [
        dest('198.18.1.11', 80, {
          checks: {
            alive: ok,
            checkers: [
              {
                kind: 'TCP_CHECK',
                up: ok,
                last: { ok, code: ok ? 'ok' : 'refused', reason: '', durationMs: 1, time },
              },
            ],
            lastChange: null,
          },
        }),
      ]),
    ]);
  for (let t = 1; t <= 30; t++) {
    // Each result is seen in two frames (checks run slower than frames).
    history.update(checked(t, t % 3 !== 0).services);
    history.update(checked(t, t % 3 !== 0).services);
  }
  const kept = history.update(checked(30, true).services).get('TCP 198.18.0.1:80 198.18.1.11:80')!;
  assert.equal(kept.length, CHECK_HISTORY_LENGTH);
  assert.deepEqual(
    kept.map((r) => r.time),
    Array.from({ length: CHECK_HISTORY_LENGTH }, (_, i) => 11 + i),
  );
  assert.equal(kept.find((r) => r.time === 12)?.ok, false);
  assert.equal(history.update([]).size, 0);
});

function conn(i: number, template = false): ConnSnapshot {
  return {
    af: 4,
    protocol: template ? 0 : IPPROTO_TCP,
    caddr: ip('198.18.2.1'),
    cport: 40000 + i,
    vaddr: ip('198.18.0.1'),
    vport: 80,
    daddr: ip('198.18.1.11'),
    dport: 80,
    state: template ? 'NONE' : 'ESTABLISHED',
    expiresMs: i * 1000,
    template,
  };
}

test('the connection sample: connections before templates, longest-lived first, at most CONN_SAMPLE_ROWS', () => {
  const page = [conn(1, true), ...Array.from({ length: 80 }, (_, i) => conn(i + 2))];
  const sample = connSample(page);
  assert.equal(sample.rows.length, CONN_SAMPLE_ROWS);
  assert.deepEqual(sample.rows[0], {
    proto: 'TCP',
    client: '198.18.2.1:40081',
    virtual: '198.18.0.1:80',
    server: '198.18.1.11:80',
    state: 'ESTABLISHED',
    expiresS: 81,
  });
  assert.equal(sample.sampledFrom, 81);
  assert.ok(!sample.rows.some((r) => r.proto === 'template'));
  // A frame carries the sample of the page it was given.
  const f = buildFrame(GOLDEN_SNAPSHOT, [], new CheckHistory(), {
    time: 1,
    actions: false,
    connections: page,
  });
  assert.deepEqual(f.connections, sample);
  assert.deepEqual(connSample([]), { rows: [], sampledFrom: 0 });
  assert.deepEqual(connSample([conn(3, true)]).rows[0]!.proto, 'template');
});

test('the event log keeps its last entries', () => {
  const log = new EventLog(3);
  for (let i = 0; i < 5; i++) log.push({ time: i, kind: 'config', text: String(i) });
  assert.deepEqual(
    log.list().map((e) => e.text),
    ['2', '3', '4'],
  );
});

test('action bodies: the five actions are taken; anything else is refused saying why', () => {
  const target = { service: 'TCP 198.18.0.1:80', server: '198.18.1.11:80' };
  assert.deepEqual(parseActionRequest({ ...target, action: 'drain' }), { ...target, action: 'drain' });
  assert.deepEqual(parseActionRequest({ ...target, action: 'set-weight', weight: 0 }), {
    ...target,
    action: 'set-weight',
    weight: 0,
  });
  for (const [body, error] of [
    [null, /not a JSON object/],
    [[1], /not a JSON object/],
    [{ ...target, action: 'delete' }, /action: one of drain, ready, maint, set-weight, clear-weight/],
    [{ ...target, action: 'set-weight' }, /weight: a whole number/],
    [{ ...target, action: 'set-weight', weight: 65536 }, /weight/],
    [{ ...target, action: 'set-weight', weight: 1.5 }, /weight/],
    [{ ...target, action: 'drain', weight: 3 }, /only for set-weight/],
    [{ ...target, action: 'drain', endConnections: true }, /unknown field "endConnections"/],
    [{ server: target.server, action: 'drain' }, /service:/],
  ] as const) {
    const result = parseActionRequest(body);
    assert.ok('error' in result, JSON.stringify(body));
    assert.match(result.error, error);
  }
});

test('any JSON body gives an action or an error, never a throw', () => {
  fc.assert(
    fc.property(fc.jsonValue(), (value) => {
      const result = parseActionRequest(value);
      assert.ok(
        'error' in result ||
          ['drain', 'ready', 'maint', 'set-weight', 'clear-weight'].includes(result.action),
      );
    }),
  );
});

test('an action becomes set-dest-runtime on the real server with those names, or null', () => {
  const op = actionOp(GOLDEN_SNAPSHOT, {
    service: 'TCP 198.18.0.1:80',
    server: '198.18.1.11:80',
    action: 'maint',
  });
  assert.deepEqual(op, {
    op: 'set-dest-runtime',
    key: addrKey(IPPROTO_TCP, '198.18.0.1', 80),
    addr: ip('198.18.1.11'),
    port: 80,
    change: { admin: 'maint' },
  });
  const weight = actionOp(GOLDEN_SNAPSHOT, {
    service: 'FWM 23',
    server: '198.18.1.13:0',
    action: 'set-weight',
    weight: 9,
  });
  assert.deepEqual(weight && 'change' in weight ? weight.change : null, { operatorWeight: 9 });
  const clear = actionOp(GOLDEN_SNAPSHOT, {
    service: 'FWM 23',
    server: '198.18.1.13:0',
    action: 'clear-weight',
  });
  assert.deepEqual(clear && 'change' in clear ? clear.change : null, { operatorWeight: null });
  assert.equal(
    actionOp(GOLDEN_SNAPSHOT, { service: 'TCP 198.18.0.1:80', server: '198.18.1.99:80', action: 'drain' }),
    null,
  );
  assert.equal(
    actionOp(GOLDEN_SNAPSHOT, { service: 'TCP 198.18.0.1:81', server: '198.18.1.11:80', action: 'drain' }),
    null,
  );
});
