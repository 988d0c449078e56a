// Core benchmarks: connection-table lookups and memory at 1M live entries, scheduler decisions
// per second, and the mh table rebuild. Bounded: the whole run takes well under two minutes.
// Memory figures need --expose-gc; without it the script runs itself again with the flag.

import { spawnSync } from 'node:child_process';
import { ManualClock } from '../src/core/clock.js';
import { ConnTable } from '../src/core/conn/table.js';
import { TCP_ACK } from '../src/core/conn/tcp-state.js';
import { Timeouts } from '../src/core/conn/timeouts.js';
import { addr4, IPPROTO_TCP, type Addr } from '../src/core/inet.js';
import { Dest, type ServiceView } from '../src/core/model.js';
import { findScheduler, schedulerNames } from '../src/core/sched/index.js';
import type { FlowKey, SchedulerEnv } from '../src/core/sched/types.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) {
  const child = spawnSync(process.execPath, ['--expose-gc', ...process.argv.slice(1)], { stdio: 'inherit' });
  process.exit(child.status ?? 1);
}

const LIVE_CONNS = 1_000_000;
const LOOKUPS = 10_000_000;
const VIP = addr4(0xc6120001); // 198.18.0.1
const SCHED_BUDGET_MS = 150;

function heapBytes(): number {
  gc!();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

const mib = (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`;
const rate = (count: number, ms: number) => `${(((count / ms) * 1000) / 1e6).toFixed(2)} M/s`;

function elapsedMs(run: () => void): number {
  const start = process.hrtime.bigint();
  run();
  return Number(process.hrtime.bigint() - start) / 1e6;
}

function makeDest(id: number, addr: Addr, weight: number): Dest {
  const dest = new Dest(id, addr, 80, { method: 'masq', weight, uThreshold: 0, lThreshold: 0 });
  return dest;
}

/** Client i: address 10.x.y.z spread over 2^20 hosts, port 1024 + (i * 7919) % 60000. */
const clientAddr = (i: number) => (0x0a000000 + ((i * 2654435761) >>> 12)) >>> 0;
const clientPort = (i: number) => 1024 + ((i * 7919) % 60000);

function benchConnTable(): void {
  console.log(`\n== connection table, ${LIVE_CONNS.toLocaleString('en')} live entries ==`);
  const dests = Array.from({ length: 16 }, (_, i) => makeDest(i, addr4(0xc6120100 + i), 1));
  const before = heapBytes();
  const clock = new ManualClock(0);
  const table = new ConnTable({ capacity: 1 << 20, clock, timeouts: new Timeouts() });
  const createMs = elapsedMs(() => {
    for (let i = 0; i < LIVE_CONNS; i++) {
      const dest = dests[i & 15]!;
      table.create({
        af: 4, protocol: IPPROTO_TCP, caddr: addr4(clientAddr(i)), cport: clientPort(i), vaddr: VIP, vport: 80,
        daddr: dest.addr, dport: 80, dest, method: 0, serviceId: 1, template: -1,
      }); // prettier-ignore
    }
  });
  const used = heapBytes() - before;
  console.log(
    `created ${table.size.toLocaleString('en')} in ${createMs.toFixed(0)} ms (${rate(LIVE_CONNS, createMs)})`,
  );
  console.log(
    `memory: ${mib(used)} for capacity ${table.capacity.toLocaleString('en')}: ` +
      `${(used / LIVE_CONNS).toFixed(1)} bytes per tracked connection (${(used / table.capacity).toFixed(1)} per slot)`,
  );

  // Keys drawn uniformly from the whole live set (xorshift), so every lookup is a cold miss in
  // the CPU caches, as with many concurrent flows.
  let x = 2463534242;
  const pick = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % LIVE_CONNS;
  };
  let found = 0;
  const inMs = elapsedMs(() => {
    for (let n = 0; n < LOOKUPS; n++) {
      const i = pick();
      if (table.findInWords(4, IPPROTO_TCP, clientAddr(i), 0, 0, 0, clientPort(i), VIP.a, 0, 0, 0, 80) >= 0)
        found++;
    }
  });
  const outMs = elapsedMs(() => {
    for (let n = 0; n < LOOKUPS; n++) {
      const i = pick();
      const d = dests[i & 15]!.addr.a;
      if (table.findOutWords(4, IPPROTO_TCP, d, 0, 0, 0, 80, clientAddr(i), 0, 0, 0, clientPort(i)) >= 0)
        found++;
    }
  });
  const missMs = elapsedMs(() => {
    for (let n = 0; n < LOOKUPS; n++) {
      const i = pick();
      if (table.findInWords(4, IPPROTO_TCP, clientAddr(i), 0, 0, 0, clientPort(i), VIP.a, 0, 0, 0, 81) >= 0)
        found++;
    }
  });
  // Packets come in bursts per flow: the same lookups over 65,536 busy flows among the million.
  const hotMs = elapsedMs(() => {
    for (let n = 0; n < LOOKUPS; n++) {
      const i = pick() & 0xffff;
      if (table.findInWords(4, IPPROTO_TCP, clientAddr(i), 0, 0, 0, clientPort(i), VIP.a, 0, 0, 0, 80) >= 0)
        found++;
    }
  });
  const packetMs = elapsedMs(() => {
    for (let n = 0; n < LOOKUPS; n++) {
      const i = pick();
      const id = table.findInWords(4, IPPROTO_TCP, clientAddr(i), 0, 0, 0, clientPort(i), VIP.a, 0, 0, 0, 80);
      table.onPacket(id, 'in', TCP_ACK);
    }
  });
  if (found !== 3 * LOOKUPS) throw new Error(`lookups found ${found} of ${3 * LOOKUPS}`);
  console.log(`memory ceiling, two dependent random reads: ${memoryCeiling()}`);
  console.log(`lookup client->VIP (hit):         ${rate(LOOKUPS, inMs)}`);
  console.log(`lookup real server->client (hit): ${rate(LOOKUPS, outMs)}`);
  console.log(`lookup client->VIP (miss):        ${rate(LOOKUPS, missMs)}`);
  console.log(`lookup client->VIP, 64K busy:     ${rate(LOOKUPS, hotMs)}`);
  console.log(`lookup + onPacket (state, timer): ${rate(LOOKUPS, packetMs)}`);

  clock.advance(3600_000);
  let expired = 0;
  const expireMs = elapsedMs(() => (expired = table.advance()));
  console.log(`advance() expiring ${expired.toLocaleString('en')} at once: ${expireMs.toFixed(0)} ms`);
}

/** What this machine allows for a bucket read then a 64-byte line read, both random over 68 MB. */
function memoryCeiling(): string {
  // Filled, so that every page is really there rather than the shared zero page.
  const lines = new Uint32Array(LIVE_CONNS * 16).fill(1);
  const buckets = new Int32Array(1 << 20).map((_, i) => (Math.imul(i, 2654435761) >>> 12) % LIVE_CONNS);
  let x = 88172645;
  let sum = 0;
  const ms = elapsedMs(() => {
    for (let n = 0; n < LOOKUPS; n++) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      const k = buckets[x & 0xfffff]! * 16;
      sum += lines[k]! + lines[k + 13]!;
    }
  });
  if (sum === 0) throw new Error('unreachable: keeps the reads alive');
  return rate(LOOKUPS, ms);
}

function benchSchedulers(): void {
  console.log('\n== schedulers: decisions/s (static load, varied weights) ==');
  const sizes = [2, 16, 1000];
  console.log(`${'name'.padEnd(6)} ${sizes.map((n) => `${n} dests`.padStart(12)).join(' ')}`);
  const flows: FlowKey[] = Array.from({ length: 4096 }, (_, i) => ({
    af: 4, protocol: IPPROTO_TCP, saddr: addr4(clientAddr(i)), sport: clientPort(i),
    daddr: addr4(0xc6130000 + (i & 255)), dport: 80,
  })); // prettier-ignore
  let seed = 1;
  const env: SchedulerEnv = {
    clock: new ManualClock(0),
    random: () => (seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32,
  };
  for (const name of schedulerNames()) {
    const scheduler = findScheduler(name)!;
    const cells = sizes.map((count) => {
      const dests = Array.from({ length: count }, (_, i) => {
        const dest = makeDest(i, addr4(0xc6140000 + i), 1 + (i % 5));
        dest.activeConns = (i * 37) % 50;
        dest.inactConns = (i * 11) % 20;
        return dest;
      });
      const svc: ServiceView = { af: 4, flags: 0, dests };
      const state = scheduler.initService(svc, env);
      let decisions = 0;
      let chosen = 0;
      const ms = elapsedMs(() => {
        const start = performance.now();
        do {
          for (let k = 0; k < 1024; k++)
            if (scheduler.schedule(state, svc, flows[(decisions + k) & 4095]!)) chosen++;
          decisions += 1024;
        } while (performance.now() - start < SCHED_BUDGET_MS);
      });
      if (chosen === 0) return 'no dest'.padStart(12);
      return rate(decisions, ms).padStart(12);
    });
    console.log(`${name.padEnd(6)} ${cells.join(' ')}`);
  }
}

function benchMhRebuild(): void {
  const mh = findScheduler('mh');
  if (!mh?.updateService) return;
  const dests = Array.from({ length: 1000 }, (_, i) => makeDest(i, addr4(0xc6140000 + i), 1 + (i % 5)));
  const svc: ServiceView = { af: 4, flags: 0, dests };
  const state = mh.initService(svc, { clock: new ManualClock(0), random: Math.random });
  const rounds = 20;
  const ms = elapsedMs(() => {
    for (let r = 0; r < rounds; r++) {
      dests[r]!.weight = 1 + ((dests[r]!.weight + 1) % 5);
      mh.updateService!(state, svc);
    }
  });
  console.log(`\n== mh ==\nupdateService with 1000 dests: ${(ms / rounds).toFixed(2)} ms per rebuild`);
}

const total = elapsedMs(() => {
  benchConnTable();
  benchSchedulers();
  benchMhRebuild();
});
console.log(`\ntotal ${(total / 1000).toFixed(1)} s, node ${process.version}`);
