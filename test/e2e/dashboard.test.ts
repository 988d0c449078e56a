// The dashboard in a real headless Chromium (Debian's), driven over the DevTools protocol with
// puppeteer-core: lvsd runs in a namespace lab with --http and a token file; the browser runs in
// the director's namespace (the listener is on its loopback) and talks to puppeteer over pipes,
// which cross namespaces. The page shows the lab's service and real servers, follows the traffic
// curl sends, and a drain and a weight set in the page show in `lvsadm -Ln`.
// UPDATE_SCREENSHOT=1 writes the screenshot to docs/dashboard.png (else into the lab's directory).

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import puppeteer from 'puppeteer-core';
import type { Browser, Page } from 'puppeteer-core';
import { ROOT_SKIP, setupLab } from './harness.js';
import type { Setup } from './harness.js';

const HAVE_CHROMIUM = spawnSync('chromium', ['--version'], { stdio: 'ignore' }).status === 0;
const SKIP =
  ROOT_SKIP || (HAVE_CHROMIUM ? false : "chromium not installed (scripts/setup.sh installs Debian's)");
const PORT = 9199;
const TOKEN = 'lvd12-e2e-dashboard-token-0123456789';
const VIP = '198.18.0.1';
const SERVICE = `TCP ${VIP}:80`;
const WAIT_MS = 20_000;
const SCREENSHOT = new URL('../../../docs/dashboard.png', import.meta.url);

const row = (server: string) => `tr[data-server="${SERVICE}|${server}:80"]`;

/** The text of the first element `selector` matches, once `accept` takes it (bounded by WAIT_MS). */
async function textWhen(page: Page, selector: string, accept: (text: string) => boolean): Promise<string> {
  let last = '';
  for (const end = Date.now() + WAIT_MS; Date.now() < end;) {
    last = (await page.$eval(selector, (el) => el.textContent ?? '').catch(() => '')) as string;
    if (accept(last)) return last;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${selector}: still "${last}" after ${WAIT_MS} ms`);
}

/** `lvsadm -Ln`'s weight of a real server of the service, once `accept` takes it. */
async function listedWeight(s: Setup, server: string, accept: (weight: number) => boolean): Promise<number> {
  let weight = NaN;
  for (const end = Date.now() + WAIT_MS; Date.now() < end;) {
    const svc = s.director.list().find((x) => x.service === SERVICE);
    weight = svc?.dests.find((d) => d.dest === `${server}:80`)?.weight ?? NaN;
    if (accept(weight)) return weight;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`${server}: -Ln weight still ${weight}:\n${s.director.adm('-Ln')}`);
}

test(
  'the dashboard in headless Chromium: live services, traffic, and a drain that -Ln shows',
  { skip: SKIP, timeout: 180_000 },
  async () => {
    let s: Setup | null = null;
    let browser: Browser | null = null;
    try {
      s = await setupLab({
        prefix: 'lvd12',
        lvsdArgs: (lab) => {
          const file = join(lab.tmpDir, 'http-token');
          writeFileSync(file, `${TOKEN}\n`, { mode: 0o600 });
          return ['--http', `127.0.0.1:${PORT}`, '--http-token-file', file];
        },
      });
      const lab = s.lab;
      const [rs1, rs2] = lab.addr.realServers as [string, string];
      s.director.adm(`-A -t ${VIP}:80 -s rr`);
      s.director.adm(`-a -t ${VIP}:80 -r ${rs1}:80 -m -w 1`);
      s.director.adm(`-a -t ${VIP}:80 -r ${rs2}:80 -m -w 1`);

      // Chromium in the director's namespace; puppeteer's pipes (fds 3 and 4) pass through the exec.
      const wrapper = join(lab.tmpDir, 'chromium-in-director');
      writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${lab.ns.director} chromium "$@"\n`);
      chmodSync(wrapper, 0o755);
      browser = await puppeteer.launch({
        executablePath: wrapper,
        pipe: true,
        headless: true,
        userDataDir: join(lab.tmpDir, 'chromium-profile'),
        args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run'],
        defaultViewport: { width: 1280, height: 900 },
        timeout: WAIT_MS,
      });
      const page = await browser.newPage();
      const pageErrors: string[] = [];
      page.on('pageerror', (err) => pageErrors.push(String(err)));
      await page.goto(`http://127.0.0.1:${PORT}/`, { waitUntil: 'load', timeout: WAIT_MS });

      // The lab's service and both real servers, live.
      await textWhen(page, '#status', (t) => t === 'live');
      await textWhen(page, `article[data-service="${SERVICE}"] .name`, (t) => t === SERVICE);
      for (const rs of [rs1, rs2]) {
        await textWhen(page, `${row(rs)} [data-field="server"]`, (t) => t === `${rs}:80 (masq)`);
        await textWhen(page, `${row(rs)} [data-field="weight"]`, (t) => t === '1 / 1');
      }

      // Traffic: bounded (200 requests, about 10 s), in the background while the page follows it.
      const traffic = lab.spawn(
        lab.ns.client,
        [
          'sh',
          '-c',
          `for i in $(seq 200); do curl -s -o /dev/null --max-time 2 http://${VIP}/; sleep 0.03; done`,
        ],
        { stdio: 'ignore' },
      );
      const total = (t: string) => Number(/total (\d+)/.exec(t)?.[1] ?? 0);
      await textWhen(page, `article[data-service="${SERVICE}"] [data-field="conns"]`, (t) => total(t) >= 20);
      // The estimator's rates follow (a 2 s sample).
      await textWhen(page, `article[data-service="${SERVICE}"] [data-field="cps"]`, (t) => t !== 'CPS 0');
      await textWhen(page, '#conn-note', (t) => /shown/.test(t));
      assert.ok(
        (await page.$$('#connections tbody tr')).length > 0,
        'the connection table sample shows connections',
      );

      // Actions: the token, then Drain on the first real server.
      await page.type('#token', TOKEN);
      await page.click('#auth button[type="submit"]');
      await textWhen(page, '#auth-state', (t) => t === 'token set');
      await page.click(`${row(rs1)} button[data-action="drain"]`);
      await textWhen(page, '#action-result', (t) => t === `drain ${SERVICE} -> ${rs1}:80: done`);
      assert.equal(await listedWeight(s, rs1, (w) => w === 0), 0);
      await textWhen(page, `${row(rs1)} [data-field="state"]`, (t) => /drain/.test(t));
      await textWhen(page, `${row(rs1)} [data-field="weight"]`, (t) => t.startsWith('0 / 1'));
      await textWhen(page, '#events', (t) => t.includes(`${SERVICE} -> ${rs1}:80 set to drain (was ready)`));

      // A weight typed into the page.
      await page.type(`${row(rs2)} input[data-field="weight-input"]`, '5');
      await page.click(`${row(rs2)} button[data-action="set-weight"]`);
      assert.equal(await listedWeight(s, rs2, (w) => w === 5), 5);
      await textWhen(page, `${row(rs2)} [data-field="weight"]`, (t) => t === '5 / 1 (operator 5)');

      // New connections go to the other real server only; the page shows it.
      await textWhen(page, '#events', (t) => t.includes(`${SERVICE} -> ${rs2}:80 operator weight 5`));
      const shot = join(lab.tmpDir, 'dashboard.png');
      await page.screenshot({ path: shot as `${string}.png`, fullPage: true });
      if (process.env.UPDATE_SCREENSHOT) copyFileSync(shot, SCREENSHOT);
      traffic.kill('SIGTERM');
      assert.deepEqual(pageErrors, []);
      assert.match(
        s.director.log,
        /http: dashboard: drain TCP 198\.18\.0\.1:80 -> 198\.18\.1\.11:80 \(from 127\.0\.0\.1\)/,
      );
    } finally {
      await browser?.close().catch(() => undefined);
      await s?.teardown();
    }
  },
);
