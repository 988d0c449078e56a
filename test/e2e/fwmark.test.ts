// A firewall-mark service as IPVS operators run one: their own nftables rule marks the packets
// (mangle/prerouting), `lvsadm -A -f MARK` balances whatever carries the mark, any port.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { hostState, ROOT_SKIP, setupLab, type Setup } from './harness.js';

describe('fwmark services (root, netns)', { skip: ROOT_SKIP, concurrency: false }, () => {
  let s: Setup;
  before(async () => {
    s = await setupLab();
  });
  after(async () => {
    await s?.teardown();
  });

  it("traffic the operator's rule marks is balanced across the real servers, on every marked port", async () => {
    const { vip, client, realServers } = s.lab.addr;
    const nft = (rule: string) => s.lab.run(s.lab.ns.director, ['nft', ...rule.split(' ')]);
    nft('add table ip operator');
    nft('add chain ip operator pre { type filter hook prerouting priority mangle ; }');
    nft(`add rule ip operator pre ip daddr ${vip} tcp dport { 8080, 8443 } meta mark set 7`);
    s.director.adm('-A -f 7 -s rr');
    for (const rs of realServers) s.director.adm(`-a -f 7 -r ${rs}:80 -m`);

    const answers = [8080, 8443, 8080, 8443].map((port) => s.curl(`http://${vip}:${port}/`));
    const servers = answers.map((body) => /This is Real Server (\d+), you are (\S+)/.exec(body));
    assert.ok(servers.every(Boolean), answers.join('\n'));
    assert.deepEqual(new Set(servers.map((m) => m![1])), new Set(['1', '2']), 'both real servers answered');
    assert.ok(
      servers.every((m) => m![2] === client),
      'the real servers see the client',
    );
    const stats = s.director.stats().find((svc) => svc.service === 'FWM 7')!;
    assert.equal(stats.conns, 4);

    s.director.adm('-D -f 7');
    nft('delete table ip operator');
    assert.equal(await s.director.stop(), 0, s.director.log);
    assert.equal(hostState(s.lab), s.stateBefore, 'the fwmark device, its table and its rule are gone');
  });
});
