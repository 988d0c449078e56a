#!/usr/bin/env node
// lvsd: the director daemon. This main picks the engine; the control side lives in
// src/control/daemon.ts.

import { performance } from 'node:perf_hooks';
import { Director } from '../core/director.js';
import { DEFAULT_SOCKET_PATH } from '../cli/client.js';
import { DEFAULT_STATE_DIR, startDaemon, stderrLogger } from '../control/daemon.js';
import type { Engine } from '../control/engine.js';
import { InProcessEngine } from '../control/in-process-engine.js';
import { StateFileError } from '../control/state-file.js';

const USAGE = `Usage: lvsd [--socket PATH] [--state-dir DIR]
  --socket PATH     control socket (default ${DEFAULT_SOCKET_PATH}, or $LVSD_SOCKET)
  --state-dir DIR   where the configuration is saved (default ${DEFAULT_STATE_DIR}, or $LVSD_STATE_DIR)
Runs in the foreground and logs to stderr. Stop it with SIGTERM or SIGINT.
`;

function usageError(message: string): never {
  process.stderr.write(`lvsd: ${message}\n${USAGE}`);
  process.exit(2);
}

function parseCommandLine(args: string[]): { socketPath: string; stateDir: string } {
  let socketPath = process.env.LVSD_SOCKET || DEFAULT_SOCKET_PATH;
  let stateDir = process.env.LVSD_STATE_DIR || DEFAULT_STATE_DIR;
  for (let i = 0; i < args.length; i++) {
    const [name, inline] = args[i]!.split(/=(.*)/s, 2) as [string, string | undefined];
    if (name === '-h' || name === '--help') {
      process.stdout.write(USAGE);
      process.exit(0);
    }
    if (name !== '--socket' && name !== '--state-dir') usageError(`unknown option ${name}`);
    const value = inline ?? args[++i];
    if (!value) usageError(`${name} needs a value`);
    if (name === '--socket') socketPath = value;
    else stateDir = value;
  }
  return { socketPath, stateDir };
}

/** The seam for the data plane: lvsd without one runs the director in this thread. */
function buildEngine(): Engine {
  const director = new Director({ clock: { now: () => performance.now() } });
  return new InProcessEngine(director, { tickIntervalMs: 1000 });
}

const { socketPath, stateDir } = parseCommandLine(process.argv.slice(2));
const engine = buildEngine();
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
