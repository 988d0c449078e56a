// Core benchmarks: new connections through Director.process, connection-table lookups and memory
// at 1M live entries, scheduler decisions per second, and the mh table rebuild. Bounded: the whole
// run takes well under two minutes; `node dist/bench/core.js packets` runs the first part alone.
// Memory figures need --expose-gc; without it the script runs itself again with the flag.

import { spawnSync } from 'node:child_process';
import { ManualClock } from '../src/core/clock.js';
import { ConnTable } from '../src/core/conn/table.js';
import { TCP_ACK, TCP_FIN, TCP_SYN } from '../src/core/conn/tcp-state.js';
import { Director } from '../src/core/director.js';
import { Timeouts } from '../src/core/conn/timeouts.js';
import { addr4, IPPROTO_TCP, type Addr } from '../src/core/inet.js';
import { Dest, type ServiceView } from '../src/core/model.js';
import { findScheduler, schedulerNames } from '../src/core/sched/index.js';
import type { FlowKey, SchedulerEnv } from '../src/core/sched/types.js';
import { buildPacket, tcpSegment, withVnet } from '../test/helpers/packets.js';

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

/** CPU time taken by run(): steadier than the wall clock on a machine shared with other work. */
function cpuMs(run: () => void): number {
  const start = process.cpuUsage();
  run();
  const { user, system } = process.cpuUsage(start);
  return (user + system) / 1000;
}

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

const TCP_PSH = 0x08;
/** Offsets in a frame (virtio_net_hdr, IPv4 header without options, TCP). */
const FRAME_SADDR = 10 + 12;
const FRAME_DADDR = 10 + 16;
const FRAME_SPORT = 10 + 20;
const FRAME_DPORT = 10 + 22;

/**
 * A Connection: close exchange as the director sees it in `npm run bench`'s lab: the handshake,
 * the request, the answer, the real server's close and the client's (9 packets, both directions).
 */
const EXCHANGE: { fromClient: boolean; flags: number; payload: number }[] = [
  { fromClient: true, flags: TCP_SYN, payload: 0 },
  { fromClient: false, flags: TCP_SYN | TCP_ACK, payload: 0 },
  { fromClient: true, flags: TCP_ACK, payload: 0 },
  { fromClient: true, flags: TCP_PSH | TCP_ACK, payload: 90 },
  { fromClient: false, flags: TCP_PSH | TCP_ACK, payload: 340 },
  { fromClient: false, flags: TCP_FIN | TCP_ACK, payload: 0 },
  { fromClient: true, flags: TCP_ACK, payload: 0 },
  { fromClient: true, flags: TCP_FIN | TCP_ACK, payload: 0 },
  { fromClient: false, flags: TCP_ACK, payload: 0 },
];
const PACKET_CONNS = 100_000;
const PACKET_ROUNDS = 7;
/** The lab's load: one client at about 4000 connections/s over ports 1024-65000, the tick every 100 ms. */
const CONN_INTERVAL_MS = 0.25;
const TICK_MS = 100;

/**
 * New connections through Director.process, as the packet loop drives it: each frame copied into
 * the loop's buffer, processed, the tick when due. One client cycling through its ports, so the
 * table holds the TIME_WAIT entries of the last 64K connections and each SYN reopens one.
 */
function benchNewConnections(): void {
  console.log(`\n== new connections through Director.process (rr, 2 masq real servers) ==`);
  const clock = new ManualClock(0);
  const director = new Director({ clock });
  const key = { af: 4, protocol: IPPROTO_TCP, addr: addr4(0xc612000a), port: 80, fwmark: 0 } as const;
  director.execute({ op: 'add-service', key, settings: { scheduler: 'rr', flags: 0, timeout: 0, netmaskPrefix: 32, pe: null } }); // prettier-ignore
  for (const rs of [0xc612010b, 0xc612010c]) {
    const settings = { method: 'masq', weight: 1, uThreshold: 0, lThreshold: 0 } as const;
    director.execute({ op: 'add-dest', key, addr: addr4(rs), port: 80, settings });
  }
  const templates = EXCHANGE.map(({ fromClient, flags, payload }) => {
    const spec = fromClient
      ? tcpSegment('198.18.0.2', 1024, '198.18.0.10', 80, flags)
      : tcpSegment('198.18.1.11', 80, '198.18.0.2', 1024, flags);
    return withVnet(buildPacket({ ...spec, payload: new Uint8Array(payload) }));
  });
  const frame = new Uint8Array(65536 + 10);
  const realServer = new Uint8Array(4);
  let conn = 0;
  let nextTick = TICK_MS;
  let failed = 0;
  const run = (conns: number) => {
    for (const end = conn + conns; conn < end; conn++) {
      const port = 1024 + (conn % 63977);
      for (let k = 0; k < EXCHANGE.length; k++) {
        const template = templates[k]!;
        frame.set(template);
        if (EXCHANGE[k]!.fromClient) {
          frame[FRAME_SPORT] = port >>> 8;
          frame[FRAME_SPORT + 1] = port & 0xff;
        } else {
          frame.set(realServer, FRAME_SADDR);
          frame[FRAME_DPORT] = port >>> 8;
          frame[FRAME_DPORT + 1] = port & 0xff;
        }
        if (director.process(frame, 0, template.length) <= 0) failed++;
        // The scheduler's choice, where the rest of this connection's replies come from.
        if (k === 0) realServer.set(frame.subarray(FRAME_DADDR, FRAME_DADDR + 4));
      }
      clock.advance(CONN_INTERVAL_MS);
      if (clock.now() >= nextTick) {
        nextTick += TICK_MS;
        director.tick();
      }
    }
  };
  run(70_000); // past the first port reuse: the table at its steady size
  const perConnNs: number[] = [];
  for (let round = 0; round < PACKET_ROUNDS; round++) {
    perConnNs.push((cpuMs(() => run(PACKET_CONNS)) * 1e6) / PACKET_CONNS);
  }
  if (failed > 0) throw new Error(`${failed} packets were not forwarded`);
  perConnNs.sort((a, b) => a - b);
  const median = perConnNs[PACKET_ROUNDS >> 1]!;
  const spread = `${perConnNs[0]!.toFixed(0)}-${perConnNs[PACKET_ROUNDS - 1]!.toFixed(0)}`;
  console.log(
    `${EXCHANGE.length} packets per connection, ${PACKET_ROUNDS} rounds of ${PACKET_CONNS.toLocaleString('en')}, CPU time: ` +
      `${median.toFixed(0)} ns per connection (${spread}), ${(median / EXCHANGE.length).toFixed(0)} ns per packet, ` +
      `${(1e9 / median / 1e3).toFixed(0)}K connections/s; table ${director.conns.size.toLocaleString('en')} entries`,
  );
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
  benchNewConnections();
  if (process.argv[2] === 'packets') return;
  benchConnTable();
  benchSchedulers();
  benchMhRebuild();
});
console.log(`\ntotal ${(total / 1000).toFixed(1)} s, node ${process.version}`);
