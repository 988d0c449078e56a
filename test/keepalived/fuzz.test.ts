// Fuzzing the keepalived.conf reader: whatever the bytes, it returns a model or an error at a
// line, never throws; and whatever it accepts, the director accepts too (no refusal after the fact).

import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { Director } from '../../src/core/director.js';
import { formatRules, NUMERIC_NAMES } from '../../src/ipvsadm/format.js';
import { emptyListFormat } from '../../src/ipvsadm/parse.js';
import { formatServices } from '../../src/keepalived/check.js';
import type { KeepalivedConfig } from '../../src/keepalived/model.js';
import { toControlOps } from '../../src/keepalived/ops.js';
import { readKeepalivedConf, type ReadResult } from '../../src/keepalived/read.js';
import { fakeFiles } from './fake-files.js';
import { FIXTURES, MAIN } from './helpers.js';

const INCLUDED = '/etc/keepalived/part.conf';

function readBytes(main: Uint8Array | string, part: string = 'weight 1\n'): ReadResult {
  return readKeepalivedConf(fakeFiles({ [MAIN]: main, [INCLUDED]: part }), MAIN, { configId: 'lb1' });
}

function assertWellFormed(result: ReadResult): void {
  if (result.ok) return;
  assert.equal(typeof result.error.message, 'string');
  assert.ok(result.error.message.length > 0);
  assert.ok(Number.isInteger(result.error.line) && result.error.line >= 0);
}

// One director for all runs (a fresh one per run costs its connection table), cleared each time.
const director = new Director({ clock: { now: () => 0 }, connHashBits: 4 });

/** The config's ops on an empty director: all must be accepted. */
function applyAll(config: KeepalivedConfig): Director {
  director.execute({ op: 'clear' });
  for (const op of toControlOps(config)) director.execute(op);
  return director;
}

const WORDS = [
  'virtual_server',
  'real_server',
  'virtual_server_group',
  'sorry_server',
  'global_defs',
  'vrrp_instance',
  'TCP_CHECK',
  'HTTP_GET',
  'SSL_GET',
  'MISC_CHECK',
  'UDP_CHECK',
  'DNS_CHECK',
  'PING_CHECK',
  'url',
  'path',
  'status_code',
  'digest',
  'protocol',
  'TCP',
  'UDP',
  'SCTP',
  'lb_algo',
  'rr',
  'wlc',
  'sh',
  'sh-port',
  'lb_kind',
  'NAT',
  'persistence_timeout',
  'persistence_granularity',
  'quorum',
  'hysteresis',
  'weight',
  'delay_loop',
  'retry',
  'connect_timeout',
  'connect_port',
  'inhibit_on_failure',
  'alpha',
  'omega',
  'ops',
  'fwmark',
  'group',
  'G',
  'misc_path',
  'notify_up',
  'lvs_timeouts',
  'tcp',
  'udp',
  'ip_family',
  'inet6',
  'include',
  'part.conf',
  '10.0.0.1',
  '10.0.0.1-3',
  '192.168.1.10',
  '2001:db8::1',
  '0',
  '1',
  '80',
  '65535',
  '70000',
  '0.5',
  '-1',
  'x',
  '{',
  '}',
  '{',
  '}',
  '"',
  "'",
  '#',
  '!',
  '\\',
  '$A=1',
  '$A',
  '${A}',
  '${_PWD}',
  '@lb1',
  '~SEQ(i,3)',
  '~SEQx(j, 2, 4)',
  '${i}',
  '@^lb1',
  '\n',
  '\n',
  '\n',
];

const tokens = fc.array(fc.constantFrom(...WORDS), { maxLength: 120 }).map((words) => words.join(' '));

test('arbitrary bytes: a model or an error at a line, never a throw', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 2000 }), (bytes) => {
      assertWellFormed(readBytes(bytes));
    }),
    { numRuns: 300 },
  );
});

test('keyword soup: never a throw, and the director takes whatever is accepted', () => {
  fc.assert(
    fc.property(tokens, tokens, (main, part) => {
      const result = readBytes(main, part);
      assertWellFormed(result);
      if (result.ok) applyAll(result.config);
    }),
    { numRuns: 1500 },
  );
});

const ADDRS = [
  '10.0.0.1',
  '10.0.0.2',
  '192.168.1.10',
  '192.168.1.11',
  '2001:db8::1',
  '2001:db8::2',
  '10.0.0.300',
];
const PORTS = ['', '0', '80', '8080', '65535', '65536'];
const VS_LINES = [
  'protocol TCP',
  'protocol UDP',
  'protocol SCTP',
  'lb_algo sh',
  'lb_algo mh',
  'lb_algo wrr',
  'sh-port',
  'mh-fallback',
  'flag-1',
  'ops',
  'persistence_timeout',
  'persistence_timeout 0',
  'persistence_timeout 2678400',
  'quorum 3',
  'hysteresis 9',
  'weight 2',
  'lb_kind NAT',
  'delay_loop 0.5',
  'persistence_granularity 255.255.0.0',
  'persistence_granularity 64',
  'persistence_engine sip',
  'sorry_server 10.9.9.9 0',
  'sorry_server_inhibit',
  'alpha',
  'omega',
  'ip_family inet6',
  'ip_family inet',
  'inhibit_on_failure',
  'virtualhost v.example',
];
const RS_LINES = [
  'weight 0',
  'weight 7',
  'weight 65535',
  'uthreshold 10',
  'lthreshold 20',
  'uthreshold 0',
  'inhibit_on_failure off',
  'notify_up "/bin/up a"',
  'retry 2',
  'TCP_CHECK {\n connect_port 81\n}',
  'HTTP_GET {\n url {\n path /\n }\n}',
  'MISC_CHECK {\n misc_path /bin/true\n}',
  'UDP_CHECK {\n}',
  'DNS_CHECK {\n type MX\n}',
  'PING_CHECK {\n}',
];

const realServer = fc
  .tuple(
    fc.constantFrom(...ADDRS),
    fc.constantFrom(...PORTS),
    fc.array(fc.constantFrom(...RS_LINES), { maxLength: 4 }),
  )
  .map(([addr, port, lines]) => `real_server ${addr} ${port} {\n${lines.join('\n')}\n}`);
const head = fc.oneof(
  fc.tuple(fc.constantFrom(...ADDRS), fc.constantFrom(...PORTS)).map(([a, p]) => `${a} ${p}`),
  fc.constantFrom('fwmark 1', 'fwmark 2', 'group G', 'group H'),
);
const virtualServer = fc
  .tuple(
    head,
    fc.array(fc.constantFrom(...VS_LINES), { maxLength: 6 }),
    fc.array(realServer, { maxLength: 4 }),
  )
  .map(([h, lines, servers]) => `virtual_server ${h} {\n${[...lines, ...servers].join('\n')}\n}`);
const globals = fc
  .array(fc.constantFrom('tcp 0', 'tcp 7200', 'tcpfin 2147483', 'udp 2147484', 'udp 2678400', 'tcp 1'), {
    maxLength: 3,
  })
  .map((opts) => (opts.length ? `global_defs {\n lvs_timeouts ${opts.join(' ')}\n lvs_flush\n}\n` : ''));
const structured = fc
  .tuple(globals, fc.array(virtualServer, { minLength: 1, maxLength: 3 }), fc.boolean())
  .map(
    ([defs, servers, group]) =>
      defs + (group ? 'virtual_server_group G {\n 10.1.0.1-3 80\n fwmark 9\n}\n' : '') + servers.join('\n'),
  );

test('structured configurations: the director takes every one that is accepted', () => {
  let accepted = 0;
  fc.assert(
    fc.property(structured, (text) => {
      const result = readBytes(text);
      assertWellFormed(result);
      if (result.ok && result.config.virtualServers.length > 0) {
        accepted++;
        applyAll(result.config);
      }
    }),
    { numRuns: 1500 },
  );
  assert.ok(accepted > 30, `only ${accepted} accepted`);
});

test('mutated real configurations: never a throw, the director takes whatever is accepted', () => {
  const sample = readFileSync(join(FIXTURES, 'keepalived-sample-virtual_server_group.conf'), 'utf8');
  fc.assert(
    fc.property(fc.nat(sample.length), fc.nat(40), fc.constantFrom(...WORDS), (at, cut, word) => {
      const text = sample.slice(0, at) + ' ' + word + ' ' + sample.slice(at + cut);
      const result = readBytes(text);
      assertWellFormed(result);
      if (result.ok) applyAll(result.config);
    }),
    { numRuns: 500 },
  );
});

function fixtureFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? [] : [path];
  });
}

test('every accepted fixture: the director lists exactly what check-config prints', () => {
  let accepted = 0;
  for (const path of fixtureFiles(FIXTURES)) {
    const result = readKeepalivedConf(fakeFiles({ [MAIN]: new Uint8Array(readFileSync(path)) }), MAIN, {
      configId: 'lb1',
    });
    if (!result.ok) continue;
    accepted++;
    const snapshot = applyAll(result.config).snapshot({ connections: false });
    const listed = formatRules(snapshot, { ...emptyListFormat(), numeric: true }, NUMERIC_NAMES, {
      thresholds: true,
    });
    assert.equal(formatServices(result.config), listed, path);
  }
  assert.ok(accepted >= 15, `only ${accepted} fixtures accepted`);
});
