#!/usr/bin/env node
// lvsd: the director daemon. This main picks the engine; the control side lives in
// src/control/daemon.ts, the packet path in src/dataplane/.

import { performance } from 'node:perf_hooks';
import { Director } from '../core/director.js';
import { DEFAULT_SOCKET_PATH } from '../cli/client.js';
import { DEFAULT_STATE_DIR, startDaemon, stderrLogger } from '../control/daemon.js';
import type { Engine } from '../core/engine.js';
import { InProcessEngine } from '../control/in-process-engine.js';
import { StateFileError } from '../control/state-file.js';
import { startDataplaneEngine } from '../dataplane/start.js';

const USAGE = `Usage: lvsd [--socket PATH] [--state-dir DIR] [--no-dataplane]
       lvsd demo [--keep]
       lvsd check-config [--config-id ID] FILE
  --socket PATH     control socket (default ${DEFAULT_SOCKET_PATH}, or $LVSD_SOCKET)
  --state-dir DIR   where the configuration is saved (default ${DEFAULT_STATE_DIR}, or $LVSD_STATE_DIR)
  --no-dataplane    keep and serve the configuration only, move no packets (no root needed)
  demo              build a lab in network namespaces and show a director at work (root)
  check-config      read a keepalived.conf, list its services and checkers, exit 1 on errors
Runs in the foreground and logs to stderr. Stop it with SIGTERM or SIGINT.
`;

interface CommandLine {
  socketPath: string;
  stateDir: string;
  dataplane: boolean;
}

function usageError(message: string): never {
  process.stderr.write(`lvsd: ${message}\n${USAGE}`);
  process.exit(2);
}

function parseCommandLine(args: string[]): CommandLine {
  let socketPath = process.env.LVSD_SOCKET || DEFAULT_SOCKET_PATH;
  let stateDir = process.env.LVSD_STATE_DIR || DEFAULT_STATE_DIR;
  let dataplane = true;
  for (let i = 0; i < args.length; i++) {
    const [name, inline] = args[i]!.split(/=(.*)/s, 2) as [string, string | undefined];
    if (name === '-h' || name === '--help') {
      process.stdout.write(USAGE);
      process.exit(0);
    }
    if (name === '--no-dataplane' && inline === undefined) {
      dataplane = false;
      continue;
    }
    if (name !== '--socket' && name !== '--state-dir') usageError(`unknown option ${name}`);
    const value = inline ?? args[++i];
    if (!value) usageError(`${name} needs a value`);
    if (name === '--socket') socketPath = value;
    else stateDir = value;
  }
  return { socketPath, stateDir, dataplane };
}

/** With the data plane, the director lives in its worker thread; without, in this one. */
async function buildEngine({ dataplane, stateDir }: CommandLine): Promise<Engine> {
  if (!dataplane) {
    const director = new Director({ clock: { now: () => performance.now() } });
    return new InProcessEngine(director, { tickIntervalMs: 1000 });
  }
  if (process.getuid?.() !== 0) {
    throw new Error(
      'the data plane needs root (a TUN device, routes, nftables): run as root, or with --no-dataplane',
    );
  }
  return startDataplaneEngine({ stateDir });
}

async function runDaemon(commandLine: CommandLine): Promise<void> {
  const { socketPath, stateDir } = commandLine;
  let engine: Engine;
  try {
    engine = await buildEngine(commandLine);
  } catch (err) {
    stderrLogger('error', `cannot start: ${(err as Error).message}`);
    process.exit(1);
  }
  try {
    const daemon = await startDaemon({ socketPath, stateDir, engine, log: stderrLogger });
    const stop = (signal: string) => {
      stderrLogger('info', `${signal} received, shutting down`);
      void daemon.close().then(() => process.exit(0));
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  } catch (err) {
    await engine.close();
    if (err instanceof StateFileError) {
      for (const line of err.message.split('\n')) stderrLogger('error', line);
    } else {
      stderrLogger('error', `cannot start: ${(err as Error).message}`);
    }
    process.exit(1);
  }
}

const args = process.argv.slice(2);
if (args[0] === 'check-config') {
  const { runCheckConfig } = await import('./check-config.js');
  process.exitCode = runCheckConfig(args.slice(1));
} else if (args[0] === 'demo') {
  const { runDemo } = await import('../demo/demo.js');
  process.exit(await runDemo(args.slice(1)));
} else {
  await runDaemon(parseCommandLine(args));
}
