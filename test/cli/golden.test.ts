// Golden scripts (test/golden/*.txt) run against a real lvsd. Script syntax, one item a line:
//   $ lvsadm ARGS...   a command (words split on spaces; 'single quotes' keep spaces)
//   < TEXT             a line of its standard input (for -R)
//   > TEXT             a line it must print on stdout (">" alone: an empty line)
//   ! TEXT             a line it must print on stderr
//   ? N                its exit status (0 when absent)
//   @restart           stop lvsd (SIGTERM) and start it again on the same state directory
//   # ...              a comment
// Output must match exactly, trailing spaces included.

import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { DaemonClient } from '../../src/cli/client.js';
import { runLvsadm } from '../../src/cli/run.js';
import { DIST, removeDir, spawnDaemon, tempDir } from './daemon-harness.js';
import type { SpawnedDaemon } from './daemon-harness.js';
import { TEST_NAMES } from './golden-names.js';

const GOLDEN_DIR = join(DIST, '../test/golden');

interface Step {
  kind: 'command' | 'restart';
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

for (const file of readdirSync(GOLDEN_DIR)
  .filter((f) => f.endsWith('.txt'))
  .sort()) {
  test(`golden ${file}`, async () => {
    const steps = parseScript(readFileSync(join(GOLDEN_DIR, file), 'utf8'));
    const dir = await tempDir();
    let daemon: SpawnedDaemon | null = null;
    try {
      daemon = await spawnDaemon(dir);
      for (const step of steps) {
        if (step.kind === 'restart') {
          assert.equal(await daemon.stop(), 0, 'lvsd exits 0 on SIGTERM');
          daemon = await spawnDaemon(dir);
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
