// lvsadm doctor's adapter side: nft's JSON ruleset read into chains, facts collected through fakes
// of lvsd and the host, the report printed and the exit status (0 no problem, 1 problems, 2 usage).

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseNftRuleset, runDoctor } from '../../src/cli/doctor.js';
import type { HostReader } from '../../src/cli/doctor.js';
import type { ControlApi } from '../../src/control/api.js';
import type { ProbeFact } from '../../src/core/doctor.js';
import { IPPROTO_TCP } from '../../src/core/inet.js';
import type { Snapshot } from '../../src/core/ops.js';
import { addrKey, dataPath, dest, service, snapshot } from '../helpers/snapshots.js';

// `nft -j list ruleset` of nftables 1.0.6 for a typical host firewall, and lvsd's own table.
const RULESET = JSON.stringify({
  nftables: [
    { metainfo: { version: '1.0.6', json_schema_version: 1 } },
    { table: { family: 'inet', name: 'fw', handle: 1 } },
    {
      chain: {
        family: 'inet',
        table: 'fw',
        name: 'fwd_chain',
        type: 'filter',
        hook: 'forward',
        prio: 0,
        policy: 'drop',
      },
    },
    { chain: { family: 'inet', table: 'fw', name: 'other' } },
    {
      chain: {
        family: 'inet',
        table: 'fw',
        name: 'in',
        type: 'filter',
        hook: 'input',
        prio: 0,
        policy: 'drop',
      },
    },
    {
      chain: {
        family: 'inet',
        table: 'lvsd',
        name: 'prerouting',
        type: 'filter',
        hook: 'prerouting',
        prio: -300,
        policy: 'accept',
      },
    },
    {
      rule: {
        family: 'inet',
        table: 'fw',
        chain: 'fwd_chain',
        expr: [
          { match: { op: 'in', left: { ct: { key: 'state' } }, right: ['established', 'related'] } },
          { accept: null },
        ],
      },
    },
    {
      rule: {
        family: 'inet',
        table: 'fw',
        chain: 'fwd_chain',
        expr: [
          {
            match: {
              op: '==',
              left: { payload: { protocol: 'ip', field: 'daddr' } },
              right: { prefix: { addr: '198.18.1.0', len: 24 } },
            },
          },
          {
            match: {
              op: '==',
              left: { payload: { protocol: 'tcp', field: 'dport' } },
              right: { set: [80, 443] },
            },
          },
          { counter: { packets: 0, bytes: 0 } },
          { accept: null },
        ],
      },
    },
    {
      rule: {
        family: 'inet',
        table: 'fw',
        chain: 'fwd_chain',
        expr: [{ match: { op: '==', left: { meta: { key: 'iifname' } }, right: 'eth9' } }, { drop: null }],
      },
    },
    {
      rule: {
        family: 'inet',
        table: 'fw',
        chain: 'fwd_chain',
        expr: [
          {
            match: { op: '==', left: { payload: { protocol: 'ip', field: 'saddr' } }, right: '198.18.1.11' },
          },
          { match: { op: '==', left: { payload: { protocol: 'tcp', field: 'sport' } }, right: 81 } },
          { reject: { type: 'icmp', expr: 'port-unreachable' } },
        ],
      },
    },
    { rule: { family: 'inet', table: 'fw', chain: 'fwd_chain', expr: [{ jump: { target: 'other' } }] } },
  ],
});

test("nft's JSON: only prerouting/forward chains outside lvsd's table; matches, prefixes, sets, verdicts", () => {
  const chains = parseNftRuleset(RULESET);
  assert.deepEqual(
    chains.map((c) => [c.name, c.hook, c.policy]),
    [['inet fw fwd_chain', 'forward', 'drop']],
  );
  const rules = chains[0]!.rules;
  assert.deepEqual(
    rules.map((r) => [r.text, r.verdict, r.opaque]),
    [
      ['ct state established,related accept', 'accept', false],
      ['ip daddr 198.18.1.0/24 tcp dport { 80, 443 } accept', 'accept', false],
      ['meta iifname eth9 drop', 'drop', true],
      ['ip saddr 198.18.1.11 tcp sport 81 reject', 'drop', false],
      ['jump', 'unknown', false],
    ],
  );
  assert.deepEqual(rules[1]!.matches, [
    { field: 'daddr', values: [{ prefix: '198.18.1.0', len: 24 }] },
    { field: 'dport', values: [80, 443] },
    { field: 'protocol', values: [6] },
  ]);
  assert.deepEqual(parseNftRuleset('not json'), []);
});

function fakes(probes: Record<string, ProbeFact>, ruleset: string | null = null) {
  const snap: Snapshot = snapshot(
    [service(addrKey(IPPROTO_TCP, '198.18.0.1', 80), [dest('198.18.1.11', 80), dest('198.18.1.12', 80)])],
    {
      connections: [],
      dataPath: dataPath({
        device: {
          rxPackets: 0,
          rxBytes: 0,
          txPackets: 0,
          txBytes: 0,
          drops: {
            verdict: 0,
            writeFailed: 0,
            exception: 0,
            queueFull: 0,
            noNeighbour: 0,
            noRoute: 0,
            badFrame: 0,
          },
        },
      }),
    },
  );
  const asked: string[] = [];
  const api = { snapshot: async () => snap } as unknown as ControlApi;
  const host: HostReader = {
    sysctl: async (path) => (/ip_forward$|forwarding$/.test(path) ? '1' : '0'),
    routeGet: async (addr) =>
      addr === '198.18.0.1' ? { dev: 'lo', type: 'local' } : { dev: 'br0', prefsrc: '198.18.1.1' },
    neighbours: async () => [],
    nftRuleset: async () => ruleset,
    probeTcp: async (addr, port) => {
      asked.push(`${addr}:${port}`);
      return probes[`${addr}:${port}`] ?? { result: 'open', ms: 2 };
    },
  };
  return { api, host, asked };
}

async function doctor(args: string[], f: ReturnType<typeof fakes>) {
  let stdout = '';
  let stderr = '';
  const status = await runDoctor(args, {
    ...f,
    stdout: (t) => (stdout += t),
    stderr: (t) => (stderr += t),
  });
  return { status, stdout, stderr };
}

test('a clean report exits 0 and probes every real server once', async () => {
  const f = fakes({});
  const r = await doctor([], f);
  assert.equal(r.status, 0);
  assert.deepEqual(f.asked.sort(), ['198.18.1.11:80', '198.18.1.12:80']);
  assert.match(
    r.stdout,
    /^lvsd doctor: no problem found\nhost:\n {2}ok \(forwarding, rp_filter, send_redirects\)\nTCP 198.18.0.1:80 {2}ok\n {2}-> 198.18.1.11:80 {2}ok\n/,
  );
});

test('problems exit 1, in text and in --json; a bad argument is a usage error (2) and nothing is probed', async () => {
  const f = fakes({ '198.18.1.12:80': { result: 'refused' } }, RULESET);
  const text = await doctor([], f);
  assert.equal(text.status, 1);
  assert.match(text.stdout, /^lvsd doctor: 1 problems, 1 warnings\n/);
  // The ruleset accepts client -> real server; the rest falls to policy drop past rules it cannot read.
  assert.match(
    text.stdout,
    /WARNING \[firewall\] the firewall chain inet fw fwd_chain \(hook forward\) drops/,
  );
  assert.match(
    text.stdout,
    /client -> 198.18.0.1:80: policy drop \(after 3 rules the doctor cannot evaluate\)/,
  );
  assert.doesNotMatch(text.stdout, /client -> 198.18.1.11:80/);
  assert.match(
    text.stdout,
    / {2}-> 198.18.1.12:80 {2}PROBLEM\n {7}PROBLEM \[refused\] refuses connections on port 80 \(RST\)/,
  );
  const json = await doctor(['--json'], f);
  assert.equal(json.status, 1);
  const report = JSON.parse(json.stdout) as {
    verdict: string;
    services: Array<{ dests: Array<{ verdict: string }> }>;
  };
  assert.equal(report.verdict, 'problem');
  assert.deepEqual(
    report.services[0]!.dests.map((d) => d.verdict),
    ['ok', 'problem'],
  );
  const bad = fakes({});
  const usage = await doctor(['--jsn'], bad);
  assert.deepEqual([usage.status, usage.stdout, usage.stderr], [2, '', 'Usage: lvsadm doctor [--json]\n']);
  assert.deepEqual(bad.asked, []);
});
