// `lvsadm -Lnc` at a million connections: how long the listing takes, the longest time one page
// holds the engine (in lvsd the page is built on the packet thread between batches, so this is the
// packet loop's longest stall), and the memory of both sides. Bounded: one listing, under a minute.
// Run: npm run bench:listing

import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDaemon } from '../src/control/daemon.js';
import { InProcessEngine } from '../src/control/in-process-engine.js';
import { Director } from '../src/core/director.js';
import { addr4, parseAddr } from '../src/core/inet.js';
import type { ServiceKey } from '../src/core/model.js';
import type { ConnRecord } from '../src/core/ops.js';

const ENTRIES = 1_000_000;
/** The listing client's heap limit: a listing that held the table at once would not fit. */
const CLIENT_HEAP_MIB = 64;
const LVSADM = resolve(fileURLToPath(import.meta.url), '../../src/bin/lvsadm.js');
const VIP = '198.18.0.1';
const REAL_SERVERS = ['198.18.1.10', '198.18.1.11'];

const clock = { now: () => performance.now() };
const director = new Director({ clock, connCapacity: 1 << 20 });
const engine = new InProcessEngine(director);
let longestPageMs = 0;
let pages = 0;
const timedEngine = Object.assign(Object.create(engine) as InProcessEngine, {
  async connections(from: number, limit: number) {
    const start = performance.now();
    const page = director.connections(from, limit);
    longestPageMs = Math.max(longestPageMs, performance.now() - start);
    pages++;
    return page;
  },
});

const dir = await mkdtemp(join(tmpdir(), 'lvsd-bench-listing-'));
const socketPath = join(dir, 'lvsd.sock');
const daemon = await startDaemon({
  socketPath,
  stateDir: dir,
  createEngine: async () => timedEngine,
  log: () => undefined,
});
try {
  // Asynchronously: the daemon runs in this process.
  const adm = (...args: string[]) =>
    new Promise<void>((done, fail) => {
      spawn(process.execPath, [LVSADM, '--socket', socketPath, ...args], { stdio: 'inherit' }).on(
        'exit',
        (code) => (code === 0 ? done() : fail(new Error(`lvsadm ${args.join(' ')}: exit ${code}`))),
      );
    });
  await adm('-A', '-t', `${VIP}:80`, '-s', 'rr');
  for (const rs of REAL_SERVERS) await adm('-a', '-t', `${VIP}:80`, '-r', `${rs}:80`, '-m');

  const service: ServiceKey = { af: 4, protocol: 6, addr: parseAddr(VIP)!, port: 80, fwmark: 0 };
  const batch: ConnRecord[] = [];
  for (let n = 0; n < ENTRIES; n++) {
    batch.push({
      af: 4,
      protocol: 6,
      caddr: addr4(0xc6130000 + (n >>> 8)), // 198.19.0.0/16 and on
      cport: 1024 + (n & 0xff),
      vaddr: service.addr,
      vport: 80,
      daddr: parseAddr(REAL_SERVERS[n % 2]!)!,
      dport: 80,
      state: 'ESTABLISHED',
      expiresMs: 900_000,
      template: false,
      service,
    });
    if (batch.length === 65536 || n === ENTRIES - 1) {
      director.importConnections(batch);
      batch.length = 0;
    }
  }
  const heapBefore = process.memoryUsage().heapUsed;

  const start = performance.now();
  let lines = 0;
  let clientPeakKiB = 0;
  const exitCode = await new Promise<number | null>((done) => {
    const child = spawn(
      process.execPath,
      [`--max-old-space-size=${CLIENT_HEAP_MIB}`, LVSADM, '--socket', socketPath, '-Lnc'],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    child.stdout.on('data', (chunk: Buffer) => {
      for (const byte of chunk) if (byte === 10) lines++;
    });
    const sampler = setInterval(() => {
      try {
        const hwm = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
        if (hwm) clientPeakKiB = Math.max(clientPeakKiB, Number(hwm[1]));
      } catch {
        // Gone between two samples.
      }
    }, 200);
    child.on('exit', (code) => {
      clearInterval(sampler);
      done(code);
    });
  });
  const elapsedS = (performance.now() - start) / 1000;
  const heapGrowthMiB = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;

  console.log(`lvsadm -Lnc over ${director.snapshot({ connections: false }).connTable!.entries} entries`);
  console.log(`  exit ${exitCode}, ${lines - 2} rows in ${elapsedS.toFixed(1)} s (${pages} pages)`);
  console.log(`  longest page on the engine thread: ${longestPageMs.toFixed(1)} ms`);
  console.log(
    `  lvsadm peak RSS: ${(clientPeakKiB / 1024).toFixed(0)} MiB (heap limit ${CLIENT_HEAP_MIB} MiB)`,
  );
  console.log(`  lvsd heap growth during the listing: ${heapGrowthMiB.toFixed(0)} MiB`);
  if (exitCode !== 0 || lines - 2 !== ENTRIES) process.exitCode = 1;
} finally {
  await daemon.close();
  await rm(dir, { recursive: true, force: true });
}
