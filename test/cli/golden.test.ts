// Golden scripts (test/golden/*.txt) run against a real lvsd. Script syntax, one item a line:
//   $ lvsadm ARGS...   a command (words split on spaces; 'single quotes' keep spaces)
//   < TEXT             a line of its standard input (for -R)
//   > TEXT             a line it must print on stdout (">" alone: an empty line)
//   ! TEXT             a line it must print on stderr
//   ? N                its exit status (0 when absent)
//   @restart           stop lvsd (SIGTERM) and start it again on the same state directory
//   @count -t VIP:PORT [-r RIP:PORT] COUNTER=VALUE...
//                      set a service's (or real server's) counters (conns, inPkts, outPkts,
//                      inBytes, outBytes) to u64 values no test traffic could reach
//   # ...              a comment
// Output must match exactly, trailing spaces included. A script with @count runs against lvsd's
// daemon in this process (startDaemon, protocol, client as lvsd's own), whose director it can
// reach; the others against a spawned lvsd.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { DaemonClient } from '../../src/cli/client.js';
import { runLvsadm } from '../../src/cli/run.js';
import { startDaemon } from '../../src/control/daemon.js';
import { InProcessEngine } from '../../src/control/in-process-engine.js';
import { ManualClock } from '../../src/core/clock.js';
import { Director } from '../../src/core/director.js';
import { addrEquals } from '../../src/core/inet.js';
import { COUNTERS, type Counter } from '../../src/core/model.js';
import { parseArgs } from '../../src/ipvsadm/parse.js';
import { setCounter } from '../helpers/counters.js';
import { DIST, removeDir, spawnDaemon, tempDir } from './daemon-harness.js';
import type { SpawnedDaemon } from './daemon-harness.js';
import { TEST_NAMES } from './golden-names.js';

const GOLDEN_DIR = join(DIST, '../test/golden');

interface Step {
  kind: 'command' | 'restart' | 'count';
  line: number;
  args: string[];
  stdin: string[];
  stdout: string[];
  stderr: string[];
  exit: number;
}

function splitWords(text: string): string[] {
  const words: string[] = [];
  for (const m of text.matchAll(/'([^']*)'|(\S+)/g)) words.push(m[1] ?? m[2]!);
  return words;
}

function parseScript(text: string): Step[] {
  const steps: Step[] = [];
  const lines = text.split('\n');
  if (lines.at(-1) === '') lines.pop();
  lines.forEach((raw, i) => {
    const current = steps.at(-1);
    const body = raw.length > 2 ? raw.slice(2) : '';
    if (raw.startsWith('#') || raw.trim() === '') return;
    if (raw === '@restart') {
      steps.push({ kind: 'restart', line: i + 1, args: [], stdin: [], stdout: [], stderr: [], exit: 0 });
      return;
    }
    if (raw.startsWith('@count ')) {
      const args = splitWords(raw.slice('@count '.length));
      steps.push({ kind: 'count', line: i + 1, args, stdin: [], stdout: [], stderr: [], exit: 0 });
      return;
    }
    if (raw.startsWith('$ ')) {
      const words = splitWords(body);
      assert.equal(words.shift(), 'lvsadm', `line ${i + 1}: commands start with "lvsadm"`);
      steps.push({ kind: 'command', line: i + 1, args: words, stdin: [], stdout: [], stderr: [], exit: 0 });
      return;
    }
    assert.ok(current && current.kind === 'command', `line ${i + 1}: output before any command`);
    if (raw.startsWith('>')) current.stdout.push(body);
    else if (raw.startsWith('!')) current.stderr.push(body);
    else if (raw.startsWith('<')) current.stdin.push(body);
    else if (raw.startsWith('? ')) current.exit = Number(body);
    else assert.fail(`line ${i + 1}: cannot read ${JSON.stringify(raw)}`);
  });
  return steps;
}

async function runStep(
  step: Step,
  socketPath: string,
): Promise<{ stdout: string; stderr: string; exit: number }> {
  const client = new DaemonClient(socketPath);
  let stdout = '';
  let stderr = '';
  try {
    const exit = await runLvsadm(step.args, {
      api: client,
      program: 'lvsadm',
      socketPath,
      names: TEST_NAMES,
      resolveNames: (addrs) => TEST_NAMES.resolve(addrs),
      stdout: (t) => (stdout += t),
      stderr: (t) => (stderr += t),
      stdinLines: () => createInterface({ input: Readable.from(step.stdin.map((l) => l + '\n')) }),
    });
    return { stdout, stderr, exit };
  } finally {
    client.close();
  }
}

const lines = (texts: string[]) => texts.map((t) => t + '\n').join('');

/** A running lvsd for a script: spawned, or in this process with its director at hand. */
interface GoldenDaemon {
  socketPath: string;
  director: Director | null;
  stop(): Promise<unknown>;
}

async function spawnedDaemon(dir: string): Promise<GoldenDaemon> {
  const daemon: SpawnedDaemon = await spawnDaemon(dir);
  return { socketPath: daemon.socketPath, director: null, stop: () => daemon.stop() };
}

async function inProcessDaemon(dir: string): Promise<GoldenDaemon> {
  const director = new Director({ clock: new ManualClock(), connCapacity: 1024 });
  const socketPath = join(dir, 'run', 'lvsd.sock');
  const daemon = await startDaemon({
    socketPath,
    stateDir: join(dir, 'state'),
    createEngine: async () => new InProcessEngine(director),
    log: () => undefined,
  });
  return { socketPath, director, stop: () => daemon.close() };
}

/** @count: the service named as `-D` would name it (with -r: the real server, as `-d`). */
function setCounters(director: Director, step: Step, where: string): void {
  const values = step.args.filter((w) => w.includes('='));
  const address = step.args.filter((w) => !w.includes('='));
  const parsed = parseArgs([address.includes('-r') ? '-d' : '-D', ...address]);
  assert.ok(parsed.kind === 'execute', `${where}: cannot read ${address.join(' ')}`);
  const op = parsed.op;
  assert.ok(op.op === 'delete-service' || op.op === 'delete-dest', `${where}: not a service`);
  const service = director.services.find(op.key);
  const owner =
    op.op === 'delete-dest'
      ? service?.dests.find((d) => d.port === op.port && addrEquals(d.addr, op.addr))
      : service;
  assert.ok(owner, `${where}: no such service or real server`);
  for (const pair of values) {
    const [name, value] = pair.split('=') as [string, string];
    assert.ok((COUNTERS as readonly string[]).includes(name), `${where}: no counter ${name}`);
    setCounter(owner.stats, name as Counter, BigInt(value));
  }
}

for (const file of readdirSync(GOLDEN_DIR)
  .filter((f) => f.endsWith('.txt'))
  .sort()) {
  test(`golden ${file}`, async () => {
    const steps = parseScript(readFileSync(join(GOLDEN_DIR, file), 'utf8'));
    const start = steps.some((step) => step.kind === 'count') ? inProcessDaemon : spawnedDaemon;
    const dir = await tempDir();
    let daemon: GoldenDaemon | null = null;
    try {
      daemon = await start(dir);
      for (const step of steps) {
        if (step.kind === 'restart') {
          const code = await daemon.stop();
          if (daemon.director === null) assert.equal(code, 0, 'lvsd exits 0 on SIGTERM');
          daemon = await start(dir);
          continue;
        }
        if (step.kind === 'count') {
          setCounters(daemon.director!, step, `${file}:${step.line}`);
          continue;
        }
        const got = await runStep(step, daemon.socketPath);
        const where = `${file}:${step.line} lvsadm ${step.args.join(' ')}`;
        assert.equal(got.stdout, lines(step.stdout), `${where}: stdout`);
        assert.equal(got.stderr, lines(step.stderr), `${where}: stderr`);
        assert.equal(got.exit, step.exit, `${where}: exit status`);
      }
    } finally {
      await daemon?.stop();
      await removeDir(dir);
    }
  });
}
