// Real configurations: keepalived's own doc/samples and keepalived.conf files from public
// repositories (test/keepalived/fixtures, each citing its source on its first line). Asserts what
// an operator checks: the services and real servers, their checkers, the warnings, the refusals.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { formatAddr } from '../../src/core/inet.js';
import type { CheckerConfig } from '../../src/health/config.js';
import { formatServices } from '../../src/keepalived/check.js';
import type { KeepalivedConfig } from '../../src/keepalived/model.js';
import { readKeepalivedConf, type ReadResult } from '../../src/keepalived/read.js';
import { fakeFiles } from './fake-files.js';
import { FIXTURES } from './helpers.js';
const PATH = '/etc/keepalived/keepalived.conf';

function readFixture(name: string, configId = 'lb1'): ReadResult {
  const text = readFileSync(join(FIXTURES, name));
  return readKeepalivedConf(fakeFiles({ [PATH]: new Uint8Array(text) }), PATH, { configId });
}

function fixture(name: string, configId?: string): KeepalivedConfig {
  const result = readFixture(name, configId);
  if (!result.ok) assert.fail(`${name}:${result.error.line}: ${result.error.message}`);
  return result.config;
}

function refusal(name: string, configId?: string): string {
  const result = readFixture(name, configId);
  assert.ok(!result.ok, `${name} was accepted`);
  return `${result.error.line}: ${result.error.message}`;
}

/** The services as `lvsadm -S -n` lines. */
function rules(config: KeepalivedConfig): string[] {
  return formatServices(config).trimEnd().split('\n');
}

/** What each real server is checked with: `RS kind target retry/connect/delay_loop`. */
function checks(config: KeepalivedConfig): string[] {
  return config.virtualServers.flatMap((vs) =>
    vs.realServers.flatMap((rs) =>
      rs.checkers.map((c: CheckerConfig) => {
        const where =
          c.kind === 'MISC_CHECK' ? c.argv.join(' ') : `${formatAddr(c.target.addr)}:${c.target.port}`;
        return `${formatAddr(rs.addr)} ${c.kind} ${where} retry=${c.retry} connect=${c.connectTimeoutMs} loop=${c.delayLoopMs} dbr=${c.delayBeforeRetryMs}`;
      }),
    ),
  );
}

function messages(config: KeepalivedConfig): string[] {
  return config.warnings.map((w) => `${w.line}: ${w.message}`);
}

describe('keepalived doc/samples', () => {
  test('keepalived.conf.sample: HTTP_GET with digest, a sorry server, no warning', () => {
    const config = fixture('keepalived-sample-sample.conf');
    assert.deepEqual(rules(config), [
      '-A -t 10.10.10.2:1358 -s rr -p 50',
      '-a -t 10.10.10.2:1358 -r 192.168.200.2:1358 -m -w 1',
    ]);
    const vs = config.virtualServers[0]!;
    assert.equal(`${formatAddr(vs.sorryServer!.addr)}:${vs.sorryServer!.port}`, '192.168.200.200:1358');
    assert.deepEqual(checks(config), [
      '192.168.200.2 HTTP_GET 192.168.200.2:1358 retry=3 connect=3000 loop=6000 dbr=3000',
    ]);
    const http = vs.realServers[0]!.checkers[0]!;
    assert.ok(http.kind === 'HTTP_GET');
    assert.deepEqual(
      http.urls.map((u) => [u.path, u.digest]),
      [['/testurl3/test.jsp', '640205b7b0fc66c1ea91c463fac6334d']],
    );
    assert.deepEqual(messages(config), []);
  });

  test('virtual_server_group: a range, single addresses and fwmarks, one service each', () => {
    const config = fixture('keepalived-sample-virtual_server_group.conf');
    const services = rules(config).filter((l) => l.startsWith('-A'));
    assert.deepEqual(services, [
      '-A -t 192.168.200.1:1358 -s rr -p 50',
      ...[3, 4, 5, 6, 7, 8, 9, 10].map((n) => `-A -t 192.168.200.${n}:80 -s rr -p 50`),
      '-A -t 10.0.0.1:8080 -s rr -p 50',
      '-A -t 10.0.0.2:80 -s rr -p 50',
      '-A -f 1 -s rr -p 50',
      '-A -f 2 -s rr -p 50',
    ]);
    assert.equal(rules(config).filter((l) => l.startsWith('-a')).length, 2 * services.length);
    assert.deepEqual(messages(config), []);
  });

  test('fwmark: real servers at port 0, TCP_CHECK on connect_port, the protocol warning', () => {
    const config = fixture('keepalived-sample-fwmark.conf');
    assert.deepEqual(rules(config), [
      '-A -f 1 -s rr -p 900',
      '-a -f 1 -r 192.168.201.100:0 -m -w 1',
      '-a -f 1 -r 192.168.201.101:0 -m -w 1',
    ]);
    assert.deepEqual(checks(config), [
      '192.168.201.100 TCP_CHECK 192.168.201.100:80 retry=1 connect=3000 loop=6000 dbr=1000',
      '192.168.201.101 TCP_CHECK 192.168.201.101:80 retry=1 connect=3000 loop=6000 dbr=1000',
    ]);
    assert.deepEqual(messages(config), [
      '8: Warning: Virtual server FWM 1: protocol specified for fwmark - protocol will be ignored',
    ]);
  });

  test('quorum: 10 real servers, quorum 7, hysteresis 2, alpha, omega and the scripts', () => {
    const config = fixture('keepalived-sample-quorum.conf');
    const vs = config.virtualServers[0]!;
    assert.deepEqual([vs.quorum, vs.hysteresis, vs.omega], [7, 2, true]);
    assert.deepEqual(
      [vs.quorumUp!.argv, vs.quorumDown!.argv],
      [['/usr/local/sbin/quorum-up.sh'], ['/usr/local/sbin/quorum-down.sh']],
    );
    assert.equal(vs.realServers.length, 10);
    assert.ok(vs.realServers.every((rs) => rs.checkers.length === 1 && rs.checkers[0]!.alpha));
    assert.deepEqual(rules(config)[0], '-A -t 10.0.1.1:80 -s wrr -p 900');
  });

  test('misc_check and misc_check_arg: the script and its arguments, retry 0', () => {
    assert.deepEqual(checks(fixture('keepalived-sample-misc_check.conf')), [
      '192.168.200.6 MISC_CHECK /usr/local/bin/script.sh retry=0 connect=5000 loop=6000 dbr=1000',
    ]);
    assert.deepEqual(checks(fixture('keepalived-sample-misc_check_arg.conf')), [
      '192.168.200.6 MISC_CHECK /usr/local/bin/script.sh arg1 arg2 retry=0 connect=5000 loop=6000 dbr=1000',
    ]);
  });

  test('SSL_GET: two services, SSL_GET and HTTP_GET with two urls each', () => {
    const config = fixture('keepalived-sample-SSL_GET.conf');
    assert.deepEqual(
      rules(config).filter((l) => l.startsWith('-A')),
      ['-A -t 192.168.200.100:80 -s rr -p 50', '-A -t 192.168.200.100:443 -s rr -p 50'],
    );
    assert.deepEqual(
      config.virtualServers.map((vs) =>
        vs.realServers[0]!.checkers.map((c) =>
          c.kind === 'SSL_GET' || c.kind === 'HTTP_GET' ? `${c.kind} ${c.urls.length}` : c.kind,
        ),
      ),
      [['SSL_GET 2'], ['HTTP_GET 2']],
    );
  });

  test('status_code: ranges and single codes per url', () => {
    const c = fixture('keepalived-sample-status_code.conf').virtualServers[0]!.realServers[0]!.checkers[0]!;
    assert.ok(c.kind === 'SSL_GET');
    assert.deepEqual(
      c.urls.map((u) => u.statusCodes),
      [
        [
          [200, 299],
          [400, 499],
          [503, 503],
          [505, 505],
        ],
        [[200, 200]],
      ],
    );
  });

  test('HTTP_GET.port: the check goes to connect_port, not the real server port', () => {
    assert.deepEqual(checks(fixture('keepalived-sample-HTTP_GET.port.conf')), [
      '192.168.201.100 SSL_GET 192.168.201.100:444 retry=3 connect=3000 loop=6000 dbr=3000',
    ]);
  });

  test('virtualhost: the virtual server virtualhost reaches its SSL_GET', () => {
    const c = fixture('keepalived-sample-virtualhost.conf').virtualServers[0]!.realServers[0]!.checkers[0]!;
    assert.ok(c.kind === 'SSL_GET');
    assert.equal(c.virtualhost, 'www.firewall.loc');
  });

  test('UDP_CHECK and PING_CHECK on UDP services', () => {
    assert.deepEqual(checks(fixture('keepalived-sample-UDP_CHECK.conf')), [
      '192.168.200.6 UDP_CHECK 192.168.200.6:1358 retry=3 connect=3000 loop=6000 dbr=3000',
    ]);
    assert.deepEqual(checks(fixture('keepalived-sample-PING_CHECK.conf')), [
      '192.168.200.6 PING_CHECK 192.168.200.6:1358 retry=4 connect=5000 loop=6000 dbr=1000',
    ]);
  });

  test('inhibit: inhibit_on_failure on the real server', () => {
    const rs = fixture('keepalived-sample-inhibit.conf').virtualServers[0]!.realServers[0]!;
    assert.equal(rs.inhibitOnFailure, true);
  });

  test('vrrp: a VRRP-only configuration has no services and nothing to say', () => {
    const config = fixture('keepalived-sample-vrrp.conf');
    assert.deepEqual([config.virtualServers, config.warnings], [[], []]);
  });

  test('conditional_conf: @high lines select net_namespace, which lvsd refuses; elsewhere nothing', () => {
    assert.match(
      refusal('keepalived-sample-conditional_conf.conf', 'high'),
      /: net_namespace: lvsd runs in its own network namespace/,
    );
    assert.deepEqual(fixture('keepalived-sample-conditional_conf.conf', 'lb1').virtualServers, []);
  });

  test('SMTP_CHECK and IPv6 (which uses SMTP_CHECK) are refused at the checker', () => {
    assert.match(
      refusal('keepalived-sample-SMTP_CHECK.conf'),
      /^\d+: SMTP_CHECK: SMTP_CHECK is not supported by lvsd yet$/,
    );
    assert.match(refusal('keepalived-sample-IPv6.conf'), /^\d+: SMTP_CHECK: SMTP_CHECK is not supported/);
  });
});

describe('configurations from public repositories', () => {
  test('NFhook/opensips-cluster: a SIP service over UDP, three real servers, no checker', () => {
    const config = fixture('opensips-cluster.conf');
    assert.deepEqual(rules(config), [
      '-A -u 10.10.18.25:5060 -s rr -p 50',
      '-a -u 10.10.18.25:5060 -r 10.10.18.20:1060 -m -w 1',
      '-a -u 10.10.18.25:5060 -r 10.10.18.20:2060 -m -w 1',
      '-a -u 10.10.18.25:5060 -r 10.10.18.20:3060 -m -w 1',
    ]);
    assert.deepEqual(checks(config), []);
    assert.deepEqual(messages(config), []);
  });

  test('fanux/kubeinit: wlc with persistence 600, weights 100, TCP_CHECK with connect_timeout 3', () => {
    const config = fixture('kubeinit-manifast.conf');
    assert.deepEqual(rules(config), [
      '-A -t 10.23.8.80:80 -s wlc -p 600',
      '-a -t 10.23.8.80:80 -r 172.18.1.11:80 -m -w 100',
      '-a -t 10.23.8.80:80 -r 172.18.1.12:80 -m -w 100',
      '-a -t 10.23.8.80:80 -r 172.18.1.13:80 -m -w 100',
    ]);
    assert.deepEqual(
      checks(config).map((c) => c.split(' ').slice(1).join(' ')),
      Array(3)
        .fill('TCP_CHECK')
        .map((k, i) => `${k} 172.18.1.1${i + 1}:80 retry=1 connect=3000 loop=6000 dbr=1000`),
    );
  });

  test('Leif160519/seaweedfs: VRRP with template placeholders, nothing for lvsd', () => {
    const config = fixture('seaweedfs.conf');
    assert.deepEqual([config.virtualServers, config.warnings], [[], []]);
  });

  test('Tgentimc/keepalived_conf: lb_kind DR, its real server directly routed at the service port', () => {
    assert.deepEqual(rules(fixture('tgentimc-keepalived_conf.conf')), [
      '-A -t 172.16.133.250:3306 -s rr -p 60',
      '-a -t 172.16.133.250:3306 -r 172.16.133.200:3306 -g -w 3',
    ]);
  });

  test('xusxlinux/Document: an lb_algo keepalived does not know either is an error', () => {
    assert.equal(refusal('xusxlinux-master02.conf'), "23: Invalid lvs_scheduler 'loadbalance'");
  });
});
