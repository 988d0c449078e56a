// The saved connection table file: what is written reads back the same; anything cut, changed or
// foreign is refused whole with a reason; a failing disk leaves no half-written table behind.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  ConnTableError,
  ConnTableStore,
  CONN_TABLE_FILE_NAME,
  decodeConnTable,
  encodeConnTable,
} from '../../src/control/conn-table.js';
import { nodeStateFs, type StateFs } from '../../src/control/state-file.js';
import { parseAddr } from '../../src/core/inet.js';
import type { ConnRecord } from '../../src/core/ops.js';
import { removeDir, tempDir } from '../cli/daemon-harness.js';
import { FaultyStateFs } from './faulty-state-fs.js';

const service = { af: 4 as const, protocol: 6 as const, addr: parseAddr('198.18.0.1')!, port: 80, fwmark: 0 };

function record(cport: number, overrides: Partial<ConnRecord> = {}): ConnRecord {
  return {
    service,
    af: 4,
    protocol: 6,
    caddr: parseAddr('198.18.0.2')!,
    cport,
    vaddr: parseAddr('198.18.0.1')!,
    vport: 80,
    daddr: parseAddr('198.18.1.11')!,
    dport: 80,
    state: 'ESTABLISHED',
    expiresMs: 899_000,
    template: false,
    ...overrides,
  };
}

const records: ConnRecord[] = [
  record(40000),
  record(0, { cport: 0, vport: 0, state: 'NONE', template: true, expiresMs: 300_000 }),
  record(5353, {
    protocol: 17,
    service: { ...service, protocol: 17, port: 53 },
    vport: 53,
    dport: 53,
    state: 'UDP',
  }),
  record(41000, {
    af: 6,
    caddr: parseAddr('2001:db8::2')!,
    vaddr: parseAddr('2001:db8::1')!,
    daddr: parseAddr('2001:db8:1::11')!,
    service: { ...service, af: 6, addr: parseAddr('2001:db8::1')! },
  }),
];
const SAVED = { savedAtMs: 1_800_000_000_000, records };
const FILE = '/state/connections.json';

function refused(text: string, reason: RegExp): void {
  assert.throws(
    () => decodeConnTable(FILE, text),
    (err: unknown) => err instanceof ConnTableError && err.file === FILE && reason.test(err.reason),
  );
}

/** The file with its body or header fields replaced and its checksum made to match (as a forger would). */
function resealed(body: string, header: Record<string, unknown> = {}): string {
  const head = JSON.parse(encodeConnTable(SAVED).split('\n')[0]!) as Record<string, unknown>;
  const count = body === '' ? 0 : body.split('\n').length - 1;
  const fields: Record<string, unknown> = { ...head, bytes: Buffer.byteLength(body), count, ...header };
  const sha256 = createHash('sha256')
    .update(JSON.stringify([fields.format, fields.version, fields.savedAt, fields.count, fields.bytes]))
    .update('\n')
    .update(body)
    .digest('hex');
  return `${JSON.stringify({ ...fields, sha256 })}\n${body}`;
}

test('a saved table reads back as it was written', () => {
  assert.deepEqual(decodeConnTable(FILE, encodeConnTable(SAVED)), SAVED);
  assert.deepEqual(decodeConnTable(FILE, encodeConnTable({ savedAtMs: 0, records: [] })), {
    savedAtMs: 0,
    records: [],
  });
});

test('time left is saved in whole milliseconds (the data plane counts fractions)', () => {
  const [first] = decodeConnTable(
    FILE,
    encodeConnTable({ savedAtMs: 5, records: [record(1, { expiresMs: 1234.56 })] }),
  ).records;
  assert.equal(first!.expiresMs, 1235);
});

test('a cut, changed or foreign file is refused, naming what is wrong', () => {
  const text = encodeConnTable(SAVED);
  const body = text.slice(text.indexOf('\n') + 1);
  refused('', /no header line/);
  refused('{"format":\n', /header is not JSON/);
  refused(text.slice(0, -10), /bytes long where its header says/);
  refused(text.replace('ESTABLISHED', 'ESTABLISHEE'), /checksum does not match/);
  refused(text.replace(`"savedAt":${SAVED.savedAtMs}`, `"savedAt":${SAVED.savedAtMs - 9000}`), /checksum/);
  refused(resealed(body, { version: 2 }), /version 2 is not 1/);
  refused(resealed(body, { format: 'lvsd-host-journal' }), /not a lvsd-connections file/);
  refused(resealed(body, { count: 3 }), /holds 4 records where its header says 3/);
  refused(resealed(body, { savedAt: -1 }), /save time is not a time/);
  refused(resealed(body.slice(0, -1)), /last record is cut short/);
  // Well sealed, but not what lvsd writes: each record is checked field by field.
  const lines = body.split('\n');
  const edit = (change: (r: Record<string, unknown>) => void) => {
    const r = JSON.parse(lines[0]!) as Record<string, unknown>;
    change(r);
    return resealed([JSON.stringify(r), ...lines.slice(1)].join('\n'));
  };
  refused(
    edit((r) => (r.caddr = '198.18.0.256')),
    /record 1: an address is invalid/,
  );
  refused(
    edit((r) => (r.caddr = '2001:db8::2')),
    /record 1: an address is invalid/,
  );
  refused(
    edit((r) => (r.cport = 65536)),
    /record 1: a port is invalid/,
  );
  refused(
    edit((r) => (r.state = 'LISTENING')),
    /record 1: state "LISTENING" is unknown/,
  );
  refused(
    edit((r) => (r.state = 'NONE')),
    /record 1: state NONE is not a connection's/,
  );
  refused(
    edit((r) => (r.expiresMs = -5)),
    /record 1: expiresMs is not a time left/,
  );
  refused(
    edit((r) => (r.argv = ['reboot'])),
    /record 1: unknown field argv/,
  );
  refused(
    edit((r) => delete r.template),
    /record 1: missing field template/,
  );
  refused(
    edit((r) => ((r.service as Record<string, unknown>).fwmark = -1)),
    /service fwmark is invalid/,
  );
  refused(resealed(`[1,2,3]\n${lines.slice(1).join('\n')}`), /record 1: not an object/);
});

test('any single change or cut of the file is refused, or reads back the very same table', () => {
  const text = encodeConnTable(SAVED);
  fc.assert(
    fc.property(
      fc.nat({ max: text.length - 1 }),
      fc.oneof(fc.constant(null), fc.integer({ min: 32, max: 126 })),
      (at, char) => {
        const mutated =
          char === null
            ? text.slice(0, at)
            : text.slice(0, at) + String.fromCharCode(char) + text.slice(at + 1);
        try {
          assert.deepEqual(decodeConnTable(FILE, mutated), SAVED);
        } catch (err) {
          if (!(err instanceof ConnTableError)) throw err;
        }
      },
    ),
    { numRuns: 2000 },
  );
});

test('the store saves atomically, reads once, and sets a refused file aside', async () => {
  const dir = await tempDir();
  try {
    const store = new ConnTableStore(dir);
    assert.equal(await store.read(), null, 'no table: nothing to take');
    await store.save(SAVED);
    assert.deepEqual(await store.read(), SAVED);
    await store.taken();
    assert.equal(existsSync(store.file), false, 'a table is taken once');

    await writeFile(store.file, 'garbage');
    await assert.rejects(
      store.read(),
      /refusing the connection table .*connections\.json: it has no header line/,
    );
    assert.equal(existsSync(store.file), false);
    assert.equal(await readFile(`${store.file}.refused`, 'utf8'), 'garbage', 'kept for the operator');
  } finally {
    await removeDir(dir);
  }
});

test('a full disk leaves no table and no temporary file; the old table, if any, stays whole', async () => {
  const dir = await tempDir();
  try {
    const fs = new FaultyStateFs();
    const store = new ConnTableStore(dir, fs);
    fs.failing = 'write';
    await assert.rejects(store.save(SAVED), /ENOSPC/);
    assert.deepEqual(await readdir(dir), []);
    fs.failing = null;
    await store.save({ savedAtMs: 1, records: records.slice(0, 1) });
    fs.failing = 'rename';
    await assert.rejects(store.save(SAVED), /EIO/);
    assert.deepEqual(await readdir(dir), [CONN_TABLE_FILE_NAME]);
    assert.deepEqual(await new ConnTableStore(dir).read(), { savedAtMs: 1, records: records.slice(0, 1) });
  } finally {
    await removeDir(dir);
  }
});

test('a table that cannot be read, or cannot be removed once read, is not taken', async () => {
  const dir = await tempDir();
  try {
    await new ConnTableStore(dir).save(SAVED);
    const unreadable: StateFs = {
      ...nodeStateFs,
      readFile: async () => {
        throw Object.assign(new Error('EIO: i/o error, read'), { code: 'EIO' });
      },
    };
    await assert.rejects(new ConnTableStore(dir, unreadable).read(), /cannot read it: EIO/);
    const file = join(dir, CONN_TABLE_FILE_NAME);
    assert.equal(existsSync(`${file}.refused`), true);

    await new ConnTableStore(dir).save(SAVED);
    const stuck: StateFs = {
      ...nodeStateFs,
      unlink: async () => {
        throw Object.assign(new Error('EROFS: read-only file system, unlink'), { code: 'EROFS' });
      },
    };
    const store = new ConnTableStore(dir, stuck);
    assert.deepEqual(await store.read(), SAVED);
    await assert.rejects(store.taken(), /cannot remove it once read: EROFS/);
  } finally {
    await removeDir(dir);
  }
});
