// lvsd without root: a user with CAP_NET_ADMIN and CAP_NET_RAW in its ambient set (what
// packaging/lvsd.service gives it) runs the data plane and forwards; without them, lvsd stops at
// once naming what it lacks, root included, and changes nothing on the host.

import assert from 'node:assert/strict';
import { chownSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { buildLab, type Lab } from '../../src/lab/lab.js';
import { hostState, Lvsd, ROOT_SKIP } from './harness.js';

const NOBODY = 65534;
const AS_NOBODY = ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups'];
const WITH_CAPS = ['--inh-caps=+net_admin,+net_raw', '--ambient-caps=+net_admin,+net_raw'];

describe(
  'capabilities instead of root (root, netns, setpriv)',
  { skip: ROOT_SKIP, concurrency: false },
  () => {
    let lab: Lab;
    let stateBefore: string;
    let launcher: (dir: string, setpriv: string[]) => string[];
    before(() => {
      lab = buildLab({ prefix: 'lvq12cap' });
      stateBefore = hostState(lab);
      // This machine's /dev/net/tun may be root-only (Debian's udev makes it 0666): lvsd's own
      // mount namespace gets a 0666 node of the same device, as a stock host has.
      launcher = (dir, setpriv) => [
        'unshare',
        '-m',
        '--propagation',
        'private',
        'sh',
        '-c',
        `mknod -m 0666 ${dir}/tun c 10 200 && mount --bind ${dir}/tun /dev/net/tun && exec "$@"`,
        'sh',
        ...setpriv,
      ];
    });
    after(() => lab?.teardown());

    const site = (name: string, setpriv: string[]) => {
      const dir = join(lab.tmpDir, name);
      mkdirSync(join(dir, 'state'), { recursive: true });
      chownSync(dir, NOBODY, NOBODY);
      chownSync(join(dir, 'state'), NOBODY, NOBODY);
      return { ns: lab.ns.director, dir, launcher: launcher(dir, setpriv) };
    };

    it('a user without the capabilities is refused with a clear message, and the host is untouched', async () => {
      const lvsd = new Lvsd(lab, [], site('bare', AS_NOBODY));
      assert.equal(await lvsd.exitCode(15_000), 1);
      assert.match(
        lvsd.log,
        /cannot start: the data plane needs CAP_NET_ADMIN and CAP_NET_RAW .*--no-dataplane/,
      );
      assert.equal(hostState(lab), stateBefore);
    });

    it('root without CAP_NET_ADMIN is refused too: the check is on capabilities, not uid 0', async () => {
      const lvsd = new Lvsd(
        lab,
        [],
        site('root', ['setpriv', '--bounding-set=-net_admin', '--inh-caps=-net_admin']),
      );
      assert.equal(await lvsd.exitCode(15_000), 1);
      assert.match(lvsd.log, /cannot start: the data plane needs CAP_NET_ADMIN \(/);
    });

    it('a user with CAP_NET_ADMIN and CAP_NET_RAW ambient runs the data plane: traffic flows, stop undoes it all', async () => {
      // No restart hold: this stop is for good, and leaves the host exactly as found.
      const lvsd = new Lvsd(lab, ['--restart-hold', '0'], site('caps', [...AS_NOBODY, ...WITH_CAPS]));
      try {
        await lvsd.ready();
        const { vip, realServers } = lab.addr;
        lvsd.adm(`-A -t ${vip}:80 -s rr`);
        for (const rs of realServers) lvsd.adm(`-a -t ${vip}:80 -r ${rs}:80 -m`);
        const bodies = [1, 2].map(() =>
          lab.run(lab.ns.client, ['curl', '-sS', '--max-time', '10', `http://${vip}/`]),
        );
        assert.deepEqual(bodies.sort(), [
          'This is Real Server 1, you are 198.18.0.2\n',
          'This is Real Server 2, you are 198.18.0.2\n',
        ]);
        assert.equal(await lvsd.stop(), 0);
        assert.equal(hostState(lab), stateBefore);
      } finally {
        lvsd.kill();
      }
    });
  },
);
