// Checks shared by the labs whose real servers answer the client themselves (LVS-TUN, LVS-DR):
// round robin with the client's own address at the real servers, and 50 MB each way intact with
// no reply through the director.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Lab } from '../../src/lab/lab.js';
import type { Lvsd } from './harness.js';

export const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

const curl = (lab: Lab, args: string[]): string =>
  lab.run(lab.ns.client, ['curl', '-sS', '--max-time', '60', ...args]);

export const vipUrl = (lab: Lab, path: string): string => `http://${lab.addr.vip}${path}`;

/** Four requests: two for each real server, each of which saw (and logged) the client itself. */
export function assertRoundRobinSeesClient(lab: Lab): void {
  const answers = [1, 2, 3, 4].map(() => curl(lab, [vipUrl(lab, '/')]));
  const who = answers.map((a) => /This is Real Server (\d), you are (\S+)/.exec(a)!.slice(1));
  assert.deepEqual(who.map(([n]) => n).sort(), ['1', '1', '2', '2']);
  for (const [, client] of who) assert.equal(client, lab.addr.client);
  for (const i of [0, 1]) assert.ok(lab.accessLog(i).some((l) => l.startsWith(`${lab.addr.client} / 200`)));
}

/** The bulk file to the client, intact, with not one reply packet through lvsd. */
export function assertDownloadBypassesDirector(lab: Lab, director: Lvsd): void {
  const expected = sha256(readFileSync(lab.bulkFile!));
  const script = `curl -sS --max-time 120 ${vipUrl(lab, '/files/bulk.bin')} | sha256sum`;
  assert.equal(lab.run(lab.ns.client, ['sh', '-c', script], { timeoutMs: 130_000 }).split(' ')[0], expected);
  const [stats] = director.stats();
  assert.equal(stats!.outPkts, 0, 'no reply went through lvsd');
  assert.ok(stats!.inPkts > 0);
}

/** The bulk file from the client, stored intact (as `name`) by one real server. */
export function assertUploadStoredOnce(lab: Lab, name = 'up.bin'): void {
  curl(lab, ['-T', lab.bulkFile!, vipUrl(lab, `/upload/${name}`)]);
  const stored = [0, 1]
    .map((i) => join(lab.tmpDir, `rs${i + 1}`, 'www', 'upload', name))
    .filter((path) => {
      try {
        return readFileSync(path).length > 0;
      } catch {
        return false;
      }
    });
  assert.equal(stored.length, 1, 'one real server stored the upload');
  assert.equal(sha256(readFileSync(stored[0]!)), sha256(readFileSync(lab.bulkFile!)));
}
