// The data plane failing under lvsd, as an operator's bad day would have it: lvsd must not go on
// answering lvsadm with nothing forwarded. It logs why, leaves the host as it found it, and exits
// non-zero so that systemd restarts it.

import assert from 'node:assert/strict';
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
