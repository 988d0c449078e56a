import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HostNetwork } from '../../src/dataplane/host.js';
import { IPPROTO_TCP, IPPROTO_UDP, parseAddr, type Addr } from '../../src/core/inet.js';
import type { ServiceSnapshot } from '../../src/core/ops.js';
import { FakeSystem } from './fake-system.js';

const STATE = '/var/lib/lvsd-test';
const JOURNAL = `${STATE}/host-journal.json`;

function addr(text: string): Addr {
  const a = parseAddr(text);
  assert.ok(a, text);
  return a;
}

function service(vip: string, protocol: number, port: number, reals: [string, number][]): ServiceSnapshot {
  const zero = { conns: 0, inPkts: 0, outPkts: 0, inBytes: 0, outBytes: 0 };
  const rates = { cps: 0, inpps: 0, outpps: 0, inbps: 0, outbps: 0 };
  const a = addr(vip);
  return {
    key: { af: a.af, protocol: protocol as 6, addr: a, port, fwmark: 0 },
    settings: { scheduler: 'rr', flags: 0, timeout: 0, netmaskPrefix: 32, pe: null },
    stats: zero,
    rates,
    dests: reals.map(([rip, rport]) => ({
      addr: addr(rip),
      port: rport,
      method: 'masq' as const,
      weight: 1,
      configuredWeight: 1,
      scheduled: true,
      admin: 'ready' as const,
      operatorWeight: null,
      health: 'up' as const,
      dynamicWeight: null,
      uThreshold: 0,
      lThreshold: 0,
      activeConns: 0,
      inactConns: 0,
      persistConns: 0,
      stats: zero,
      rates,
    })),
  };
}

function setup(): { system: FakeSystem; host: HostNetwork } {
  const system = new FakeSystem();
  system.files.set('/proc/sys/net/ipv4/ip_forward', '0\n');
  system.files.set('/proc/sys/net/ipv4/conf/all/send_redirects', '1\n');
  system.files.set('/proc/sys/net/ipv4/conf/default/send_redirects', '1\n');
  system.files.set('/proc/sys/net/ipv4/conf/lvs0/send_redirects', '1\n');
  system.files.set('/proc/sys/net/ipv4/conf/lvs0/accept_local', '0\n');
  system.files.set('/proc/sys/net/ipv4/conf/lvs0/rp_filter', '0\n');
  system.files.set('/proc/sys/net/ipv4/conf/eth0/send_redirects', '1\n');
  system.files.set('/proc/sys/net/ipv4/conf/eth1/send_redirects', '1\n');
  system.routes.set('198.18.0.1', { type: 'local', dev: 'lo' });
  system.routes.set('198.18.1.11', { type: 'unicast', dev: 'eth1' });
  system.routes.set('198.18.1.12', { type: 'unicast', dev: 'eth1' });
  return { system, host: new HostNetwork({ system, stateDir: STATE, tunName: 'lvs0' }) };
}

const web = service('198.18.0.1', IPPROTO_TCP, 80, [
  ['198.18.1.11', 80],
  ['198.18.1.12', 80],
]);

describe('HostNetwork', () => {
  it('steers only the service and its real servers replies, with forwarding on and redirects off', () => {
    const { system, host } = setup();
    host.sync([web]);
    const facts = system.state().facts;
    assert.ok(facts.includes('nft element inet lvsd svc4 198.18.0.1 . tcp . 80'));
    assert.ok(facts.includes('nft element inet lvsd real4 198.18.1.11 . tcp . 80'));
    assert.ok(facts.includes('nft element inet lvsd real4 198.18.1.12 . tcp . 80'));
    assert.ok(facts.includes('ip -4 route default dev lvs0 table 19542'));
    assert.ok(facts.includes('ip -4 rule pref 90 fwmark 19542 lookup 19542'));
    // The local table now comes after our mark rule, and still exists.
    assert.ok(!facts.includes('ip -4 rule pref 0 lookup local'));
    assert.ok(facts.includes('ip -4 rule pref 100 lookup local'));
    assert.equal(system.files.get('/proc/sys/net/ipv4/ip_forward'), '1');
    for (const dev of ['all', 'default', 'lvs0', 'eth1']) {
      assert.equal(system.files.get(`/proc/sys/net/ipv4/conf/${dev}/send_redirects`), '0', dev);
    }
    assert.equal(system.files.get('/proc/sys/net/ipv4/conf/lvs0/accept_local'), '1');
    // A local VIP needs no route of its own nor proxy ARP.
    assert.ok(!facts.some((f) => f.includes('neigh') || f.includes('198.18.0.1/32')));
    const ruleset = /table inet lvsd \{[\s\S]*\}/.exec(system.calls.join('\n'));
    assert.equal(ruleset, null, 'the ruleset goes through stdin, not argv');
  });

  it('stop leaves the host exactly as found, sysctls included', () => {
    const { system, host } = setup();
    const before = system.state();
    host.sync([web, service('198.18.0.9', IPPROTO_UDP, 53, [['198.18.1.11', 53]])]);
    assert.notDeepEqual(system.state(), before);
    host.stop();
    assert.deepEqual(system.state(), before);
  });

  it('a non-local VIP gets a host route to the device and proxy ARP on the client side', () => {
    const { system, host } = setup();
    host.sync([service('198.18.0.9', IPPROTO_TCP, 80, [])]);
    assert.ok(system.facts.has('ip -4 route 198.18.0.9/32 dev lvs0'));
    assert.ok(system.facts.has('ip -4 neigh proxy 198.18.0.9 dev eth0'));
    host.sync([web]);
    assert.ok(!system.facts.has('ip -4 route 198.18.0.9/32 dev lvs0'));
    assert.ok(!system.facts.has('ip -4 neigh proxy 198.18.0.9 dev eth0'));
  });

  it('per-service steering follows deletions; the last service takes everything with it', () => {
    const { system, host } = setup();
    const before = system.state();
    const dns = service('198.18.0.1', IPPROTO_UDP, 53, [['198.18.1.12', 53]]);
    host.sync([web, dns]);
    const oneReal = { ...web, dests: web.dests.slice(1) };
    host.sync([oneReal, dns]);
    assert.ok(!system.facts.has('nft element inet lvsd real4 198.18.1.11 . tcp . 80'));
    assert.ok(system.facts.has('nft element inet lvsd real4 198.18.1.12 . tcp . 80'));
    host.sync([dns]);
    assert.ok(!system.facts.has('nft element inet lvsd svc4 198.18.0.1 . tcp . 80'));
    assert.ok(system.facts.has('nft element inet lvsd svc4 198.18.0.1 . udp . 53'));
    assert.ok(system.facts.has('ip -4 rule pref 90 fwmark 19542 lookup 19542'));
    host.sync([]);
    assert.deepEqual(system.state(), before);
  });

  it('journals before changing, so a new process undoes what a crashed one left', () => {
    const { system, host } = setup();
    const before = system.state();
    host.sync([web]);
    assert.ok(system.files.has(JOURNAL));
    // The first process dies here; the next one starts over the same state directory.
    const next = new HostNetwork({ system, stateDir: STATE, tunName: 'lvs0' });
    assert.ok(next.recover() > 0);
    assert.deepEqual(system.state(), before);
    assert.equal(next.recover(), 0);
  });

  it('a command that fails leaves nothing journaled for it and the rest undoable', () => {
    const { system, host } = setup();
    const before = system.state();
    system.failing = 'ip -4 rule add pref 90';
    assert.throws(() => host.sync([web]), /injected failure/);
    const journal = JSON.parse(system.files.get(JOURNAL)!) as { key: string }[];
    assert.ok(!journal.some((e) => e.key === 'rule:4'));
    system.failing = null;
    host.stop();
    assert.deepEqual(system.state(), before);
  });

  it('an IPv6 service turns on v6 forwarding and v6 rules, and undoes them', () => {
    const { system, host } = setup();
    system.files.set('/proc/sys/net/ipv6/conf/all/forwarding', '0\n');
    system.routes.set('2001:db8::1', { type: 'local', dev: 'lo' });
    const before = system.state();
    host.sync([service('2001:db8::1', IPPROTO_TCP, 443, [['2001:db8:1::11', 443]])]);
    assert.equal(system.files.get('/proc/sys/net/ipv6/conf/all/forwarding'), '1');
    assert.ok(system.facts.has('ip -6 rule pref 90 fwmark 19542 lookup 19542'));
    assert.ok(system.facts.has('nft element inet lvsd real6 2001:db8:1::11 . tcp . 443'));
    host.stop();
    assert.deepEqual(system.state(), before);
  });
});
