// A SYN flood from random sources against a director with a small connection table
// (--conn-capacity 2000): the flood fills the table, the legitimate client's requests still get
// through, and `lvsadm -L --json` shows what the table evicted and refused.

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { ROOT_SKIP, setupLab, type Setup } from './harness.js';
import type { ConnTableSnapshot } from '../../src/core/ops.js';

const VIP = '198.18.0.1';
const CAPACITY = 2000;
const FLOODER = fileURLToPath(new URL('./syn-flooder.js', import.meta.url));
/** Bounded: at most 60,000 SYNs, at 8,000 a second, for at most 8 s. */
const FLOOD = { packets: 60_000, seconds: 8, rate: 8000 };
const REQUESTS = 40;

describe('a full table under a SYN flood (root, netns)', { skip: ROOT_SKIP }, () => {
  let s: Setup;

  before(async () => {
    s = await setupLab({ prefix: 'lvst13', lvsdArgs: () => ['--conn-capacity', String(CAPACITY)] });
    s.director.adm(`-A -t ${VIP}:80 -s rr`);
    for (const rs of s.lab.addr.realServers) s.director.adm(`-a -t ${VIP}:80 -r ${rs}:80 -m`);
    // Without a route back to the flood's sources the director's kernel would drop the SYNs
    // (reverse-path filter) before lvsd saw them.
    s.lab.run(s.lab.ns.director, ['ip', 'route', 'add', '198.18.128.0/17', 'via', s.lab.addr.client]);
  });

  after(async () => {
    await s?.teardown();
  });

  it('keeps serving the legitimate client while the flood fills the table', async () => {
    const flooder = s.lab.spawn(
      s.lab.ns.client,
      [process.execPath, FLOODER, VIP, String(FLOOD.packets), String(FLOOD.seconds), String(FLOOD.rate)],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    let output = '';
    flooder.stdout!.setEncoding('utf8').on('data', (chunk: string) => (output += chunk));
    const exited = once(flooder, 'exit');
    try {
      for (const end = Date.now() + 10_000; !output.includes('flooding') && Date.now() < end;) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.ok(output.includes('flooding'), 'the flooder started');
      // Let the flood fill the table first.
      let table = await waitForFull();
      assert.equal(table.capacity, CAPACITY);

      let succeeded = 0;
      /** Each request's code and timings (connect, total), for the failure message. */
      const timings: string[] = [];
      for (let i = 0; i < REQUESTS; i++) {
        try {
          const result = s.lab.run(s.lab.ns.client, [
            'curl',
            '-s',
            '-o',
            '/dev/null',
            '-w',
            '%{http_code} %{time_connect} %{time_total}',
            // Room for two SYN retransmissions (1 s, 3 s), as a user's client would wait.
            '--max-time',
            '8',
            `http://${VIP}/`,
          ]);
          timings.push(result);
          if (result.startsWith('200 ')) succeeded++;
        } catch (error) {
          // Counted as a failure.
          timings.push(`failed: ${(error as Error).message.split('\n')[0]}`);
        }
      }
      table = connTable();
      assert.equal(
        succeeded,
        REQUESTS,
        `legitimate requests through the flood: ${succeeded}/${REQUESTS}\n${timings.join('\n')}\n` +
          `${JSON.stringify(table)}\n${JSON.stringify(dataPath())}`,
      );
      assert.ok(table.entries <= CAPACITY);
      assert.ok(table.earlyDrops > 0, "the flood's half-open entries were evicted for new connections");
      assert.equal(
        table.refusedFull,
        0,
        'nothing had to be refused: there was always a half-open entry to evict',
      );
      // Counters, not the states: on a slow machine the flood may be over, and the defense off
      // again, by the time the requests are done (waitForFull saw drop_entry switch itself on).
      assert.ok(table.defense.secureTcpActivations >= 1, 'secure_tcp switched itself on');
    } finally {
      await exited;
    }
    const sent = Number(output.trim().split('\n').at(-1));
    assert.ok(sent > CAPACITY * 2, `the flood sent ${sent} SYNs`);
  });

  function connTable(): ConnTableSnapshot {
    return (JSON.parse(s.director.adm('-L --json')) as { connTable: ConnTableSnapshot }).connTable;
  }

  function dataPath(): unknown {
    return (JSON.parse(s.director.adm('-L --json')) as { dataPath: unknown }).dataPath;
  }

  async function waitForFull(): Promise<ConnTableSnapshot> {
    for (const end = Date.now() + 8000; Date.now() < end;) {
      const table = connTable();
      if (table.entries >= CAPACITY && table.defense.dropEntry === 2) return table;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.fail(`the table never filled: ${JSON.stringify(connTable())}`);
  }
});
