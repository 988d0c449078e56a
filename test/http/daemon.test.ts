// A real lvsd with --http, configured with the lvsadm binary: /metrics follows the table, promtool
// accepts it, hostile HTTP clients do not stop lvsd from answering lvsadm, bad addresses stop it at start.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { removeDir, runDaemonToExit, runLvsadmBinary, spawnDaemon, tempDir } from '../cli/daemon-harness.js';
import type { SpawnedDaemon } from '../cli/daemon-harness.js';
import { fetchText, freePort, promtoolCheck, PROMTOOL_SKIP, rawExchange, stalledClient } from './helpers.js';

async function withHttpDaemon(
  body: (daemon: SpawnedDaemon, url: string) => Promise<void>,
  args: (dir: string) => Promise<string[]> = async () => [],
): Promise<void> {
  const dir = await tempDir('lvsd-http-');
  let daemon: SpawnedDaemon | null = null;
  try {
    const port = await freePort();
    daemon = await spawnDaemon(dir, join(dir, 'state'), {
      args: ['--http', String(port), ...(await args(dir))],
      ready: 'http: dashboard on',
    });
    await body(daemon, `http://127.0.0.1:${port}`);
  } finally {
    await daemon?.stop();
    await removeDir(dir);
  }
}

const postJson = (url: string, body: string, headers: Record<string, string>) =>
  fetchText(url, 'POST', { 'Content-Type': 'application/json', ...headers }, body);

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

const TOKEN = 'lvd12-daemon-test-token-abcdef';

/** Resolves once `condition` holds; fails after 200 tries, 50 ms apart. */
async function until(condition: () => boolean | Promise<boolean>): Promise<void> {
  for (let attempt = 0; !(await condition()); attempt++) {
    if (attempt === 200) assert.fail(`still not so after ${attempt} tries: ${condition}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function tokenFile(dir: string): Promise<string[]> {
  const file = join(dir, 'token');
  await writeFile(file, `${TOKEN}\n`, { mode: 0o600 });
  return ['--http-token-file', file];
}

test('lvsd --http: the new series (connection table) and the dashboard on a real daemon; a drain from it shows in -Ln', async () => {
  await withHttpDaemon(async (daemon, url) => {
    for (const args of SETUP) assert.equal((await lvsadm(daemon, ...args)).code, 0, args.join(' '));
    const metrics = (await fetchText(`${url}/metrics`)).body;
    assert.match(metrics, /^lvsd_connection_table_capacity \d+$/m);
    assert.match(metrics, /^lvsd_connection_table_defense_mode\{strategy="secure_tcp"\} 1$/m);
    assert.match(
      daemon.stderr(),
      /info http: dashboard on http:\/\/127\.0\.0\.1:\d+\/ \(actions need the token\)/,
    );
    assert.equal((await fetchText(`${url}/`)).status, 200);
    const state = async () => {
      const reply = await fetchText(`${url}/api/state`);
      return JSON.parse(reply.body) as { frame: { services: { id: string }[] } };
    };
    // The dashboard's frame follows lvsadm within a tick.
    await until(async () => (await state()).frame.services.some((s) => s.id === 'TCP 198.18.0.1:80'));
    const body = JSON.stringify({ service: 'TCP 198.18.0.1:80', server: '198.18.1.11:80', action: 'drain' });
    const drain = await postJson(`${url}/api/action`, body, { Authorization: `Bearer ${TOKEN}` });
    assert.equal(drain.status, 200, drain.body);
    const listing = (await lvsadm(daemon, '-Ln')).stdout;
    assert.match(listing, /-> 198\.18\.1\.11:80 +Masq +0 /);
    const wrong = await postJson(`${url}/api/action`, body, { Authorization: 'Bearer wrong' });
    assert.equal(wrong.status, 401);
    // lvsd's stderr reaches this process through a pipe, a little after the answer.
    await until(() => /warn http: dashboard: wrong or missing token from 127\.0\.0\.1/.test(daemon.stderr()));
  }, tokenFile);
});

test('lvsd refuses --http-token-file without --http (exit 2), and a missing or short token (exit 1)', async () => {
  const dir = await tempDir('lvsd-http-');
  try {
    const alone = await runDaemonToExit(dir, join(dir, 'state'), await tokenFile(dir));
    assert.equal(alone.code, 2);
    assert.match(alone.stderr, /lvsd: --http-token-file needs --http/);
    const port = String(await freePort());
    const missing = await runDaemonToExit(dir, join(dir, 'state'), [
      '--http',
      port,
      '--http-token-file',
      join(dir, 'none'),
    ]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /error cannot start: ENOENT: no such file or directory/);
    await writeFile(join(dir, 'short'), 'abc\n');
    const short = await runDaemonToExit(dir, join(dir, 'state'), [
      '--http',
      port,
      '--http-token-file',
      join(dir, 'short'),
    ]);
    assert.equal(short.code, 1);
    assert.match(short.stderr, /short: the token \(first line\) must be at least 16 characters/);
    assert.ok(!existsSync(join(dir, 'run', 'lvsd.sock')), 'the control socket is removed');
  } finally {
    await removeDir(dir);
  }
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
