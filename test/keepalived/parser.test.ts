// keepalived.conf's keywords: keepalived 2.2.7's defaults and warnings (operations.md §1), the
// refusals of what lvsd cannot do yet, errors at FILE:LINE, and the ops that build the result.

import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { addr4, formatAddr, IPPROTO_TCP, IPPROTO_UDP, parseAddr } from '../../src/core/inet.js';
import { SVC_F_ONEPACKET, SVC_F_PERSISTENT, SVC_F_SCHED1, SVC_F_SCHED2 } from '../../src/core/model.js';
import type { CheckerConfig } from '../../src/health/config.js';
import { toControlOps } from '../../src/keepalived/ops.js';
import { resolveServerPort } from '../../src/keepalived/resolve.js';
import { readKeepalivedConf } from '../../src/keepalived/read.js';
import { MAIN, parse, parseError, quietVs, read, warnings } from './helpers.js';

function firstChecker(text: string): CheckerConfig {
  const checker = parse(text).virtualServers[0]!.realServers[0]!.checkers[0];
  assert.ok(checker, 'no checker');
  return checker;
}

function checkerIn(kind: string, body = ''): string {
  return quietVs('', `real_server 192.168.1.10 8080 {\n ${kind} {\n${body}\n }\n}\n`);
}

describe('virtual server defaults and their warnings', () => {
  test('nothing set: UDP, wlc and NAT, each with keepalived warning', () => {
    const text = 'virtual_server 10.0.0.1 80 {\n real_server 192.168.1.10 80 {\n }\n}\n';
    const config = parse(text);
    const vs = config.virtualServers[0]!;
    assert.deepEqual(vs.services, [
      { af: 4, protocol: IPPROTO_UDP, addr: addr4(0x0a000001), port: 80, fwmark: 0 },
    ]);
    assert.equal(vs.settings.scheduler, 'wlc');
    assert.equal(vs.realServers[0]!.settings.method, 'masq');
    assert.deepEqual(warnings(text), [
      '1: Virtual server [10.0.0.1]:none:80: no protocol set - defaulting to UDP',
      "1: Virtual server [10.0.0.1]:udp:80: no scheduler set, setting default 'wlc'",
      '1: Virtual server [10.0.0.1]:udp:80: no forwarding method set, setting default NAT',
    ]);
  });

  test('a fully specified virtual server reads without a warning', () => {
    assert.deepEqual(warnings(quietVs('')), []);
  });

  test('lb_kind on the real server alone silences the NAT warning', () => {
    const text =
      'virtual_server 10.0.0.1 80 {\n protocol TCP\n lb_algo rr\n real_server 192.168.1.10 80 {\n lvs_method NAT\n }\n}\n';
    assert.deepEqual(warnings(text), []);
  });

  test('not persistent by default; bare persistence_timeout is 360 s; granularity alone too', () => {
    assert.equal(parse(quietVs('')).virtualServers[0]!.settings.flags & SVC_F_PERSISTENT, 0);
    for (const body of [' persistence_timeout', ' persistence_granularity 255.255.255.0']) {
      const s = parse(quietVs(body)).virtualServers[0]!.settings;
      assert.equal(s.flags & SVC_F_PERSISTENT, SVC_F_PERSISTENT, body);
      assert.equal(s.timeout, 360, body);
    }
    const s = parse(quietVs(' persistence_timeout 50\n persistence_granularity 255.255.255.0'))
      .virtualServers[0]!.settings;
    assert.deepEqual([s.timeout, s.netmaskPrefix], [50, 24]);
    assert.equal(parse(quietVs('')).virtualServers[0]!.settings.netmaskPrefix, 32);
  });

  test('port 0 without persistence: persistence 360 with the warning', () => {
    const text =
      'virtual_server 10.0.0.1 0 {\n protocol TCP\n lb_algo rr\n lb_kind NAT\n real_server 192.168.1.10 80 {\n }\n}\n';
    assert.deepEqual(warnings(text), [
      '1: Virtual server [10.0.0.1]:tcp:0: zero port only valid for persistent services - setting',
    ]);
    assert.equal(parse(text).virtualServers[0]!.settings.timeout, 360);
  });

  test('ops on TCP is reset with the warning; on UDP it stays', () => {
    assert.deepEqual(warnings(quietVs(' ops')), [
      '1: Virtual server [10.0.0.1]:tcp:80: one packet scheduling requires UDP - resetting',
    ]);
    assert.equal(parse(quietVs(' ops')).virtualServers[0]!.settings.flags & SVC_F_ONEPACKET, 0);
    const udp = parse(quietVs(' ops').replace('protocol TCP', 'protocol UDP')).virtualServers[0]!;
    assert.equal(udp.settings.flags & SVC_F_ONEPACKET, SVC_F_ONEPACKET);
  });

  test('scheduler flags: sh-port after lb_algo sh; before it, an error', () => {
    const vs = parse(quietVs(' sh-port\n sh-fallback').replace('lb_algo rr', 'lb_algo sh'))
      .virtualServers[0]!;
    assert.equal(vs.settings.flags, SVC_F_SCHED1 | SVC_F_SCHED2);
    assert.equal(parseError(quietVs(' sh-port')), '5: sh-port only applies to sh scheduler');
  });

  test('a fwmark service ignores protocol, with the warning; real servers keep port 0', () => {
    const text =
      'virtual_server fwmark 7 {\n protocol TCP\n lb_algo rr\n lb_kind NAT\n real_server 192.168.1.10 {\n }\n}\n';
    assert.deepEqual(warnings(text), [
      '1: Warning: Virtual server FWM 7: protocol specified for fwmark - protocol will be ignored',
    ]);
    const vs = parse(text).virtualServers[0]!;
    assert.deepEqual(vs.services, [{ af: 4, protocol: 0, addr: addr4(0), port: 0, fwmark: 7 }]);
    assert.equal(vs.realServers[0]!.port, 0);
  });

  test('a virtual server without real servers is dropped with the warning', () => {
    const text = 'virtual_server 10.0.0.1 80 {\n protocol TCP\n}\n';
    const config = parse(text);
    assert.deepEqual(config.virtualServers, []);
    assert.deepEqual(
      config.warnings.map((w) => w.message),
      ['Virtual server [10.0.0.1]:tcp:80 has no real servers - ignoring'],
    );
  });
});

describe('real servers', () => {
  test('weight defaults to the virtual server weight (1); port to the virtual server port', () => {
    const vs = parse(
      quietVs(' weight 3', 'real_server 192.168.1.10 {\n}\nreal_server 192.168.1.11 8080 {\n weight 0\n}\n'),
    ).virtualServers[0]!;
    assert.deepEqual(
      vs.realServers.map((r) => [formatAddr(r.addr), r.port, r.settings.weight]),
      [
        ['192.168.1.10', 80, 3],
        ['192.168.1.11', 8080, 0],
      ],
    );
  });

  test('a real server without a port next to the same with the service port is a duplicate too', () => {
    const text = quietVs('', 'real_server 192.168.1.10 {\n}\nreal_server 192.168.1.10 80 {\n}\n');
    assert.deepEqual(warnings(text), [
      '8: VS [10.0.0.1]:tcp:80: real server [192.168.1.10]:tcp:80 is duplicated - removing second rs',
    ]);
  });

  test('a duplicated real server is removed with the warning', () => {
    const text = quietVs(
      '',
      'real_server 192.168.1.10 80 {\n}\nreal_server 192.168.1.10 80 {\n weight 5\n}\n',
    );
    assert.deepEqual(warnings(text), [
      '8: VS [10.0.0.1]:tcp:80: real server [192.168.1.10]:tcp:80 is duplicated - removing second rs',
    ]);
    assert.equal(parse(text).virtualServers[0]!.realServers.length, 1);
  });

  test('inhibit_on_failure from the virtual server, overridden per real server', () => {
    const vs = parse(
      quietVs(
        ' inhibit_on_failure',
        'real_server 192.168.1.10 80 {\n}\nreal_server 192.168.1.11 80 {\n inhibit_on_failure off\n}\n',
      ),
    ).virtualServers[0]!;
    assert.deepEqual(
      vs.realServers.map((r) => r.inhibitOnFailure),
      [true, false],
    );
  });

  test('thresholds and notify scripts, argv split as keepalived splits it', () => {
    const rs = parse(
      quietVs(
        '',
        `real_server 192.168.1.10 80 {\n uthreshold 100\n lthreshold 10\n notify_up "/bin/up.sh 'a b' c" nobody nogroup\n notify_down /bin/down.sh\n}\n`,
      ),
    ).virtualServers[0]!.realServers[0]!;
    assert.deepEqual([rs.settings.uThreshold, rs.settings.lThreshold], [100, 10]);
    assert.deepEqual(rs.notifyUp, { argv: ['/bin/up.sh', 'a b', 'c'], user: 'nobody', group: 'nogroup' });
    assert.deepEqual(rs.notifyDown, { argv: ['/bin/down.sh'], user: null, group: null });
  });

  test('a real server of the other family is skipped with the warning', () => {
    const text = quietVs('', 'real_server 192.168.1.10 80 {\n}\nreal_server 2001:db8::1 80 {\n}\n');
    assert.deepEqual(warnings(text), [
      "8: Address family of virtual server and real server 2001:db8::1 don't match - skipping real server.",
    ]);
  });

  test('real server weight out of range is an error', () => {
    assert.equal(
      parseError(quietVs('', 'real_server 192.168.1.10 80 {\n weight 70000\n}\n')),
      '7: Real server weight 70000 is outside range 0-65535',
    );
  });
});

describe('quorum, hysteresis and the sorry server', () => {
  test('quorum 1 and hysteresis 0 by default', () => {
    const vs = parse(quietVs('')).virtualServers[0]!;
    assert.deepEqual([vs.quorum, vs.hysteresis, vs.sorryServer, vs.omega], [1, 0, null, false]);
  });

  test('quorum above the total weight is lowered, then hysteresis below quorum', () => {
    const text = quietVs(
      ' quorum 10\n hysteresis 4',
      'real_server 192.168.1.10 80 {\n weight 2\n}\nreal_server 192.168.1.11 80 {\n weight 1\n}\n',
    );
    assert.deepEqual(warnings(text), [
      '1: Warning - quorum 10 for [10.0.0.1]:tcp:80 exceeds total weight of real servers 3, reducing quorum to 3',
      '1: Virtual server [10.0.0.1]:tcp:80: hysteresis 4 >= quorum 3; setting hysteresis to 2',
    ]);
    const vs = parse(text).virtualServers[0]!;
    assert.deepEqual([vs.quorum, vs.hysteresis], [3, 2]);
  });

  test('a bad quorum becomes 1 with the warning', () => {
    assert.deepEqual(warnings(quietVs(' quorum 0')), [
      '5: Quorum 0 must be in [1, 4294967295]. Setting to 1.',
    ]);
  });

  test('sorry_server with its port, inhibit, quorum scripts and omega', () => {
    const vs = parse(
      quietVs(
        ' sorry_server 192.168.1.99 8080\n sorry_server_inhibit\n quorum_up "/bin/q up"\n quorum_down /bin/qd\n omega',
      ),
    ).virtualServers[0]!;
    assert.equal(formatAddr(vs.sorryServer!.addr), '192.168.1.99');
    assert.deepEqual([vs.sorryServer!.port, vs.sorryServer!.inhibit, vs.omega], [8080, true, true]);
    assert.deepEqual(vs.quorumUp!.argv, ['/bin/q', 'up']);
    assert.deepEqual(vs.quorumDown!.argv, ['/bin/qd']);
  });

  test('sorry_server_inhibit before sorry_server warns and does nothing', () => {
    assert.deepEqual(warnings(quietVs(' sorry_server_inhibit\n sorry_server 192.168.1.99 80')), [
      '5: Ignoring sorry_server inhibit used before or without sorry_server',
    ]);
  });

  test('a sorry server that is also a real server takes its inhibit setting, with the warning', () => {
    const text = quietVs(
      ' sorry_server 192.168.1.10 80',
      'real_server 192.168.1.10 80 {\n inhibit_on_failure\n}\n',
    );
    assert.deepEqual(warnings(text), [
      '1: Virtual server [10.0.0.1]:tcp:80: real server [192.168.1.10]:tcp:80 matches sorry server, but inhibit setting differs, setting on sorry server',
    ]);
    assert.equal(parse(text).virtualServers[0]!.sorryServer!.inhibit, true);
  });
});

describe('checkers: every default resolved', () => {
  test('TCP_CHECK: delay_loop 60 s, connect_timeout 5 s, retry 1, delay_before_retry 1 s, warmup = delay_loop', () => {
    assert.deepEqual(firstChecker(checkerIn('TCP_CHECK')), {
      kind: 'TCP_CHECK',
      target: {
        addr: addr4(0xc0a8010a),
        port: 8080,
        bindAddr: null,
        bindPort: 0,
        bindInterface: null,
        fwmark: 0,
      },
      delayLoopMs: 60_000,
      connectTimeoutMs: 5_000,
      retry: 1,
      delayBeforeRetryMs: 1_000,
      warmupMs: 60_000,
      alpha: false,
      logAllFailures: false,
    });
  });

  test('HTTP_GET: delay_before_retry 3 s, http_protocol 1.0, status 200-299', () => {
    const c = firstChecker(checkerIn('HTTP_GET', 'url {\n path /health\n }'));
    assert.equal(c.kind, 'HTTP_GET');
    if (c.kind !== 'HTTP_GET') return;
    assert.deepEqual([c.retry, c.delayBeforeRetryMs, c.httpProtocol, c.virtualhost], [1, 3000, '1.0', null]);
    assert.deepEqual(c.urls, [
      { path: '/health', digest: null, statusCodes: [[200, 299]], virtualhost: null },
    ]);
  });

  test('DNS_CHECK: retry 3, delay_before_retry = delay_loop, type SOA, name "."', () => {
    const c = firstChecker(checkerIn('DNS_CHECK', 'delay_loop 7'));
    assert.equal(c.kind, 'DNS_CHECK');
    if (c.kind !== 'DNS_CHECK') return;
    assert.deepEqual([c.retry, c.delayBeforeRetryMs, c.type, c.name], [3, 7000, 'SOA', '.']);
  });

  test('MISC_CHECK: retry 0, misc_timeout = delay_loop, argv split with quotes', () => {
    const c = firstChecker(
      checkerIn('MISC_CHECK', `misc_path "/usr/bin/check 'x y'"\n misc_dynamic\n user nobody`),
    );
    assert.equal(c.kind, 'MISC_CHECK');
    if (c.kind !== 'MISC_CHECK') return;
    assert.deepEqual([c.retry, c.timeoutMs, c.dynamic, c.user], [0, 60_000, true, 'nobody']);
    assert.deepEqual(c.argv, ['/usr/bin/check', 'x y']);
  });

  test('UDP_CHECK: random payload, fails only on ICMP, reply length 0-255', () => {
    const c = firstChecker(checkerIn('UDP_CHECK'));
    assert.equal(c.kind, 'UDP_CHECK');
    if (c.kind !== 'UDP_CHECK') return;
    assert.deepEqual([c.payload, c.requireReply, c.minReplyLength, c.maxReplyLength], [null, null, 0, 255]);
    const d = firstChecker(checkerIn('UDP_CHECK', 'payload 01 02ab\n require_reply'));
    if (d.kind !== 'UDP_CHECK') return;
    assert.deepEqual([Array.from(d.payload!), Array.from(d.requireReply!)], [[1, 2, 0xab], []]);
  });

  test('timing comes from the checker, else the real server, else the virtual server', () => {
    const text = quietVs(
      ' delay_loop 10\n connect_timeout 2\n retry 4\n delay_before_retry 0.5\n alpha',
      'real_server 192.168.1.10 80 {\n delay_loop 20\n warmup 0\n TCP_CHECK {\n connect_timeout 1.25\n }\n HTTP_GET {\n retry 9\n url {\n path /\n }\n }\n}\n',
    );
    const [tcp, http] = parse(text).virtualServers[0]!.realServers[0]!.checkers;
    assert.deepEqual(
      [
        tcp!.delayLoopMs,
        tcp!.connectTimeoutMs,
        tcp!.retry,
        tcp!.delayBeforeRetryMs,
        tcp!.warmupMs,
        tcp!.alpha,
      ],
      [20_000, 1250, 4, 500, 0, true],
    );
    assert.deepEqual([http!.retry, http!.connectTimeoutMs, http!.delayBeforeRetryMs], [9, 2000, 500]);
  });

  test('connect_ip, connect_port, bindto, bind_port, fwmark reach the target', () => {
    const c = firstChecker(
      checkerIn(
        'TCP_CHECK',
        'connect_ip 192.168.2.1\n connect_port 81\n bindto 192.168.1.1\n bind_port 4000\n fwmark 9',
      ),
    );
    assert.deepEqual(c.kind === 'MISC_CHECK' ? null : c.target, {
      addr: parseAddr('192.168.2.1'),
      port: 81,
      bindAddr: parseAddr('192.168.1.1'),
      bindPort: 4000,
      bindInterface: null,
      fwmark: 9,
    });
  });

  test('checker_log_all_failures sets the default of every checker', () => {
    const text = 'global_defs {\n checker_log_all_failures\n}\n' + checkerIn('TCP_CHECK');
    assert.equal(firstChecker(text).logAllFailures, true);
  });

  test('virtualhost: url over checker over real server over virtual server', () => {
    const text = quietVs(
      ' virtualhost vs.example',
      'real_server 192.168.1.10 80 {\n virtualhost rs.example\n HTTP_GET {\n url {\n path /\n virtualhost url.example\n }\n }\n}\n',
    );
    const c = firstChecker(text);
    if (c.kind !== 'HTTP_GET') assert.fail(c.kind);
    assert.deepEqual([c.virtualhost, c.urls[0]!.virtualhost], ['rs.example', 'url.example']);
  });

  test('status_code ranges and digest', () => {
    const c = firstChecker(
      checkerIn(
        'HTTP_GET',
        'url {\n path /\n status_code 200 301-302\n digest 640205B7B0FC66C1EA91C463FAC6334D\n }',
      ),
    );
    if (c.kind !== 'HTTP_GET') assert.fail(c.kind);
    assert.deepEqual(c.urls[0], {
      path: '/',
      digest: '640205b7b0fc66c1ea91c463fac6334d',
      statusCodes: [
        [200, 200],
        [301, 302],
      ],
      virtualhost: null,
    });
  });

  test('checkers keepalived drops, with its warnings', () => {
    const text = quietVs(
      '',
      'real_server 192.168.1.10 80 {\n HTTP_GET {\n url {\n digest 640205b7b0fc66c1ea91c463fac6334d\n }\n }\n MISC_CHECK {\n }\n UDP_CHECK {\n min_reply_length 10\n max_reply_length 5\n }\n}\n',
    );
    assert.deepEqual(warnings(text), [
      '8: HTTP/SSL_GET checker url has no path - ignoring',
      '7: HTTP/SSL_GET checker has no urls specified - ignoring',
      '12: No script path has been specified for MISC_CHECKER - skipping',
      '14: UDP_CHECK min_reply length 10 > max_reply_length 5 - will always fail',
    ]);
    assert.deepEqual(
      parse(text).virtualServers[0]!.realServers[0]!.checkers.map((c) => c.kind),
      ['UDP_CHECK'],
    );
  });

  test('nb_get_retry still works, with the deprecation warning', () => {
    const text = checkerIn('HTTP_GET', 'nb_get_retry 5\n url {\n path /\n }');
    assert.deepEqual(warnings(text), ["8: nb_get_retry is deprecated - please use 'retry'"]);
    assert.equal(firstChecker(text).retry, 5);
  });

  test('an IPv6 link-local target without bind_if is dropped with the warning', () => {
    const text =
      'virtual_server 2001:db8::1 80 {\n protocol TCP\n lb_algo rr\n lb_kind NAT\n real_server fe80::1 80 {\n TCP_CHECK {\n }\n }\n}\n';
    assert.deepEqual(warnings(text), ['6: Checker link local address fe80::1 requires a bind_if']);
  });
});

describe('the other warnings keepalived gives', () => {
  test('second scripts, names, digests and paths: the first stays', () => {
    const text = quietVs(
      ' quorum_up /bin/a\n quorum_up /bin/b',
      'real_server 192.168.1.10 80 {\n notify_up /bin/c\n notify_up /bin/d\n HTTP_GET {\n url {\n path /x\n path /y\n digest 640205b7b0fc66c1ea91c463fac6334d\n digest 00000000000000000000000000000000\n }\n }\n DNS_CHECK {\n name a.example\n name b.example\n }\n}\n',
    );
    assert.deepEqual(warnings(text), [
      '6: ((null)) quorum_up script already specified - ignoring /bin/b',
      '9: ((null)) notify_up script already specified - ignoring /bin/d',
      '13: Duplicate path - overwriting /x with /y',
      "15: Digest '00000000000000000000000000000000' is a duplicate",
      '20: DNS_CHECK name already specified - ignoring',
    ]);
    const rs = parse(text).virtualServers[0]!.realServers[0]!;
    assert.deepEqual(rs.notifyUp!.argv, ['/bin/c']);
    const [http, dns] = rs.checkers;
    assert.ok(http!.kind === 'HTTP_GET' && dns!.kind === 'DNS_CHECK');
    assert.deepEqual(
      [http.urls[0]!.path, http.urls[0]!.digest, dns.name],
      ['/y', '640205b7b0fc66c1ea91c463fac6334d', 'a.example'],
    );
  });

  test('a sorry server of the other family is dropped', () => {
    const text = quietVs(' sorry_server 2001:db8::9 80');
    assert.deepEqual(warnings(text), [
      "5: Address family of virtual server and sorry server 2001:db8::9 don't match - skipping sorry server.",
    ]);
    assert.equal(parse(text).virtualServers[0]!.sorryServer, null);
  });

  test('a plain include of an unreadable file is skipped with the warning', () => {
    const result = readKeepalivedConf(
      {
        read: (path) =>
          path === MAIN ? new TextEncoder().encode('include other.conf\n') : { error: 'EACCES' },
        glob: (pattern) => [pattern],
      },
      MAIN,
      { configId: 'lb1' },
    );
    assert.ok(result.ok);
    assert.deepEqual(
      result.config.warnings.map((w) => w.message),
      ["Configuration file '/etc/keepalived/other.conf' open problem (EACCES) - skipping"],
    );
  });
});

describe('virtual_server_group', () => {
  const groupText = `virtual_server_group G {
 10.0.0.1 80
 10.0.0.10-12 443
 fwmark 5
}
virtual_server group G {
 protocol TCP
 lb_algo rr
 lb_kind NAT
 real_server 192.168.1.10 {
 }
 real_server 192.168.1.11 8443 {
 }
}
`;

  test('one service per address, range member and fwmark; real servers take each service port', () => {
    const config = parse(groupText);
    const vs = config.virtualServers[0]!;
    assert.equal(vs.name, '[G]:0');
    assert.deepEqual(
      vs.services.map((k) =>
        k.fwmark ? `fwm ${k.fwmark}` : `${k.protocol} ${formatAddr(k.addr)}:${k.port}`,
      ),
      [`${IPPROTO_TCP} 10.0.0.1:80`, '6 10.0.0.10:443', '6 10.0.0.11:443', '6 10.0.0.12:443', 'fwm 5'],
    );
    const ops = toControlOps(config).filter((o) => o.op === 'add-dest');
    assert.deepEqual(
      ops.slice(0, 4).map((o) => (o.op === 'add-dest' ? `${formatAddr(o.addr)}:${o.port}` : '')),
      ['192.168.1.10:80', '192.168.1.11:8443', '192.168.1.10:443', '192.168.1.11:8443'],
    );
  });

  test('an undefined group is an error; an empty one is removed with the warning', () => {
    assert.equal(
      parseError('virtual_server group NOPE {\n real_server 10.0.0.1 80 {\n }\n}\n'),
      '1: virtual server group NOPE is not defined',
    );
    const config = read('virtual_server_group E {\n}\n');
    assert.ok(config.ok);
    assert.deepEqual(
      config.config.warnings.map((w) => w.message),
      ['virtual server group E has no entries - removing'],
    );
  });

  test('a range too large is refused rather than made into thousands of services', () => {
    assert.match(
      parseError('virtual_server_group G {\n 10.0.0.0/8 80\n}\n'),
      /^2: Invalid virtual server group IP address|^2: .* makes \d+ services/,
    );
    assert.match(
      parseError('virtual_server_group G {\n 10.0.0.0/20 80\n}\n'),
      /^2: 10\.0\.0\.0\/20 makes 4096 services: lvsd takes at most 1024/,
    );
  });
});

describe('global_defs', () => {
  test('lvs_timeouts and lvs_flush become set-timeouts and clear', () => {
    const config = parse(
      'global_defs {\n router_id LB1\n lvs_timeouts tcp 7200 udp 60\n lvs_flush\n}\n' + quietVs(''),
    );
    assert.deepEqual(config.timeouts, { tcp: 7200, tcpfin: 0, udp: 60 });
    const ops = toControlOps(config);
    assert.deepEqual(ops.slice(0, 2), [
      { op: 'clear' },
      { op: 'set-timeouts', timeouts: { tcp: 7200, tcpfin: 0, udp: 60 } },
    ]);
  });

  test("lvs_timeouts up to ipvsadm's bound are taken; keepalived's bad values are refused", () => {
    assert.deepEqual(parse('global_defs {\n lvs_timeouts tcp 2678400\n}\n').timeouts, {
      tcp: 2678400,
      tcpfin: 0,
      udp: 0,
    });
    assert.equal(parseError('global_defs {\n lvs_timeouts tcp x\n}\n'), '2: Invalid lvs_timeout tcp (x)');
    assert.equal(
      parseError('global_defs {\n lvs_timeouts sctp 5\n}\n'),
      '2: Unknown option sctp specified for lvs_timeouts',
    );
  });

  test('VRRP, SMTP and process keywords are skipped without a word', () => {
    const config = parse(
      'global_defs {\n notification_email {\n a@b\n }\n smtp_server 1.2.3.4\n vrrp_skip_check_adv_addr\n}\n',
    );
    assert.deepEqual(config.warnings, []);
  });

  test('notify FIFOs, rs_init_notifies, script_user and script security are in the model', () => {
    const config = parse(
      'global_defs {\n lvs_notify_fifo /run/lvs.fifo\n lvs_notify_fifo_script "/bin/fifo.sh x"\n rs_init_notifies\n script_user nobody nogroup\n enable_script_security\n}\n',
    );
    assert.deepEqual(config.lvsNotifyFifo, {
      path: '/run/lvs.fifo',
      script: { argv: ['/bin/fifo.sh', 'x'], user: null, group: null },
    });
    assert.deepEqual(
      [config.rsInitNotifies, config.scriptUser, config.scriptSecurity],
      [true, { user: 'nobody', group: 'nogroup' }, true],
    );
  });

  test('lvs_sync_daemon is refused, pointing at lvsadm --start-daemon', () => {
    assert.match(
      parseError('global_defs {\n lvs_sync_daemon eth0 VI_1 id 5\n}\n'),
      /^2: lvs_sync_daemon: .*lvsadm --start-daemon/,
    );
  });
});

describe('skipping', () => {
  test('blocks lvsd does not use are skipped silently', () => {
    const text =
      'vrrp_instance VI_1 {\n state MASTER\n virtual_ipaddress {\n 10.0.0.1\n }\n}\nvrrp_script chk {\n script "/bin/true"\n}\nstatic_ipaddress {\n 1.2.3.4/24 dev eth0\n}\n' +
      quietVs('');
    const config = parse(text);
    assert.deepEqual(config.warnings, []);
    assert.equal(config.virtualServers.length, 1);
  });

  test('an unknown block is skipped whole with a warning: the next real server stays in its virtual server', () => {
    const text = quietVs(
      '',
      'unknown_thing {\n real_server 192.168.1.99 80 {\n }\n}\nreal_server 192.168.1.10 80 {\n}\nreal_server 192.168.1.11 80 {\n}\n',
    );
    const config = parse(text);
    assert.deepEqual(
      config.warnings.map((w) => `${w.line}: ${w.message}`),
      ["6: Unknown keyword 'unknown_thing'"],
    );
    assert.deepEqual(
      config.virtualServers[0]!.realServers.map((r) => formatAddr(r.addr)),
      ['192.168.1.10', '192.168.1.11'],
    );
  });

  test('an unknown keyword warns with its FILE:LINE', () => {
    const result = read('include extra.conf\n', { '/etc/keepalived/extra.conf': '\nfrobnicate 3\n' });
    assert.ok(result.ok);
    assert.deepEqual(result.config.warnings, [
      { file: '/etc/keepalived/extra.conf', line: 2, message: "Unknown keyword 'frobnicate'" },
    ]);
  });
});

describe('refusals: what lvsd cannot carry out yet', () => {
  const cases: Array<[string, string, RegExp]> = [
    [
      'lb_kind TUN type gue without a port',
      quietVs('').replace('lb_kind NAT', 'lb_kind TUN type gue csum'),
      /^4: lb_kind TUN type gue needs a port/,
    ],
    [
      'lb_kind TUN with a port for gre',
      quietVs('').replace('lb_kind NAT', 'lb_kind TUN type gre port 6080'),
      /^4: lb_kind TUN: port is for type gue only/,
    ],
    [
      'lb_kind TUN ipip with a checksum option',
      quietVs('').replace('lb_kind NAT', 'lb_kind TUN csum'),
      /^4: lb_kind TUN: type ipip takes no checksum option/,
    ],
    [
      'lb_kind TUN gre remcsum',
      quietVs('').replace('lb_kind NAT', 'lb_kind TUN type gre remcsum'),
      /^4: lb_kind TUN: type gre takes nocsum or csum, not remcsum/,
    ],
    [
      'lvs_method TUN with an unknown type',
      quietVs('', 'real_server 192.168.1.10 80 {\n lvs_method TUN type vxlan\n}\n'),
      /^7: lvs_method TUN: unknown tunnel type 'vxlan' \(ipip, gue or gre\)/,
    ],
    [
      'lvs_method TUN with an unknown option',
      quietVs('', 'real_server 192.168.1.10 80 {\n lvs_method TUN key 5\n}\n'),
      /^7: Invalid tunnel option key for real server\./,
    ],
    [
      'lvs_method TUN with two checksum options',
      quietVs('', 'real_server 192.168.1.10 80 {\n lvs_method TUN type gue port 6080 csum nocsum\n}\n'),
      /^7: lvs_method TUN: nocsum given twice/,
    ],
    [
      'lb_kind DR with a tunnel option',
      quietVs('').replace('lb_kind NAT', 'lb_kind DR csum'),
      /^4: Invalid tunnel option csum/,
    ],
    ['SMTP_CHECK', checkerIn('SMTP_CHECK'), /^7: SMTP_CHECK: SMTP_CHECK is not supported by lvsd yet/],
    ['FILE_CHECK', checkerIn('FILE_CHECK'), /^7: FILE_CHECK: FILE_CHECK is not supported/],
    ['BFD_CHECK', checkerIn('BFD_CHECK'), /^7: BFD_CHECK: BFD_CHECK is not supported/],
    [
      'persistence_engine other than sip',
      quietVs(' persistence_engine foo'),
      /^5: persistence_engine 'foo' is not supported \(lvsd has: sip\)/,
    ],
    ['ha_suspend', quietVs(' ha_suspend'), /^5: ha_suspend: ha_suspend follows VRRP/],
    ['smtp_alert', quietVs(' smtp_alert'), /^5: smtp_alert: lvsd sends no SMTP alerts/],
    [
      'HTTP regex',
      checkerIn('HTTP_GET', 'url {\n path /\n regex "ok"\n }'),
      /^10: regex: HTTP_GET regex is not supported/,
    ],
    [
      'require_reply wildcards',
      checkerIn('UDP_CHECK', 'require_reply 01XX'),
      /^8: UDP_CHECK require_reply with X wildcards/,
    ],
    ['net_namespace', 'net_namespace blue\n', /^1: net_namespace: lvsd runs in its own network namespace/],
    ['SSL block', 'SSL {\n certificate /x.pem\n}\n', /^1: SSL: SSL client certificates/],
    ['lvs_flush_on_stop', 'global_defs {\n lvs_flush_on_stop\n}\n', /^2: lvs_flush_on_stop:/],
    ['hashed', quietVs(' hashed'), /^5: hashed is not an IPVS scheduler flag/],
  ];
  for (const [name, text, expected] of cases) {
    test(name, () => assert.match(parseError(text), expected));
  }

  test('a refusal gives no model at all', () => {
    const result = read(quietVs('') + checkerIn('SMTP_CHECK'));
    assert.equal(result.ok, false);
    assert.equal('config' in result, false);
  });
});

describe('errors at FILE:LINE, nothing partial', () => {
  const cases: Array<[string, string, string]> = [
    ['an extra }', quietVs('') + '}\n', "9: Extra '}' found"],
    [
      'a block never closed',
      'virtual_server 10.0.0.1 80 {\n protocol TCP\n',
      "1: 'virtual_server' block has no closing '}'",
    ],
    [
      'a block keyword without {',
      'virtual_server 10.0.0.1 80\n',
      "1: Missing '{' at beginning of configuration block 'virtual_server'",
    ],
    ['a { with no keyword', '{\n}\n', "1: Unexpected '{'"],
    [
      'a { after a keyword that takes none',
      quietVs(' delay_loop 5 {\n }'),
      "5: Unexpected '{' after 'delay_loop', which takes no block",
    ],
    [
      'a bad address',
      'virtual_server 10.0.0.300 80 {\n}\n',
      '1: Invalid virtual server IP address/port 10.0.0.300/80',
    ],
    [
      'a bad port',
      'virtual_server 10.0.0.1 99999 {\n}\n',
      '1: Invalid virtual server IP address/port 10.0.0.1/99999',
    ],
    [
      'a bad scheduler',
      quietVs('').replace('lb_algo rr', 'lb_algo fastest'),
      "3: Invalid lvs_scheduler 'fastest'",
    ],
    ['a bad protocol', quietVs('').replace('protocol TCP', 'protocol ICMP'), '2: Unknown protocol ICMP'],
    ['a bad timer', quietVs(' delay_loop soon'), "5: virtual server delay loop 'soon' invalid"],
    ['a zero delay_loop', quietVs(' delay_loop 0'), "5: virtual server delay loop '0' invalid"],
    ['a bad checker timer', checkerIn('TCP_CHECK', 'connect_timeout -1'), '8: connect_timeout -1 invalid'],
    [
      'a bad status code',
      checkerIn('HTTP_GET', 'url {\n path /\n status_code 99\n }'),
      "10: Invalid HTTP_GET status code '99'",
    ],
    [
      'a short digest',
      checkerIn('HTTP_GET', 'url {\n path /\n digest abc\n }'),
      "10: digest 'abc' character length should be 32 rather than 3",
    ],
    ['a bad persistence timeout', quietVs(' persistence_timeout 3000000'), '5: persistence_timeout invalid'],
    [
      'a fwmark 0',
      'virtual_server fwmark 0 {\n}\n',
      "1: virtual server fwmark '0' must be in [1, 4294967295]",
    ],
    [
      'a service defined twice',
      quietVs('') + quietVs(''),
      '9: virtual server [10.0.0.1]:tcp:80: its service is already defined at /etc/keepalived/keepalived.conf:1',
    ],
    [
      'a non-contiguous netmask',
      quietVs(' persistence_granularity 255.0.255.0'),
      '5: persistence_granularity 255.0.255.0: lvsd needs a contiguous netmask',
    ],
    [
      'lthreshold above uthreshold (the director would refuse it)',
      quietVs('', 'real_server 192.168.1.10 80 {\n uthreshold 10\n lthreshold 20\n}\n'),
      '6: real server lthreshold 20 is above its uthreshold 10',
    ],
    [
      'an IPv6 real server in a group of IPv4 addresses',
      'virtual_server_group G {\n 10.0.0.1 80\n}\nvirtual_server group G {\n protocol TCP\n real_server 2001:db8::1 80 {\n }\n}\n',
      "6: Address family of virtual server [G]:0 (10.0.0.1) and real server 2001:db8::1 don't match",
    ],
    [
      'a group real server without a port meeting one with the service port',
      'virtual_server_group G {\n 10.0.0.1 80\n 10.0.0.2 81\n}\nvirtual_server group G {\n protocol TCP\n real_server 10.0.1.1 {\n }\n real_server 10.0.1.1 81 {\n }\n}\n',
      '9: real server 10.0.1.1:81 would be in service 10.0.0.2:81 twice',
    ],
  ];
  for (const [name, text, expected] of cases) {
    test(name, () => assert.equal(parseError(text), expected));
  }

  test('an error in an included file names that file', () => {
    assert.equal(
      parseError('include vs.conf\n', { '/etc/keepalived/vs.conf': quietVs(' delay_loop x') }),
      "/etc/keepalived/vs.conf:5: virtual server delay loop 'x' invalid",
    );
  });

  test('warnings seen before the error come back with it', () => {
    const result = read('frob\n' + quietVs(' delay_loop x'));
    assert.ok(!result.ok);
    assert.deepEqual(
      result.warnings.map((w) => w.message),
      ["Unknown keyword 'frob'"],
    );
  });
});

describe('lb_kind DR: direct routing (the data plane says at start whether it delivers it)', () => {
  const methods = (text: string) =>
    toControlOps(parse(text)).flatMap((op) =>
      op.op === 'add-dest' ? [`${formatAddr(op.addr)}:${op.port} ${op.settings.method}`] : [],
    );

  test('on the virtual server: every real server begun after it, at the service port', () => {
    const text = quietVs('').replace('lb_kind NAT', 'lb_kind DR');
    assert.deepEqual(methods(text), ['192.168.1.10:80 route']);
    assert.deepEqual(warnings(text), [
      "6: WARNING - virtual server [10.0.0.1]:tcp:80 and real server [192.168.1.10]:tcp:8080 ports don't match - resetting",
    ]);
  });

  test('lvs_method on a real server overrides the virtual server, both ways', () => {
    const both = 'real_server 192.168.1.10 80 {\n lvs_method DR\n}\nreal_server 192.168.1.11 80 {\n}\n';
    assert.deepEqual(methods(quietVs('', both)), ['192.168.1.10:80 route', '192.168.1.11:80 masq']);
    const nat = 'real_server 192.168.1.10 8080 {\n lvs_method NAT\n}\n';
    assert.deepEqual(methods(quietVs('', nat).replace('lb_kind NAT', 'lb_kind DR')), [
      '192.168.1.10:8080 masq',
    ]);
  });

  test('sorry_server_lvs_method DR: the sorry server is directly routed', () => {
    const config = parse(quietVs(' sorry_server 192.168.1.99 8080\n sorry_server_lvs_method DR'));
    const sorry = config.virtualServers[0]!.sorryServer!;
    assert.deepEqual([sorry.port, sorry.settings.method], [80, 'route']);
  });
});

describe("lb_kind TUN: tunnelling, with keepalived's tunnel options", () => {
  const dests = (text: string) =>
    toControlOps(parse(text)).flatMap((op) =>
      op.op === 'add-dest' ? [[`${formatAddr(op.addr)}:${op.port}`, op.settings] as const] : [],
    );

  test('on the virtual server: every real server begun after it tunnels the same way, at the service port', () => {
    const text = quietVs('').replace('lb_kind NAT', 'lb_kind TUN type gue port 6080 csum');
    assert.deepEqual(dests(text), [
      [
        '192.168.1.10:80',
        {
          method: 'tunnel',
          weight: 1,
          uThreshold: 0,
          lThreshold: 0,
          tunnel: { type: 'gue', port: 6080, csum: 'csum' },
        },
      ],
    ]);
  });

  test('lvs_method on a real server: bare TUN is ipip; gre with csum', () => {
    const rs =
      'real_server 192.168.1.10 80 {\n lvs_method TUN\n}\n' +
      'real_server 192.168.1.11 80 {\n lvs_method TUN type gre csum\n}\n';
    assert.deepEqual(
      dests(quietVs('', rs)).map(([dest, settings]) => [dest, settings.method, settings.tunnel]),
      [
        ['192.168.1.10:80', 'tunnel', { type: 'ipip', port: 0, csum: 'nocsum' }],
        ['192.168.1.11:80', 'tunnel', { type: 'gre', port: 0, csum: 'csum' }],
      ],
    );
  });

  test('sorry_server_lvs_method TUN: the sorry server is tunnelled', () => {
    const config = parse(quietVs(' sorry_server 192.168.1.99 8080\n sorry_server_lvs_method TUN type gre'));
    const sorry = config.virtualServers[0]!.sorryServer!;
    assert.deepEqual([sorry.port, sorry.settings.method, sorry.settings.tunnel?.type], [80, 'tunnel', 'gre']);
  });
});

describe('keepalived port rules for DR and TUN', () => {
  test('NAT keeps a real server port; without one it takes the service port', () => {
    assert.deepEqual(resolveServerPort('masq', { fwmark: 0, port: 80, group: false }, 8080), {
      port: 8080,
      warning: null,
    });
    assert.deepEqual(resolveServerPort('masq', { fwmark: 0, port: 80, group: false }, 0), {
      port: 80,
      warning: null,
    });
  });

  test('DR forces the service port: "ports don\'t match - resetting"; fwmark clears it', () => {
    assert.deepEqual(resolveServerPort('route', { fwmark: 0, port: 80, group: false }, 8080), {
      port: 80,
      warning: 'resetting',
    });
    assert.deepEqual(resolveServerPort('route', { fwmark: 0, port: 80, group: false }, 80), {
      port: 80,
      warning: null,
    });
    assert.deepEqual(resolveServerPort('tunnel', { fwmark: 3, port: 0, group: false }, 80), {
      port: 0,
      warning: 'clearing',
    });
  });
});

describe('toControlOps', () => {
  test('each service, then its real servers at their configured weights; no sorry server', () => {
    const config = parse(
      quietVs(
        ' sorry_server 192.168.1.99 80\n persistence_timeout 600',
        'real_server 192.168.1.10 8080 {\n weight 2\n}\nreal_server 192.168.1.11 {\n uthreshold 50\n}\n',
      ),
    );
    const key = { af: 4, protocol: IPPROTO_TCP, addr: addr4(0x0a000001), port: 80, fwmark: 0 };
    assert.deepEqual(toControlOps(config), [
      {
        op: 'add-service',
        key,
        settings: { scheduler: 'rr', flags: SVC_F_PERSISTENT, timeout: 600, netmaskPrefix: 32, pe: null },
      },
      {
        op: 'add-dest',
        key,
        addr: addr4(0xc0a8010a),
        port: 8080,
        settings: { method: 'masq', weight: 2, uThreshold: 0, lThreshold: 0 },
      },
      {
        op: 'add-dest',
        key,
        addr: addr4(0xc0a8010b),
        port: 80,
        settings: { method: 'masq', weight: 1, uThreshold: 50, lThreshold: 0 },
      },
    ]);
  });

  test('the file list holds every file read', () => {
    const config = parse('include a.conf\n', { '/etc/keepalived/a.conf': '' });
    assert.deepEqual(config.files, [MAIN, '/etc/keepalived/a.conf']);
  });
});
