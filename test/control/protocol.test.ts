import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { decodeRequest } from '../../src/control/protocol.js';

const key = { af: 4, protocol: 6, addr: { af: 4, a: 3323068417, b: 0, c: 0, d: 0 }, port: 80, fwmark: 0 };
const settings = { scheduler: 'rr', flags: 0, timeout: 0, netmaskPrefix: 32, pe: null };

test('a valid request is rebuilt field by field', () => {
  const line = JSON.stringify({
    v: 1,
    id: 7,
    op: 'execute',
    command: { op: 'add-service', key, settings, extra: 'dropped' },
  });
  const decoded = decodeRequest(line);
  assert.ok('request' in decoded);
  assert.deepEqual(decoded.request, {
    v: 1,
    id: 7,
    op: 'execute',
    command: { op: 'add-service', key, settings },
  });
});

test('a page of connections is asked for by slot and size', () => {
  const decoded = decodeRequest(JSON.stringify({ v: 1, id: 3, op: 'connections', from: 8192, limit: 4096 }));
  assert.deepEqual(decoded, { request: { v: 1, id: 3, op: 'connections', from: 8192, limit: 4096 } });
});

test('bad requests are refused with a reason, keeping the id when readable', () => {
  const refuse = (body: unknown) => {
    const decoded = decodeRequest(JSON.stringify(body));
    assert.ok('error' in decoded, JSON.stringify(body));
    return decoded;
  };
  assert.equal(refuse({ v: 2, id: 1, op: 'snapshot', connections: false }).id, 1);
  refuse({ v: 1, op: 'snapshot', connections: false });
  refuse({ v: 1, id: 1, op: 'snapshot', connections: 'yes' });
  refuse({ v: 1, id: 1, op: 'reboot' });
  for (const page of [
    { from: -1, limit: 10 },
    { from: 0, limit: 0 },
    { from: 0, limit: 4097 },
    { from: '0', limit: 10 },
    { limit: 10 },
  ]) {
    refuse({ v: 1, id: 1, op: 'connections', ...page });
  }
  refuse({
    v: 1,
    id: 1,
    op: 'execute',
    command: { op: 'add-service', key: { ...key, port: 70000 }, settings },
  });
  refuse({
    v: 1,
    id: 1,
    op: 'execute',
    command: { op: 'add-service', key: { ...key, fwmark: 3 }, settings },
  });
  refuse({
    v: 1,
    id: 1,
    op: 'execute',
    command: { op: 'add-service', key, settings: { ...settings, flags: 2 } },
  });
  refuse({
    v: 1,
    id: 1,
    op: 'execute',
    command: { op: 'add-service', key, settings: { ...settings, netmaskPrefix: 33 } },
  });
  refuse({
    v: 1,
    id: 1,
    op: 'execute',
    command: {
      op: 'add-dest',
      key,
      addr: key.addr,
      port: 1,
      settings: { method: 'nat', weight: 1, uThreshold: 0, lThreshold: 0 },
    },
  });
  refuse({
    v: 1,
    id: 1,
    op: 'execute',
    command: { op: 'set-timeouts', timeouts: { tcp: -1, tcpfin: 0, udp: 0 } },
  });
  refuse({ v: 1, id: 1, op: 'start-sync', config: { state: 'master' } });
  assert.deepEqual(decodeRequest('{not json'), { error: 'request is not JSON', id: null });
});

test('random JSON and random text never throw', () => {
  fc.assert(
    fc.property(
      fc.oneof(
        fc.json(),
        fc.string(),
        fc.jsonValue().map((v) => JSON.stringify({ v: 1, id: 1, op: 'execute', command: v })),
      ),
      (line) => {
        const decoded = decodeRequest(line);
        assert.ok('request' in decoded || typeof decoded.error === 'string');
      },
    ),
    { numRuns: 5000 },
  );
});

test('set-dest-runtime is rebuilt field by field and refused when malformed', () => {
  const addr = { af: 4, a: 3323068683, b: 0, c: 0, d: 0 };
  const execute = (command: unknown) =>
    decodeRequest(JSON.stringify({ v: 1, id: 3, op: 'execute', command }));
  const base = { op: 'set-dest-runtime', key, addr, port: 80 };
  const good = execute({ ...base, change: { admin: 'drain', operatorWeight: null, extra: 1 } });
  assert.ok('request' in good);
  assert.deepEqual(good.request, {
    v: 1,
    id: 3,
    op: 'execute',
    command: { ...base, change: { admin: 'drain', operatorWeight: null } },
  });
  const ended = execute({ ...base, change: { health: 'down' }, endConnections: true });
  assert.ok('request' in ended);
  assert.deepEqual(ended.request.op === 'execute' && ended.request.command, {
    ...base,
    change: { health: 'down' },
    endConnections: true,
  });
  for (const change of [
    {},
    { admin: 'sleep' },
    { health: 'sick' },
    { operatorWeight: -1 },
    { operatorWeight: 70000 },
    { dynamicWeight: 'high' },
    null,
  ])
    assert.ok('error' in execute({ ...base, change }), JSON.stringify(change));
  assert.ok('error' in execute({ ...base, change: { admin: 'drain' }, endConnections: 'yes' }));
});
