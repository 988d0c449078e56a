// `lvsd check-config FILE`: the adapter around src/keepalived/check.ts (file system, host name,
// stdout/stderr), like `keepalived -t`.

import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { checkConfigOutput } from '../keepalived/check.js';
import { readKeepalivedConf } from '../keepalived/read.js';
import { fileSystemConfigFiles } from './keepalived-files.js';

const USAGE = `Usage: lvsd check-config [--config-id ID] FILE
  Reads a keepalived.conf (and its includes), prints its services as lvsadm -S -n would
  and each real server's checkers; warnings go to stderr. Exits 1 on an error (FILE:LINE: reason).
  --config-id ID   what @ID lines match (default: the host name up to its first dot)
`;

/** keepalived's default config_id: the host name's first part. */
export function defaultConfigId(): string {
  return hostname().split('.')[0] ?? '';
}

/** Runs the command; returns the exit status. */
export function runCheckConfig(args: readonly string[]): number {
  let configId = defaultConfigId();
  const files: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '-h' || arg === '--help') {
      process.stdout.write(USAGE);
      return 0;
    }
    if (arg === '--config-id' && args[i + 1] !== undefined) configId = args[++i]!;
    else if (arg.startsWith('--config-id=')) configId = arg.slice('--config-id='.length);
    else if (arg.startsWith('-')) {
      process.stderr.write(`lvsd check-config: unknown option ${arg}\n${USAGE}`);
      return 2;
    } else files.push(arg);
  }
  if (files.length !== 1) {
    process.stderr.write(`lvsd check-config: give one configuration file\n${USAGE}`);
    return 2;
  }
  const result = readKeepalivedConf(fileSystemConfigFiles, resolve(files[0]!), { configId });
  const out = checkConfigOutput(result);
  process.stdout.write(out.stdout);
  process.stderr.write(out.stderr);
  return out.status;
}
