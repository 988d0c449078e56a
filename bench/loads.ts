// The loads and what is measured around each: wrk (keep-alive, Connection: close, bulk file)
// and the UDP flood from the client namespace; CPU of the director's processes and of the whole
// machine; what the real servers' access logs (and UDP sinks) say about balancing and the client
// address; the real servers' own counters: datagrams received, SYNs refused on TIME_WAIT sockets.

import { execFileSync, type ChildProcess } from 'node:child_process';
import {
  closeSync,
  existsSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import type { Lab } from '../src/lab/lab.js';
import type { LoadName, Sample, TargetName } from './summary.js';
import type { Target } from './targets.js';

export const PAGE_PATH = '/files/page100.html';
export const BULK_PATH = '/files/bulk.bin';
const CLOCK_TICKS_PER_SECOND = 100;
const BULK_CONNECTIONS = 4;

export interface LoadOptions {
  durationSeconds: number;
  /** wrk connections for the request loads; bulk uses BULK_CONNECTIONS. */
  connections: number;
  udpFlows: number;
  /** Prefix for client-side commands, e.g. ['taskset', '-c', '1']. */
  pin: readonly string[];
}

/** Prints wrk's summary as one JSON line, with the percentiles its text output rounds. */
const WRK_SCRIPT = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"bytes":%d,"durationUs":%d,"errors":%d,"p50Us":%d,"p99Us":%d}\\n',
    summary.requests, summary.bytes, summary.duration,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
`;

interface WrkResult {
  requests: number;
  bytes: number;
  durationUs: number;
  errors: number;
  p50Us: number;
  p99Us: number;
}

interface FloodResult {
  sent: number;
  refused: number;
  seconds: number;
}

/** One namespace's counters from /proc/net/snmp or /proc/net/netstat ("Udp", "TcpExt", ...). */
function kernelCounters(lab: Lab, ns: string, file: 'snmp' | 'netstat', group: string): Map<string, number> {
  const lines = lab.run(ns, ['cat', `/proc/net/${file}`]).split('\n');
  const [names, values] = lines.filter((l) => l.startsWith(`${group}: `)).map((l) => l.split(/\s+/).slice(1));
  return new Map((names ?? []).map((name, i) => [name, Number(values?.[i] ?? 0)]));
}

/** UDP datagrams that reached a real server: read by the sink, or dropped on its full socket buffer. */
function udpArrived(lab: Lab, ns: string): number {
  const udp = kernelCounters(lab, ns, 'snmp', 'Udp');
  return (udp.get('InDatagrams') ?? 0) + (udp.get('InErrors') ?? 0);
}

/** SYNs (and other segments) a TIME_WAIT or open socket refused for an old timestamp. */
function pawsRejected(lab: Lab, ns: string): number {
  return kernelCounters(lab, ns, 'netstat', 'TcpExt').get('PAWSEstab') ?? 0;
}

/** The UDP sinks on the real servers (udp-sink.ts): whom each has seen since the last call. */
export class UdpSinks {
  private readonly children: ChildProcess[];

  constructor(
    private readonly lab: Lab,
    port: number,
    pin: readonly string[],
  ) {
    const sink = new URL('./udp-sink.js', import.meta.url).pathname;
    this.children = lab.ns.realServers.map((ns, i) =>
      lab.spawn(ns, [...pin, process.execPath, sink, `${port}`, this.report(i)]),
    );
  }

  private report(i: number): string {
    return join(this.lab.tmpDir, `rs${i + 1}`, 'udp-seen.json');
  }

  /** Per real server, the client addresses sampled since the previous call. */
  async takeSeen(): Promise<string[][]> {
    this.children.forEach((child, i) => {
      rmSync(this.report(i), { force: true });
      child.kill('SIGUSR2');
    });
    return Promise.all(
      this.children.map(async (_, i) => {
        for (let waited = 0; !existsSync(this.report(i)); waited += 20) {
          if (waited > 3000) throw new Error(`the UDP sink of rs${i + 1} did not report`);
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
        return JSON.parse(readFileSync(this.report(i), 'utf8')) as string[];
      }),
    );
  }
}

/** utime+stime of every process in a namespace (all threads), in clock ticks. */
function namespaceTicks(ns: string): number {
  const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split(/\s+/).filter(Boolean);
  let ticks = 0;
  for (const pid of pids) {
    try {
      // Fields after the command name: state is the first, utime the 12th, stime the 13th.
      const fields = readFileSync(`/proc/${pid}/stat`, 'utf8')
        .replace(/^.*\) /s, '')
        .split(' ');
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // Exited between the listing and the read.
    }
  }
  return ticks;
}

/** Busy clock ticks of the whole machine: everything but idle and iowait, softirq included. */
function machineTicks(): number {
  const [, ...fields] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
  const [user, nice, system, , , irq, softirq, steal] = fields.map(Number);
  return user! + nice! + system! + irq! + softirq! + steal!;
}

/** New lines in each real server's access log since the last call. */
class AccessLogs {
  private readonly offsets: number[];

  constructor(private readonly lab: Lab) {
    this.offsets = lab.addr.realServers.map((_, i) => this.size(i));
  }

  private path(i: number): string {
    return join(this.lab.tmpDir, `rs${i + 1}`, 'access.log');
  }

  private size(i: number): number {
    try {
      return statSync(this.path(i)).size;
    } catch {
      return 0;
    }
  }

  /** Per real server, the lines written since the previous call (or construction). */
  takeNew(): string[][] {
    return this.lab.addr.realServers.map((_, i) => {
      const end = this.size(i);
      const start = this.offsets[i]!;
      this.offsets[i] = end;
      if (end <= start) return [];
      const fd = openSync(this.path(i), 'r');
      try {
        const buffer = Buffer.alloc(end - start);
        readSync(fd, buffer, 0, buffer.length, start);
        return buffer.toString('utf8').split('\n').filter(Boolean);
      } finally {
        closeSync(fd);
      }
    });
  }
}

export class LoadRunner {
  private readonly logs: AccessLogs;
  private readonly wrkScript: string;
  private readonly udpFlood = new URL('./udp-flood.js', import.meta.url).pathname;

  constructor(
    private readonly lab: Lab,
    private readonly sinks: UdpSinks,
    private readonly options: LoadOptions,
  ) {
    this.logs = new AccessLogs(lab);
    this.wrkScript = join(lab.tmpDir, 'report.lua');
    writeFileSync(this.wrkScript, WRK_SCRIPT);
  }

  /** One load against a target: the figures, or a failure saying why there are none. */
  async measure(target: Target, load: LoadName, rep: number): Promise<Sample> {
    const base = emptySample(target.name, load, rep);
    if (load === 'udp' && !target.udp) return { ...base, failure: 'n/a: no UDP' };
    const realServers = this.lab.ns.realServers;
    this.logs.takeNew();
    if (load === 'udp') await this.sinks.takeSeen();
    const pawsBefore = realServers.map((ns) => pawsRejected(this.lab, ns));
    const dropsBefore = target.drops?.() ?? {};
    const directorBefore = namespaceTicks(this.lab.ns.director);
    const machineBefore = machineTicks();
    let sample: Sample;
    try {
      sample = load === 'udp' ? await this.udp(base, target.udp!) : this.wrk(base, target, load);
    } catch (error) {
      return { ...base, failure: (error as Error).message.split('\n')[0]!.slice(0, 300) };
    }
    const directorTicks = namespaceTicks(this.lab.ns.director) - directorBefore;
    const machine = machineTicks() - machineBefore;
    const dropsAfter = target.drops?.() ?? {};
    sample.lvsdDrops = Object.fromEntries(
      Object.entries(dropsAfter)
        .map(([reason, n]) => [reason, n - (dropsBefore[reason] ?? 0)] as const)
        .filter(([, n]) => n > 0),
    );
    sample.pawsRejected = realServers.reduce(
      (sum, ns, i) => sum + pawsRejected(this.lab, ns) - pawsBefore[i]!,
      0,
    );
    // Bulk costs are per MB moved; the others per request, connection or packet received.
    const units = load === 'bulk' ? (sample.rate * 1e9 * sample.seconds) / 8 / 1e6 : sample.requests;
    const perUnitUs = (ticks: number) => (units > 0 ? ((ticks / CLOCK_TICKS_PER_SECOND) * 1e6) / units : 0);
    const directorRan = target.name !== 'direct' && target.name !== 'nat';
    sample.directorCpuUs = directorRan ? perUnitUs(directorTicks) : null;
    sample.machineCpuUs = perUnitUs(machine);
    if (load !== 'udp') {
      const lines = this.logs.takeNew();
      sample.perRealServer = lines.map((l) => l.length);
      sample.seenClients = [...new Set(lines.flat().map((l) => l.split(' ')[0]!))];
    }
    if (sample.requests === 0) sample.failure = `no request completed (${sample.errors} errors)`;
    return sample;
  }

  private wrk(base: Sample, target: Target, load: Exclude<LoadName, 'udp'>): Sample {
    const d = this.options.durationSeconds;
    const connections = load === 'bulk' ? BULK_CONNECTIONS : this.options.connections;
    const argv = [
      ...this.options.pin,
      'wrk',
      '-t1',
      `-c${connections}`,
      `-d${d}s`,
      '--timeout',
      '5s',
      '-s',
      this.wrkScript,
      ...(load === 'close' ? ['-H', 'Connection: close'] : []),
      `http://${target.tcp}${load === 'bulk' ? BULK_PATH : PAGE_PATH}`,
    ];
    const out = this.lab.run(this.lab.ns.client, argv, { timeoutMs: (d + 10) * 1000 });
    const line = out.split('\n').find((l) => l.startsWith('WRKJSON '));
    if (!line) throw new Error(`wrk printed no summary: ${out.slice(-300)}`);
    const r = JSON.parse(line.slice('WRKJSON '.length)) as WrkResult;
    const seconds = r.durationUs / 1e6;
    return {
      ...base,
      requests: r.requests,
      seconds,
      rate: load === 'bulk' ? (r.bytes * 8) / seconds / 1e9 : r.requests / seconds,
      p50Ms: r.p50Us / 1000,
      p99Ms: r.p99Us / 1000,
      errors: r.errors,
    };
  }

  /** The flood, and what the real servers' kernels counted of it. */
  private async udp(base: Sample, address: string): Promise<Sample> {
    const [host, port] = address.split(':');
    const d = this.options.durationSeconds;
    const realServers = this.lab.ns.realServers;
    const before = realServers.map((ns) => udpArrived(this.lab, ns));
    const argv = [
      ...this.options.pin,
      process.execPath,
      this.udpFlood,
      host!,
      port!,
      `${d * 1000}`,
      `${this.options.udpFlows}`,
    ];
    const r = JSON.parse(
      this.lab.run(this.lab.ns.client, argv, { timeoutMs: (d + 30) * 1000 }),
    ) as FloodResult;
    // What the director still holds in its queues arrives within moments.
    await new Promise((resolve) => setTimeout(resolve, 100));
    const perRealServer = realServers.map((ns, i) => udpArrived(this.lab, ns) - before[i]!);
    const arrived = perRealServer.reduce((a, b) => a + b, 0);
    return {
      ...base,
      requests: arrived,
      seconds: r.seconds,
      rate: arrived / r.seconds,
      offeredRate: r.sent / r.seconds,
      errors: r.refused,
      perRealServer,
      seenClients: [...new Set((await this.sinks.takeSeen()).flat())],
    };
  }
}

/** A sample with no figures yet. */
export function emptySample(target: TargetName, load: LoadName, rep: number): Sample {
  return {
    target,
    load,
    rep,
    requests: 0,
    seconds: 0,
    rate: 0,
    p50Ms: 0,
    p99Ms: 0,
    offeredRate: null,
    errors: 0,
    pawsRejected: 0,
    lvsdDrops: {},
    directorCpuUs: null,
    machineCpuUs: 0,
    perRealServer: [],
    seenClients: [],
  };
}
