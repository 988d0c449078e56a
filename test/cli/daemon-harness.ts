// Starts a real lvsd (node dist/src/bin/lvsd.js --no-dataplane) on a temporary socket and state directory,
// and makes sure it is gone afterwards.

import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const DIST = resolve(fileURLToPath(import.meta.url), '../../..');
export const LVSD = join(DIST, 'src/bin/lvsd.js');
export const LVSADM = join(DIST, 'src/bin/lvsadm.js');

export interface SpawnedDaemon {
  socketPath: string;
  stateDir: string;
  child: ChildProcess;
  stderr(): string;
  /** Resolves once stderr, after its first `from` characters, matches `pattern`; rejects after 10 s. */
  waitForLog(pattern: RegExp, from?: number): Promise<void>;
  /** SIGTERM and wait for exit; resolves to the exit code. */
  stop(): Promise<number | null>;
}

export async function tempDir(prefix = 'lvsd-test-'): Promise<string> {
  return mkdtemp(join(tmpdir(), prefix));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

export interface SpawnOptions {
  /** More lvsd options (`--http ...`). */
  args?: string[];
  /** Wait for this on stderr too (the HTTP listener logs after the control socket). */
  ready?: string;
}

/** Spawns lvsd and waits until its socket exists (or it exits). */
export async function spawnDaemon(
  dir: string,
  stateDir = join(dir, 'state'),
  { args = [], ready = 'listening' }: SpawnOptions = {},
): Promise<SpawnedDaemon> {
  const socketPath = join(dir, 'run', 'lvsd.sock');
  const child = spawn(
    process.execPath,
    [LVSD, '--no-dataplane', '--socket', socketPath, '--state-dir', stateDir, ...args],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
    },
  );
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  const deadline = Date.now() + 10_000;
  while (!existsSync(socketPath) || !stderr.includes('listening') || !stderr.includes(ready)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`lvsd did not start (exit ${child.exitCode}): ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    socketPath,
    stateDir,
    child,
    stderr: () => stderr,
    async waitForLog(pattern, from = 0) {
      const until = Date.now() + 10_000;
      while (!pattern.test(stderr.slice(from))) {
        if (child.exitCode !== null || Date.now() > until)
          throw new Error(`lvsd did not log ${pattern} (exit ${child.exitCode}): ${stderr.slice(from)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

/** Runs lvsd to completion (for start-up failures); resolves to its exit code and stderr. */
export function runDaemonToExit(
  dir: string,
  stateDir: string,
  args: string[] = [],
): Promise<{ code: number | null; stderr: string }> {
  return new Promise((res) => {
    const child = spawn(
      process.execPath,
      [LVSD, '--no-dataplane', '--socket', join(dir, 'run', 'lvsd.sock'), '--state-dir', stateDir, ...args],
      {
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    );
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      res({ code, stderr });
    });
  });
}

/** Runs the lvsadm binary; resolves to its exit status and output. */
export function runLvsadmBinary(
  args: string[],
  env: Record<string, string>,
  stdin = '',
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((res) => {
    const child = spawn(process.execPath, [LVSADM, ...args], {
      env: { ...process.env, LVSADM_RESOLVE: 'hosts', ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    child.stdin.end(stdin);
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      res({ code, stdout, stderr });
    });
  });
}
