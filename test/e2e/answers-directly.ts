// Checks shared by the labs whose real servers answer the client themselves (LVS-TUN, LVS-DR):
// round robin with the client's own address at the real servers, and 50 MB each way intact with
// no reply through the director. Each takes the family's addresses (the lab's IPv4 ones unless
// told: lab.addr6 for IPv6, curl -6).

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Lab, LabAddresses } from '../../src/lab/lab.js';
import { hostState, type Lvsd } from './harness.js';

export const sha256 = (data: Buffer | string): string => createHash('sha256').update(data).digest('hex');

const v6 = (addr: LabAddresses): boolean => addr.vip.includes(':');

/** curl's options for the family: -6 for IPv6, as an operator checks that the service has it. */
const curlFamily = (addr: LabAddresses): string[] => (v6(addr) ? ['-6'] : []);

const curl = (lab: Lab, addr: LabAddresses, args: string[]): string =>
  lab.run(lab.ns.client, ['curl', ...curlFamily(addr), '-sS', '--max-time', '60', ...args]);

export const vipUrl = (lab: Lab, path: string, addr = lab.addr): string =>
  `http://${v6(addr) ? `[${addr.vip}]` : addr.vip}${path}`;

/** Four requests: two for each real server, each of which saw (and logged) the client itself. */
export function assertRoundRobinSeesClient(lab: Lab, addr = lab.addr): void {
  const answers = [1, 2, 3, 4].map(() => curl(lab, addr, [vipUrl(lab, '/', addr)]));
  const who = answers.map((a) => /This is Real Server (\d), you are (\S+)/.exec(a)!.slice(1));
  assert.deepEqual(who.map(([n]) => n).sort(), ['1', '1', '2', '2']);
  for (const [, client] of who) assert.equal(client, addr.client);
  for (const i of [0, 1]) assert.ok(lab.accessLog(i).some((l) => l.startsWith(`${addr.client} / 200`)));
}

/** The bulk file to the client, intact, with not one reply packet through lvsd. */
export function assertDownloadBypassesDirector(lab: Lab, director: Lvsd, addr = lab.addr): void {
  const expected = sha256(readFileSync(lab.bulkFile!));
  const options = [...curlFamily(addr), '-sS', '--max-time', '120'].join(' ');
  const script = `curl ${options} ${vipUrl(lab, '/files/bulk.bin', addr)} | sha256sum`;
  assert.equal(lab.run(lab.ns.client, ['sh', '-c', script], { timeoutMs: 130_000 }).split(' ')[0], expected);
  const [stats] = director.stats();
  assert.equal(stats!.outPkts, 0, 'no reply went through lvsd');
  assert.ok(stats!.inPkts > 0);
}

/** The bulk file from the client, stored intact (as `name`) by one real server. */
export function assertUploadStoredOnce(lab: Lab, addr = lab.addr, name = 'up.bin'): void {
  curl(lab, addr, ['-T', lab.bulkFile!, vipUrl(lab, `/upload/${name}`, addr)]);
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

/** A suite's end: lvsd stops for good and leaves the director host as found (`stateBefore`); the lab goes. */
export async function stopForGood(
  lab: Lab | undefined,
  director: Lvsd | undefined,
  stateBefore: string,
  cleanup: () => void = () => undefined,
): Promise<void> {
  try {
    await director?.stop();
    if (lab) assert.equal(hostState(lab), stateBefore, 'the director host is left as found');
  } finally {
    director?.kill();
    cleanup();
    lab?.teardown();
  }
}
