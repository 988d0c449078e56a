// `npm run bench`: lvsd (packet NAT, tun NAT, packet DR) beside the kernel's NAT, HAProxy and
// nginx stream in one namespace lab, all serving the director's own address, the same loads
// against each, interleaved over repetitions; one table, a JSON file, an SVG.
// See docs/performance.md for what is measured and how to read it.

import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, release } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { buildLab, teardownOnSignals, type Lab } from '../src/lab/lab.js';
import { renderChart } from './chart.js';
import { emptySample, LoadRunner, PAGE_PATH, UdpSinks } from './loads.js';
import { missingPrerequisites } from './prerequisites.js';
import {
  goalLines,
  goals,
  goalTable,
  LOADS,
  ratioLines,
  renderTable,
  summarize,
  TARGET_LABELS,
  TARGETS,
  type Sample,
} from './summary.js';
import { DIRECT_CLIENT, makeTargets, UDP_PORT, type Target } from './targets.js';

const USAGE = `Usage: node dist/bench/compare.js [options]
  --reps N          repetitions of every target and load (default 3)
  --duration S      seconds per load (default 5)
  --targets LIST    comma-separated subset of ${TARGETS.join(',')} (default all)
  --loads LIST      comma-separated subset of ${LOADS.join(',')} (default all)
  --connections N   wrk connections for the request loads (default 32)
  --udp-flows N     UDP flood flows (source ports) (default 16)
  --no-pin          do not pin the client and the server side to separate cores
  --no-docs         do not rewrite docs/performance.md and docs/performance.svg
  --lvsd-prof DIR   run lvsd with --cpu-prof, profiles (main thread and worker) to DIR
Needs root. Writes bench-results/compare-<timestamp>.json.
`;

const PAGE_BYTES = 100;
const BULK_MB = 10;
const REPO = new URL('../../', import.meta.url).pathname;

function parseList<T extends string>(text: string | undefined, all: readonly T[], what: string): T[] {
  if (!text) return [...all];
  const items = text.split(',').map((s) => s.trim());
  const unknown = items.filter((i) => !all.includes(i as T));
  if (unknown.length > 0)
    throw new Error(`unknown ${what}: ${unknown.join(', ')} (known: ${all.join(', ')})`);
  return all.filter((t) => items.includes(t));
}

function options() {
  const { values } = parseArgs({
    options: {
      reps: { type: 'string', default: '3' },
      duration: { type: 'string', default: '5' },
      targets: { type: 'string' },
      loads: { type: 'string' },
      connections: { type: 'string', default: '32' },
      'udp-flows': { type: 'string', default: '16' },
      'no-pin': { type: 'boolean', default: false },
      'no-docs': { type: 'boolean', default: false },
      'lvsd-prof': { type: 'string' },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(USAGE);
    process.exit(0);
  }
  const positive = (name: string, text: string) => {
    const n = Number(text);
    if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} needs a positive integer, not ${text}`);
    return n;
  };
  return {
    reps: positive('reps', values.reps),
    durationSeconds: positive('duration', values.duration),
    targets: parseList(values.targets, TARGETS, 'target'),
    loads: parseList(values.loads, LOADS, 'load'),
    connections: positive('connections', values.connections),
    udpFlows: positive('udp-flows', values['udp-flows']),
    pin: !values['no-pin'] && cpus().length >= 2,
    docs: !values['no-docs'],
    lvsdProfileDir: values['lvsd-prof'],
  };
}

type Options = ReturnType<typeof options>;

function machine() {
  return {
    nproc: cpus().length,
    kernel: release(),
    cpu: cpus()[0]?.model ?? 'unknown',
    node: process.version,
  };
}

/**
 * What the lab needs beyond lab.ts: forwarding, port ranges, the direct client's own address,
 * the 100-byte page, the UDP sinks, pinning. Nothing a production host would not have: the real
 * servers keep the kernel's TIME_WAIT handling.
 */
function prepareLab(lab: Lab, serverPin: readonly string[]): UdpSinks {
  const sysctl = (ns: string, setting: string) => lab.run(ns, ['sysctl', '-qw', setting]);
  sysctl(lab.ns.director, 'net.ipv4.ip_forward=1');
  // Connection: close opens tens of thousands of connections per run; proxies open as many again.
  for (const ns of [lab.ns.client, lab.ns.director]) sysctl(ns, 'net.ipv4.ip_local_port_range=1024 65000');
  sysctl(lab.ns.director, 'net.ipv4.tcp_tw_reuse=1');
  // The client of direct: another host on the client's LAN, talking to the real servers' addresses.
  lab.run(lab.ns.client, ['ip', 'addr', 'add', `${DIRECT_CLIENT}/24`, 'dev', 'eth0']);
  const realServerNet = lab.addr.realServers[0]!.replace(/\.\d+$/, '.0/24');
  lab.run(lab.ns.client, ['ip', 'route', 'add', realServerNet, 'via', lab.addr.vip, 'src', DIRECT_CLIENT]);
  lab.ns.realServers.forEach((_, i) =>
    writeFileSync(
      join(lab.tmpDir, `rs${i + 1}`, 'www', 'page100.html'),
      `${`rs${i + 1} `.padEnd(PAGE_BYTES - 1, 'x')}\n`,
    ),
  );
  const sinks = new UdpSinks(lab, UDP_PORT, serverPin);
  if (serverPin.length === 0) return sinks;
  // The real servers' nginx was started by the lab: pin every thread of it now.
  for (const ns of lab.ns.realServers) {
    for (const pid of execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' })
      .split(/\s+/)
      .filter(Boolean))
      execFileSync('taskset', ['-a', '-p', '-c', serverPin.at(-1)!, pid], { stdio: 'ignore' });
  }
  return sinks;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until the target answers the page (twice, so a balancer reaches both real servers). */
async function waitUntilServing(lab: Lab, target: Target): Promise<void> {
  let lastError = '';
  for (let attempt = 0; attempt < 30; attempt++) {
    try {
      for (let i = 0; i < 2; i++)
        lab.run(lab.ns.client, [
          'curl',
          '-sSf',
          '--max-time',
          '2',
          '-o',
          '/dev/null',
          `http://${target.tcp}${PAGE_PATH}`,
        ]);
      return;
    } catch (error) {
      lastError = (error as Error).message.split('\n')[0]!;
      await sleep(200);
    }
  }
  throw new Error(`not serving: ${lastError}`);
}

function describe(sample: Sample): string {
  if (sample.failure) return sample.failure;
  const rate = sample.load === 'bulk' ? `${sample.rate.toFixed(2)} Gbit/s` : `${sample.rate.toFixed(0)}/s`;
  const detail =
    sample.offeredRate !== null
      ? ` (sent ${sample.offeredRate.toFixed(0)}/s)`
      : sample.load === 'bulk'
        ? ''
        : ` p50 ${sample.p50Ms.toFixed(2)} ms p99 ${sample.p99Ms.toFixed(2)} ms`;
  const errors = sample.errors ? ` errors ${sample.errors}` : '';
  const paws = sample.pawsRejected ? ` PAWS-refused ${sample.pawsRejected}` : '';
  const drops = Object.entries(sample.lvsdDrops)
    .map(([reason, n]) => ` lvsd-dropped ${reason} ${n}`)
    .join('');
  return `${rate}${detail}${errors}${paws}${drops} rs=[${sample.perRealServer.join(',')}] saw ${sample.seenClients.join(',') || '-'}`;
}

/** Every target in turn, every load, `reps` times; the first target rotates so none always goes first. */
async function runAll(
  lab: Lab,
  targets: readonly Target[],
  runner: LoadRunner,
  opts: Options,
): Promise<Sample[]> {
  const samples: Sample[] = [];
  for (let rep = 1; rep <= opts.reps; rep++) {
    const order = targets.map((_, i) => targets[(i + rep - 1) % targets.length]!);
    for (const target of order) {
      const prefix = `[rep ${rep}/${opts.reps}] ${TARGET_LABELS[target.name].padEnd(15)}`;
      try {
        await target.start();
        await waitUntilServing(lab, target);
        for (const load of opts.loads) {
          const sample = await runner.measure(target, load, rep);
          samples.push(sample);
          console.log(`${prefix} ${load.padEnd(9)} ${describe(sample)}`);
        }
      } catch (error) {
        const failure = (error as Error).message.split('\n')[0]!.slice(0, 300);
        console.log(`${prefix} FAILED: ${failure}`);
        const done = new Set(
          samples.filter((s) => s.target === target.name && s.rep === rep).map((s) => s.load),
        );
        for (const load of opts.loads.filter((l) => !done.has(l)))
          samples.push({ ...emptySample(target.name, load, rep), failure });
      } finally {
        await target.stop();
      }
    }
  }
  return samples;
}

/** Per target: did both real servers serve in every run, and whom did they take the client for. */
function checkLines(lab: Lab, targets: readonly Target[], samples: readonly Sample[]): string[] {
  return targets.map((target) => {
    const ran = samples.filter((s) => s.target === target.name && !s.failure);
    if (ran.length === 0) return `${TARGET_LABELS[target.name]}: no successful run`;
    const balanced = ran.filter(
      (s) => s.perRealServer.length > 1 && s.perRealServer.every((n) => n > 0),
    ).length;
    const totals = lab.addr.realServers.map((_, i) =>
      ran.reduce((sum, s) => sum + (s.perRealServer[i] ?? 0), 0),
    );
    const all = totals.reduce((a, b) => a + b, 0) || 1;
    const share = totals.map((n, i) => `rs${i + 1} ${((n / all) * 100).toFixed(0)}%`).join(', ');
    const expected = target.realServersSee === 'client' ? target.client : lab.addr.dip;
    const seen = [...new Set(ran.flatMap((s) => s.seenClients))];
    const peerOk = seen.length === 1 && seen[0] === expected;
    const balance = target.balances
      ? `${balanced === ran.length ? 'both real servers served' : 'NOT BALANCED'} in ${balanced}/${ran.length} runs (${share})`
      : `one real server, no balancing (${share})`;
    const peer = `real servers saw ${seen.join(', ') || 'nobody'} ${peerOk ? `(the ${target.realServersSee}, as expected)` : `(EXPECTED ${expected}, the ${target.realServersSee})`}`;
    const paws = ran.reduce((sum, s) => sum + s.pawsRejected, 0);
    const timeWait = `${paws} segments refused by the real servers for an old timestamp (PAWS)`;
    return `${TARGET_LABELS[target.name]}: ${balance}; ${peer}; ${timeWait}`;
  });
}

function timestamp(date: Date): string {
  return date
    .toISOString()
    .replace(/[:.]/g, '-')
    .replace(/-\d+Z$/, 'Z');
}

/** Replaces what lies between two markers of a document, keeping the hand-written rest. */
function updateDoc(path: string, markers: readonly [string, string], section: string): void {
  const [beginMarker, endMarker] = markers;
  const text = readFileSync(path, 'utf8');
  const begin = text.indexOf(beginMarker);
  const end = text.indexOf(endMarker);
  if (begin < 0 || end < begin) throw new Error(`${path} has no results markers`);
  writeFileSync(path, `${text.slice(0, begin + beginMarker.length)}\n${section}\n${text.slice(end)}`);
  // The table's columns are aligned the way `npm run lint` wants them.
  try {
    execFileSync(join(REPO, 'node_modules', '.bin', 'prettier'), ['--write', path], { stdio: 'ignore' });
  } catch {
    // Without the dev dependencies the file is still right, only not aligned.
  }
}

async function main(): Promise<number> {
  let opts: Options;
  try {
    opts = options();
  } catch (error) {
    process.stderr.write(`compare: ${(error as Error).message}\n${USAGE}`);
    return 2;
  }
  const problems = missingPrerequisites();
  if (problems.length > 0) {
    for (const line of problems) process.stderr.write(`compare: ${line}\n`);
    return 2;
  }
  const host = machine();
  const serverPin = opts.pin ? ['taskset', '-c', '0'] : [];
  const clientPin = opts.pin ? ['taskset', '-c', '1'] : [];
  const pinning = opts.pin
    ? 'client (wrk, UDP flood) pinned to CPU 1; director processes, real servers and UDP sinks pinned to CPU 0 (softirq runs where the packets land)'
    : 'no pinning';
  console.log(`machine: ${host.nproc} CPUs, ${host.cpu}, kernel ${host.kernel}, node ${host.node}`);
  console.log(`pinning: ${pinning}`);
  console.log(
    `loads: ${opts.loads.join(', ')}; ${opts.durationSeconds} s each, ${opts.reps} repetitions, wrk 1 thread ${opts.connections} connections (bulk 4), UDP ${opts.udpFlows} flows`,
  );
  const startedAt = new Date();
  const loadAtStart = loadavg()[0]!;
  const lab = buildLab({ prefix: 'lvsbench', bulkFileMb: opts.loads.includes('bulk') ? BULK_MB : 0 });
  const releaseSignals = teardownOnSignals(lab);
  let samples: Sample[];
  let checks: string[];
  try {
    const sinks = prepareLab(lab, serverPin);
    const lvsdNodeArgs = opts.lvsdProfileDir ? ['--cpu-prof', '--cpu-prof-dir', opts.lvsdProfileDir] : [];
    const targets = makeTargets(lab, opts.targets, { pin: serverPin, lvsdNodeArgs });
    const runner = new LoadRunner(lab, sinks, {
      durationSeconds: opts.durationSeconds,
      connections: opts.connections,
      udpFlows: opts.udpFlows,
      pin: clientPin,
    });
    samples = await runAll(lab, targets, runner, opts);
    checks = checkLines(lab, targets, samples);
  } finally {
    lab.teardown();
    releaseSignals();
  }

  const summary = summarize(samples);
  const withPacketNat = opts.targets.includes('lvsd-packet');
  const goalList = withPacketNat ? goals(summary) : [];
  const table = renderTable(summary, opts.targets, opts.loads);
  const ratios = withPacketNat ? ratioLines(summary, opts.targets, opts.loads) : [];
  console.log(`\n${table}\n\nchecks:\n${checks.map((l) => `  ${l}`).join('\n')}`);
  if (ratios.length > 0)
    console.log(`\nlvsd packet NAT / peer (medians):\n${ratios.map((l) => `  ${l}`).join('\n')}`);
  if (goalList.length > 0)
    console.log(
      `\ngoals (issue 9):\n${goalLines(goalList)
        .map((l) => `  ${l}`)
        .join('\n')}`,
    );

  const resultsDir = join(REPO, 'bench-results');
  mkdirSync(resultsDir, { recursive: true });
  const jsonPath = join(resultsDir, `compare-${timestamp(startedAt)}.json`);
  const config = { ...opts, pinning, pageBytes: PAGE_BYTES, bulkMb: BULK_MB };
  writeFileSync(
    jsonPath,
    `${JSON.stringify({ startedAt: startedAt.toISOString(), machine: host, config, checks, summary, goals: goalList, samples }, null, 1)}\n`,
  );
  console.log(`\nwrote ${jsonPath}`);

  const fullRun =
    opts.targets.length === TARGETS.length && opts.loads.length === LOADS.length && opts.reps >= 3;
  if (opts.docs && fullRun) {
    const caption = `${startedAt.toISOString().slice(0, 10)}, ${host.nproc} x ${host.cpu}, kernel ${host.kernel}; ${opts.reps} reps x ${opts.durationSeconds} s`;
    writeFileSync(
      join(REPO, 'docs', 'performance.svg'),
      renderChart(summary, opts.targets, opts.loads, caption),
    );
    const runLine = `Run of ${startedAt.toISOString().replace(/\.\d+Z$/, 'Z')} on ${host.nproc} CPUs (${host.cpu}), kernel ${host.kernel}, Node ${host.node}; load average ${loadAtStart.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end.`;
    updateDoc(
      join(REPO, 'docs', 'performance.md'),
      ['<!-- results:begin (written by npm run bench) -->', '<!-- results:end -->'],
      [
        runLine,
        `${opts.reps} repetitions of ${opts.durationSeconds} s per load, interleaved; ${pinning}.`,
        'Medians, with min-max over the repetitions in parentheses.',
        '',
        renderTable(summary, opts.targets, opts.loads, true),
        '',
        '![lvsd beside kernel NAT, HAProxy and nginx stream](performance.svg)',
        '',
        'Checks:',
        '',
        ...checks.map((l) => `- ${l}`),
        '',
        'lvsd packet NAT / peer (medians):',
        '',
        ...ratios.map((l) => `- ${l}`),
        '',
        'Goals (issue 9):',
        '',
        goalTable(goalList),
      ].join('\n'),
    );
    updateDoc(
      join(REPO, 'README.md'),
      ['<!-- bench:begin (written by npm run bench) -->', '<!-- bench:end -->'],
      [runLine, '', goalTable(goalList)].join('\n'),
    );
    console.log('updated docs/performance.md, docs/performance.svg and README.md');
  } else if (opts.docs) {
    console.log('docs not updated: only a full run (all targets, all loads, 3+ repetitions) rewrites them');
  }
  return 0;
}

process.exitCode = await main();
