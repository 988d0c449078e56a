#!/usr/bin/env node
// lvsadm: ipvsadm's command line, talking to lvsd over its control socket.

import { basename } from 'node:path';
import { createInterface } from 'node:readline';
import { DaemonClient, DEFAULT_SOCKET_PATH } from '../cli/client.js';
import { SystemNames } from '../cli/names.js';
import { runLvsadm } from '../cli/run.js';

/** Takes `--socket PATH` / `--socket=PATH` out of argv (lvsadm's own option, not ipvsadm's). */
function takeSocketOption(argv: string[]): { argv: string[]; socket: string | undefined } {
  const rest: string[] = [];
  let socket: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--socket' && i + 1 < argv.length) socket = argv[++i];
    else if (arg.startsWith('--socket=')) socket = arg.slice('--socket='.length);
    else rest.push(arg);
  }
  return { argv: rest, socket };
}

const { argv, socket } = takeSocketOption(process.argv.slice(2));
const socketPath = socket ?? process.env.LVSD_SOCKET ?? DEFAULT_SOCKET_PATH;
const program = basename(process.argv[1] ?? 'lvsadm').replace(/\.js$/, '');
const names = new SystemNames({ dns: process.env.LVSADM_RESOLVE !== 'hosts' });
const client = new DaemonClient(socketPath);

const exit = await runLvsadm(argv, {
  api: client,
  program,
  socketPath,
  names,
  resolveNames: (addrs) => names.resolve(addrs),
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
  stdinLines: () => createInterface({ input: process.stdin, crlfDelay: Infinity }),
});
client.close();
process.exitCode = exit;
