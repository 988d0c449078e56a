// A real lvsd with --http, configured with the lvsadm binary: /metrics follows the table, promtool
// accepts it, hostile HTTP clients do not stop lvsd from answering lvsadm, bad addresses stop it at start.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { removeDir, runDaemonToExit, runLvsadmBinary, spawnDaemon, tempDir } from '../cli/daemon-harness.js';
import type { SpawnedDaemon } from '../cli/daemon-harness.js';
import { fetchText, freePort, promtoolCheck, PROMTOOL_SKIP, rawExchange, stalledClient } from './helpers.js';

async function withHttpDaemon(body: (daemon: SpawnedDaemon, url: string) => Promise<void>): Promise<void> {
  const dir = await tempDir('lvsd-http-');
  let daemon: SpawnedDaemon | null = null;
  try {
    const port = await freePort();
    daemon = await spawnDaemon(dir, join(dir, 'state'), {
      args: ['--http', String(port)],
      ready: 'http: serving',
    });
    await body(daemon, `http://127.0.0.1:${port}`);
  } finally {
    await daemon?.stop();
    await removeDir(dir);
  }
}

const lvsadm = (daemon: SpawnedDaemon, ...args: string[]) =>
  runLvsadmBinary(args, { LVSD_SOCKET: daemon.socketPath });

const SETUP = [
  ['-A', '-t', '198.18.0.1:80', '-s', 'rr'],
  ['-a', '-t', '198.18.0.1:80', '-r', '198.18.1.11:80', '-m', '-w', '3'],
  ['-a', '-t', '198.18.0.1:80', '-r', '198.18.1.12:80', '-m', '-w', '0'],
  ['-A', '-f', '23', '-s', 'wlc'],
  ['-a', '-f', '23', '-r', '198.18.1.13', '-m', '-w', '7'],
  ['-A', '-u', '[2001:db8::1]:53', '-s', 'sh'],
  ['-a', '-u', '[2001:db8::1]:53', '-r', '[2001:db8:0:1::11]:53', '-m'],
];

test('lvsd --http: /metrics follows what lvsadm configures', async () => {
  await withHttpDaemon(async (daemon, url) => {
    assert.match(
      daemon.stderr(),
      new RegExp(`info http: serving /metrics on ${url.replace(/\./g, '\\.')}\n`),
    );
    for (const args of SETUP) assert.equal((await lvsadm(daemon, ...args)).code, 0, args.join(' '));
    const reply = await fetchText(`${url}/metrics`);
    assert.equal(reply.status, 200);
    const weights = reply.body.split('\n').filter((line) => line.startsWith('node_ipvs_backend_weight{'));
    assert.deepEqual(weights, [
      'node_ipvs_backend_weight{local_address="198.18.0.1",local_mark="",local_port="80",proto="TCP",remote_address="198.18.1.11",remote_port="80"} 3',
      'node_ipvs_backend_weight{local_address="198.18.0.1",local_mark="",local_port="80",proto="TCP",remote_address="198.18.1.12",remote_port="80"} 0',
      'node_ipvs_backend_weight{local_address="2001:db8::1",local_mark="",local_port="53",proto="UDP",remote_address="2001:db8:0:1::11",remote_port="53"} 1',
      'node_ipvs_backend_weight{local_address="",local_mark="00000017",local_port="0",proto="FWM",remote_address="198.18.1.13",remote_port="0"} 7',
    ]);
    assert.match(reply.body, /^lvsd_build_info\{node_version="v\d+\.\d+\.\d+",version="\d+\.\d+\.\d+"\} 1$/m);

    // A change shows on the next scrape.
    assert.equal(
      (await lvsadm(daemon, '-e', '-t', '198.18.0.1:80', '-r', '198.18.1.12:80', '-m', '-w', '5')).code,
      0,
    );
    assert.equal((await lvsadm(daemon, '-D', '-f', '23')).code, 0);
    const after = (await fetchText(`${url}/metrics`)).body;
    assert.match(after, /^node_ipvs_backend_weight\{[^}]*remote_address="198\.18\.1\.12"[^}]*\} 5$/m);
    assert.doesNotMatch(after, /FWM/);
  });
});

test("lvsd --http: promtool accepts a real daemon's /metrics", { skip: PROMTOOL_SKIP }, async () => {
  await withHttpDaemon(async (daemon, url) => {
    for (const args of SETUP) assert.equal((await lvsadm(daemon, ...args)).code, 0, args.join(' '));
    assert.deepEqual(promtoolCheck((await fetchText(`${url}/metrics`)).body), { status: 0, output: '' });
  });
});

test('lvsd --http: hostile HTTP clients neither stop lvsd nor keep it from answering lvsadm', async () => {
  await withHttpDaemon(async (daemon, url) => {
    const port = Number(new URL(url).port);
    const slow = Array.from({ length: 20 }, () => stalledClient(port));
    const abuse = Promise.all([
      rawExchange(port, 'GARBAGE\r\n\r\n'),
      rawExchange(port, `GET /metrics HTTP/1.1\r\nHost: a\r\nX-Big: ${'a'.repeat(1024 * 1024)}\r\n\r\n`),
      rawExchange(port, Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 131) & 255))),
      fetchText(`${url}/no/such/path`),
      fetchText(`${url}/metrics`, 'DELETE'),
      ...Array.from({ length: 100 }, () => fetchText(`${url}/metrics`)),
    ]);
    // While all that is in flight (and the slow clients hang), lvsadm is answered.
    assert.equal((await lvsadm(daemon, '-A', '-t', '198.18.0.9:443', '-s', 'wlc')).code, 0);
    const [garbage, huge, noise, missing, wrongMethod, ...scrapes] = await abuse;
    assert.match(garbage!, /^HTTP\/1\.1 400 /);
    assert.match(huge!, /^HTTP\/1\.1 431 /);
    assert.match(noise!, /^HTTP\/1\.1 400 /);
    assert.equal(missing!.status, 404);
    assert.equal(wrongMethod!.status, 405);
    assert.ok(scrapes.every((r) => r.status === 200));
    const listing = await lvsadm(daemon, '-Ln');
    assert.equal(listing.code, 0);
    assert.match(listing.stdout, /TCP {2}198\.18\.0\.9:443 wlc/);
    assert.match(
      (await fetchText(`${url}/metrics`)).body,
      /local_address="198\.18\.0\.9",local_mark="",local_port="443"/,
    );
    for (const client of slow) client.socket.destroy();
    assert.equal(daemon.child.exitCode, null, 'lvsd still runs');
    assert.equal(await daemon.stop(), 0);
  });
});

test('lvsd refuses a bad --http address (exit 2) and a port it cannot bind (exit 1), leaving no socket', async () => {
  const dir = await tempDir('lvsd-http-');
  const blocker = createServer();
  try {
    for (const [value, message] of [
      ['localhost:9199', /lvsd: --http: localhost is a host name: give an IP address/],
      ['0', /lvsd: --http: port 0 is not 1\.\.65535/],
      [':9199', /lvsd: --http: ":9199" has no address/],
    ] as const) {
      const run = await runDaemonToExit(dir, join(dir, 'state'), ['--http', value]);
      assert.equal(run.code, 2, value);
      assert.match(run.stderr, message);
      assert.match(run.stderr, /--http \[ADDR:\]PORT/, 'usage shown');
    }
    const missing = await runDaemonToExit(dir, join(dir, 'state'), ['--http']);
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /lvsd: --http needs a value/);

    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as { port: number };
    const run = await runDaemonToExit(dir, join(dir, 'state'), ['--http', `127.0.0.1:${port}`]);
    assert.equal(run.code, 1);
    assert.match(
      run.stderr,
      new RegExp(
        `error cannot start: cannot listen on http://127\\.0\\.0\\.1:${port}: EADDRINUSE \\(address already in use\\)`,
      ),
    );
    assert.ok(!existsSync(join(dir, 'run', 'lvsd.sock')), 'the control socket is removed');
  } finally {
    blocker.close();
    await removeDir(dir);
  }
});
