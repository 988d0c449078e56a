// The data plane failing under lvsd, as an operator's bad day would have it: lvsd must not go on
// answering lvsadm with nothing forwarded. It logs why, leaves the host as it found it, and exits
// non-zero so that systemd restarts it.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { hostState, ROOT_SKIP, setupLab, type Setup } from './harness.js';

describe('data-plane failures (root, netns)', { skip: ROOT_SKIP, concurrency: false }, () => {
  let s: Setup;
  before(async () => {
    s = await setupLab();
  });
  after(async () => {
    await s?.teardown();
  });

  it("ICMP errors for the host's own sockets on the VIP reach them (UDP connection refused)", () => {
    const { vip, client, realServers } = s.lab.addr;
    s.director.adm(`-A -t ${vip}:80 -s rr`);
    s.director.adm(`-a -t ${vip}:80 -r ${realServers[0]}:80 -m`);
    // Nothing listens on the client's port 9: its port unreachable comes back to the VIP.
    const probe = spawnSync(
      'ip',
      ['netns', 'exec', s.lab.ns.director, 'socat', '-T3', '-', `UDP:${client}:9,bind=${vip}`],
      { input: 'ping\nping\n', encoding: 'utf8', timeout: 10_000 },
    );
    assert.match(probe.stderr, /Connection refused/);
    const json = JSON.parse(s.director.adm('-L --json')) as { dataPath: { passed: Record<string, number> } };
    assert.ok(json.dataPath.passed['icmp-for-host']! >= 1, JSON.stringify(json.dataPath));
    s.director.adm('-C');
  });

  it("packets the kernel dropped while lvsd could not read are counted in -L --json's dataPath", async () => {
    const { vip, realServers } = s.lab.addr;
    s.director.adm(`-A -u ${vip}:9999 -s rr`);
    s.director.adm(`-a -u ${vip}:9999 -r ${realServers[0]}:9999 -m`);
    const queueFull = () =>
      (JSON.parse(s.director.adm('-L --json')) as { dataPath: { device: { drops: { queueFull: number } } } })
        .dataPath.device.drops.queueFull;
    assert.equal(queueFull(), 0);
    s.director.signal('SIGSTOP');
    try {
      // 3000 datagrams while nothing reads the device: far more than its queue holds.
      const burst = spawnSync(
        'ip',
        [
          'netns',
          'exec',
          s.lab.ns.client,
          process.execPath,
          '-e',
          `const s = require('dgram').createSocket('udp4');
           let round = 0;
           const send = () => {
             for (let i = 0; i < 100; i++) s.send('x', 9999, '${vip}');
             if (++round < 30) setImmediate(send); else setTimeout(() => s.close(), 200);
           };
           send();`,
        ],
        { encoding: 'utf8', timeout: 10_000 },
      );
      assert.equal(burst.status, 0, burst.stderr);
    } finally {
      s.director.signal('SIGCONT');
    }
    const dropped = queueFull();
    assert.ok(dropped > 0 && dropped <= 3000, `queue-full drops: ${dropped}`);
    s.director.adm('-C');
  });

  it('its device deleted, lvsd logs the failure, undoes its plumbing and exits non-zero', async () => {
    const { vip, realServers } = s.lab.addr;
    s.director.adm(`-A -t ${vip}:80 -s rr`);
    s.director.adm(`-a -t ${vip}:80 -r ${realServers[0]}:80 -m`);
    assert.match(s.curl(`http://${vip}/`), /Real Server/);
    s.lab.run(s.lab.ns.director, ['ip', 'link', 'del', 'lvs0']);
    assert.equal(await s.director.exitCode(10_000), 1);
    assert.match(s.director.log, /data-plane worker died: .*read lvs0/);
    assert.equal(hostState(s.lab), s.stateBefore);
  });
});
