import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import type { DeviceCounters } from '../../src/core/ops.js';
import { cleanupStaleLabs } from '../../src/lab/lab.js';
import { DATAPLANE } from './harness.js';

const root = process.getuid?.() === 0;
const PREFIX = 'lvstun';
const ns = `${PREFIX}${process.pid}-a`;

/**
 * The TUN device and its worker loop alone, no lvsd: the same test on every plane, run once, with
 * the TUN plane's suites.
 */
const skip = !root
  ? 'needs root for network namespaces'
  : DATAPLANE === 'packet'
    ? 'the TUN device itself, no director: run on --dataplane tun'
    : false;

describe('TUN worker packet loop (root, netns)', { skip }, () => {
  before(() => {
    cleanupStaleLabs(PREFIX);
    execFileSync('ip', ['netns', 'add', ns]);
    execFileSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  });
  after(() => {
    execFileSync('ip', ['netns', 'del', ns]);
  });

  it('reads, rewrites and writes back frames, large datagrams included, and counts them', async () => {
    const reflector = spawn(
      'ip',
      ['netns', 'exec', ns, process.execPath, new URL('./tun-reflector.js', import.meta.url).pathname],
      {
        stdio: ['pipe', 'pipe', 'inherit'],
      },
    );
    let out = '';
    reflector.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
    try {
      while (!out.includes('ready\n')) await once(reflector.stdout, 'data');
      const sizes = [1, 1400, 4000, 60000];
      for (const size of sizes) {
        const payload = randomBytes(size);
        // The stub swaps addresses and ports: the datagram comes back from where it was sent.
        const echoed = execFileSync(
          'ip',
          ['netns', 'exec', ns, 'socat', '-T2', '-b65536', '-', 'UDP:198.18.9.2:7,sourceport=4000'],
          { input: payload, timeout: 5000 },
        );
        assert.equal(echoed.length, size, `datagram of ${size} bytes`);
        assert.ok(echoed.equals(payload));
      }
      reflector.stdin.end();
      await once(reflector, 'exit');
      const stats = JSON.parse(out.split('\n')[1]!) as DeviceCounters;
      assert.ok(stats.rxPackets >= sizes.length, JSON.stringify(stats));
      assert.ok(stats.txPackets >= sizes.length);
      assert.ok(stats.txBytes >= sizes.reduce((a, b) => a + b + 28, 0));
      // The device went away with the worker.
      assert.throws(() => execFileSync('ip', ['-n', ns, 'link', 'show', 'lvs0'], { stdio: 'pipe' }));
    } finally {
      reflector.kill('SIGKILL');
    }
  });
});
