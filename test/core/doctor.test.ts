// The doctor's diagnosis as a pure function of facts: each check on the facts that make it fire,
// the same facts with the fault taken away giving a clean verdict, and the firewall evaluation.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { chainVerdict, diagnose, ruleMatches } from '../../src/core/doctor.js';
import type { DoctorFacts, FirewallChain, FirewallRule, FlowFact } from '../../src/core/doctor.js';
import { IPPROTO_TCP, IPPROTO_UDP } from '../../src/core/inet.js';
import type { ConnSnapshot } from '../../src/core/ops.js';
import { addrKey, dataPath, dest, ip, service, snapshot, stats } from '../helpers/snapshots.js';

const VIP = '198.18.0.1';
const RS1 = '198.18.1.11';
const RS2 = '198.18.1.12';

function conn(caddr: string, daddr: string, state: string): ConnSnapshot {
  return {
    af: 4,
    protocol: IPPROTO_TCP,
    caddr: ip(caddr),
    cport: 40000,
    vaddr: ip(VIP),
    vport: 80,
    daddr: ip(daddr),
    dport: 80,
    state,
    expiresMs: 50_000,
    template: false,
  };
}

/** The healthy lab as the collector sees it; each test breaks one thing. */
function healthy(): DoctorFacts {
  return {
    snapshot: snapshot(
      [
        service(addrKey(IPPROTO_TCP, VIP, 80), [
          dest(RS1, 80, { stats: stats(2, 12, 10) }),
          dest(RS2, 80, { stats: stats(2, 12, 10) }),
        ]),
      ],
      {
        connections: [conn('198.18.0.2', RS1, 'TIME_WAIT'), conn('198.18.0.2', RS2, 'TIME_WAIT')],
        dataPath: dataPath({
          device: {
            rxPackets: 1,
            rxBytes: 1,
            txPackets: 1,
            txBytes: 1,
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
    ),
    dataplane: true,
    tunDevice: 'lvs0',
    sysctls: {
      'net/ipv4/ip_forward': '1',
      'net/ipv4/conf/all/rp_filter': '0',
      'net/ipv4/conf/all/send_redirects': '0',
      'net/ipv4/conf/lvs0/rp_filter': '0',
      'net/ipv4/conf/br0/forwarding': '1',
      'net/ipv4/conf/br0/send_redirects': '0',
      'net/ipv4/conf/pub0/forwarding': '1',
    },
    routes: {
      [VIP]: { dev: 'lo', type: 'local' },
      [RS1]: { dev: 'br0', prefsrc: '198.18.1.1' },
      [RS2]: { dev: 'br0', prefsrc: '198.18.1.1' },
      '198.18.0.2': { dev: 'pub0', prefsrc: VIP },
    },
    neighbours: [
      { dst: RS1, dev: 'br0', state: ['REACHABLE'] },
      { dst: RS2, dev: 'br0', state: ['REACHABLE'] },
    ],
    probes: { [`${RS1}:80`]: { result: 'open', ms: 1 }, [`${RS2}:80`]: { result: 'open', ms: 1 } },
    firewall: [],
  };
}

const findings = (facts: DoctorFacts) => {
  const r = diagnose(facts);
  return {
    verdict: r.verdict,
    host: r.host.map((f) => f.check),
    service: r.services[0]!.findings.map((f) => f.check),
    rs1: r.services[0]!.dests[0]!.findings.map((f) => f.check),
    rs2: r.services[0]!.dests[1]!.findings.map((f) => f.check),
    report: r,
  };
};

test('the healthy lab: ok everywhere, with the evidence looked at', () => {
  const r = findings(healthy());
  assert.equal(r.verdict, 'ok');
  assert.deepEqual([r.host, r.service, r.rs1, r.rs2], [[], [], [], []]);
  assert.deepEqual(r.report.services[0]!.dests[0]!.evidence, [
    '2 connections, 12 packets forwarded to it, 10 packets back through the director',
    '1 in the connection table, 0 in SYN_RECV',
    "the director's probe of 198.18.1.11:80 was answered (SYN-ACK) in 1 ms",
    'route: dev br0 src 198.18.1.1',
    'neighbour: REACHABLE on br0',
  ]);
});

test('replies around the director: SYNs out, nothing back, yet the server answers the director', () => {
  const facts = healthy();
  facts.snapshot.services[0]!.dests[0]!.stats = stats(3, 9, 0);
  facts.snapshot.connections = [conn('198.18.0.2', RS1, 'SYN_RECV'), conn('198.18.0.2', RS2, 'TIME_WAIT')];
  const r = findings(facts);
  assert.equal(r.verdict, 'problem');
  assert.deepEqual([r.rs1, r.rs2], [['replies-bypass'], []]);
  assert.match(
    r.report.services[0]!.dests[0]!.findings[0]!.message,
    /default gateway must be the director \(198.18.1.1\)/,
  );
  // Replies seen: the same SYN_RECV entry is a handshake in progress, not a fault.
  facts.snapshot.services[0]!.dests[0]!.stats = stats(3, 9, 2);
  assert.deepEqual(findings(facts).rs1, []);
});

test('a refused probe is a refusal, a silent one silence (with the neighbour table when ARP failed)', () => {
  const facts = healthy();
  facts.probes = {
    ...facts.probes,
    [`${RS1}:80`]: { result: 'refused' },
    [`${RS2}:80`]: { result: 'timeout', ms: 1500 },
  };
  facts.neighbours = [{ dst: RS2, dev: 'br0', state: ['FAILED'] }];
  const r = findings(facts);
  assert.deepEqual([r.rs1, r.rs2], [['refused'], ['silent']]);
  assert.match(r.report.services[0]!.dests[1]!.findings[0]!.message, /no ARP\/ND reply from 198.18.1.12/);
  // Silence wins over the bypass signature: a server that answers nobody is not "answering elsewhere".
  facts.snapshot.services[0]!.dests[1]!.stats = stats(1, 3, 0);
  facts.snapshot.connections = [conn('198.18.0.2', RS2, 'SYN_RECV')];
  assert.deepEqual(findings(facts).rs2, ['silent']);
});

test("a client on the real servers' own subnet (directly connected on the same device)", () => {
  const facts = healthy();
  facts.snapshot.connections = [conn('198.18.1.50', RS1, 'SYN_RECV')];
  facts.routes = { ...facts.routes, '198.18.1.50': { dev: 'br0', prefsrc: '198.18.1.1' } };
  const r = findings(facts);
  assert.deepEqual([r.rs1, r.rs2], [['same-subnet'], ['same-subnet']]);
  // Behind a router on that device, it is not on the link.
  facts.routes = { ...facts.routes, '198.18.1.50': { dev: 'br0', gateway: '198.18.1.254' } };
  assert.deepEqual(findings(facts).rs1, []);
});

test('host settings: forwarding off (globally or on a device), strict rp_filter, redirects towards the real servers', () => {
  const with_ = (sysctls: Record<string, string>) =>
    findings({ ...healthy(), sysctls: { ...healthy().sysctls, ...sysctls } }).host;
  assert.deepEqual(with_({ 'net/ipv4/ip_forward': '0' }), ['ip-forward']);
  assert.deepEqual(with_({ 'net/ipv4/conf/br0/forwarding': '0' }), ['ip-forward']);
  assert.deepEqual(with_({ 'net/ipv4/conf/all/rp_filter': '1' }), ['rp-filter']);
  assert.deepEqual(with_({ 'net/ipv4/conf/lvs0/rp_filter': '1' }), ['rp-filter']);
  // Loose mode checks only that a route exists: fine.
  assert.deepEqual(with_({ 'net/ipv4/conf/all/rp_filter': '2' }), []);
  assert.deepEqual(with_({ 'net/ipv4/conf/all/send_redirects': '1' }), ['send-redirects']);
  assert.deepEqual(with_({ 'net/ipv4/conf/br0/send_redirects': '1' }), ['send-redirects']);
  // Without a data plane none of it is lvsd's path.
  assert.deepEqual(
    findings({ ...healthy(), dataplane: false, sysctls: { 'net/ipv4/ip_forward': '0' } }).host,
    [],
  );
});

test('a service without real servers, and probes skipped for UDP', () => {
  const facts = healthy();
  facts.snapshot.services.push(service(addrKey(IPPROTO_TCP, VIP, 443), []));
  facts.snapshot.services.push(service(addrKey(IPPROTO_UDP, VIP, 53), [dest(RS1, 53)]));
  const r = diagnose(facts);
  assert.deepEqual(
    r.services[1]!.findings.map((f) => f.check),
    ['no-real-server'],
  );
  assert.equal(r.services[2]!.verdict, 'ok');
  assert.ok(r.services[2]!.dests[0]!.evidence.includes('not probed: no handshake'));
});

const rule = (
  matches: FirewallRule['matches'],
  verdict: FirewallRule['verdict'],
  opaque = false,
): FirewallRule => ({
  chain: 'ip filter forward',
  hook: 'forward',
  text: 'r',
  matches,
  opaque,
  verdict,
});
const chain = (policy: 'accept' | 'drop', rules: FirewallRule[]): FirewallChain => ({
  name: 'ip filter forward',
  hook: 'forward',
  policy,
  rules,
});
const toRs: FlowFact = { protocol: IPPROTO_TCP, ctstate: 'untracked', daddr: RS1, dport: 80 };

test('firewall: first sure match decides, conntrack states lvsd never has do not accept, unreadable rules make a warning', () => {
  const established = rule([{ field: 'ctstate', values: ['established', 'related'] }], 'accept');
  assert.equal(ruleMatches(established, toRs), 'no');
  assert.equal(chainVerdict(chain('drop', [established]), toRs).verdict, 'drop');
  const subnet = rule([{ field: 'daddr', values: [{ prefix: '198.18.1.0', len: 24 }] }], 'accept');
  assert.equal(chainVerdict(chain('drop', [established, subnet]), toRs).verdict, 'accept');
  const dropPort = rule(
    [
      { field: 'dport', values: [80, 443] },
      { field: 'protocol', values: [6] },
    ],
    'drop',
  );
  assert.equal(chainVerdict(chain('accept', [dropPort]), toRs).rule, dropPort);
  // A match on the client's address: the client is any, so maybe.
  assert.equal(ruleMatches(rule([{ field: 'saddr', values: ['10.0.0.1'] }], 'accept'), toRs), 'maybe');

  const facts = healthy();
  facts.firewall = [chain('drop', [established])];
  const sure = findings(facts);
  assert.deepEqual(sure.service, ['firewall']);
  assert.equal(sure.report.services[0]!.findings[0]!.severity, 'problem');
  facts.firewall = [chain('drop', [rule([], 'accept', true)])];
  const unsure = findings(facts);
  assert.equal(unsure.report.services[0]!.findings[0]!.severity, 'warning');
  assert.equal(unsure.verdict, 'warning');
  facts.firewall = [chain('accept', [established])];
  assert.deepEqual(findings(facts).service, []);
});

test('prefix matches agree with address arithmetic', () => {
  fc.assert(
    fc.property(fc.ipV4(), fc.ipV4(), fc.integer({ min: 0, max: 32 }), (a, b, len) => {
      const n = (s: string) => s.split('.').reduce((x, p) => x * 256 + Number(p), 0);
      const expected = len === 0 || Math.floor(n(a) / 2 ** (32 - len)) === Math.floor(n(b) / 2 ** (32 - len));
      const r = rule([{ field: 'daddr', values: [{ prefix: b, len }] }], 'drop');
      return (ruleMatches(r, { ...toRs, daddr: a }) === 'yes') === expected;
    }),
  );
});
