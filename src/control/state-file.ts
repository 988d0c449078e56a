// lvsd's saved configuration: ipvsadm `-S -n` rules (plus thresholds, a `--set` line and the
// sync daemons), written atomically after each change and replayed through the same parser at
// start. A file that does not replay cleanly stops lvsd rather than being silently dropped.

import { mkdir, open, readFile, rename } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { refusalMessage } from '../ipvsadm/messages.js';
import { parseArgs } from '../ipvsadm/parse.js';
import { renderRules, ruleWords } from '../ipvsadm/rules.js';
import type { Snapshot, SyncDaemonConfig } from '../core/ops.js';
import type { ControlApi } from './api.js';

export const STATE_FILE_NAME = 'ipvsadm.rules';

export class StateFileError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly reason: string,
  ) {
    super(
      `${file}:${line}: ${reason}\n` +
        `lvsd will not start with a state file it cannot restore. Fix that line, or move the file ` +
        `away to start with an empty table (the rules in it can be re-applied with: lvsadm -R < FILE).`,
    );
    this.name = 'StateFileError';
  }
}

export function renderStateFile(snapshot: Snapshot, daemons: readonly SyncDaemonConfig[]): string {
  return (
    '# lvsd state: ipvsadm -S -n rules, replayed by lvsd at start. Written by lvsd; edit only while it is stopped.\n' +
    renderRules(snapshot, daemons)
  );
}

/** Replays a state file into `api`; throws StateFileError at the first line that does not apply. */
export async function restoreStateFile(text: string, file: string, api: ControlApi): Promise<void> {
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.trim() === '' || line.trimStart().startsWith('#')) continue;
    const command = parseArgs(ruleWords(line));
    const lineNo = i + 1;
    if (command.kind === 'usage-error') throw new StateFileError(file, lineNo, command.text.trim());
    try {
      if (command.kind === 'execute') await api.execute(command.op);
      else if (command.kind === 'start-daemon') await api.startSyncDaemon(command.config);
      else
        throw new StateFileError(
          file,
          lineNo,
          'only changes (-A, -a, --set, --start-daemon, ...) belong in a state file',
        );
    } catch (err) {
      if (err instanceof StateFileError) throw err;
      const code = (err as { code?: unknown }).code;
      const call = command.kind === 'execute' ? command.op.op : 'start-daemon';
      const reason =
        typeof code === 'string' ? refusalMessage(call, code, (err as Error).message) : String(err);
      throw new StateFileError(file, lineNo, reason);
    }
  }
}

/** Reads the state file; null when there is none yet. */
export async function readStateFile(stateDir: string): Promise<{ file: string; text: string } | null> {
  const file = join(stateDir, STATE_FILE_NAME);
  try {
    return { file, text: await readFile(file, 'utf8') };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

/** Write to a temporary file, fsync it, rename it over the target, fsync the directory. */
export async function writeFileAtomic(file: string, text: string): Promise<void> {
  const dir = dirname(file);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const temp = `${file}.tmp-${process.pid}`;
  const handle = await open(temp, 'w', 0o600);
  try {
    await handle.writeFile(text);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await rename(temp, file);
  const dirHandle = await open(dir, 'r');
  try {
    await dirHandle.sync();
  } finally {
    await dirHandle.close();
  }
}
