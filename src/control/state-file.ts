// lvsd's state directory on disk: the configuration document (lvsd.json, src/control/config.ts)
// read and checked at start and on reload, written atomically after each change through a small
// file-system port (a fake or a faulty one in tests); and the migration of the ipvsadm rules file
// that lvsd kept before the document (ipvsadm.rules), converted once and kept as *.migrated.

import { mkdir, open, readFile, rename, unlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { ManualClock } from '../core/clock.js';
import { Director } from '../core/director.js';
import { refusalMessage } from '../ipvsadm/messages.js';
import { parseArgs } from '../ipvsadm/parse.js';
import type { Command } from '../ipvsadm/parse.js';
import { ruleWords } from '../ipvsadm/rules.js';
import { CONFIG_FILE_NAME, ConfigError, configFromSnapshot, parseConfig, renderConfig } from './config.js';
import type { LvsdConfig } from './config.js';
import { InProcessEngine } from './in-process-engine.js';
import { ControlService } from './service.js';

export const RULES_FILE_NAME = 'ipvsadm.rules';
export const MIGRATED_SUFFIX = '.migrated';

/** A state file lvsd cannot use: it names the file, where in it, and what is wrong. */
export class StateFileError extends Error {
  constructor(
    readonly file: string,
    /** A line number (rules files) or the entry (a JSON path) of the document. */
    readonly where: number | string | null,
    readonly reason: string,
    advice: string,
  ) {
    const place =
      where === null ? `${file}: ` : typeof where === 'number' ? `${file}:${where}: ` : `${file}: ${where}: `;
    super(`${place}${reason}\n${advice}`);
    this.name = 'StateFileError';
  }
}

const DOCUMENT_ADVICE =
  'lvsd will not start with a configuration it cannot apply. Fix the file (docs/configuration.md), or move ' +
  'it away to start with an empty table.';
const RULES_ADVICE =
  'lvsd will not start with a state file it cannot restore. Fix that line, or move the file away to start ' +
  'with an empty table (the rules in it can be re-applied with: lvsadm -R < FILE).';

/** A refused entry of the document, as the operator will read it. */
export function documentError(file: string, entry: string | null, reason: string): StateFileError {
  return new StateFileError(file, entry, reason, DOCUMENT_ADVICE);
}

// ---- the file-system port ----

/** The few file operations the state directory needs; faults are injected behind it in tests. */
export interface StateFs {
  readFile(file: string): Promise<string>;
  mkdir(dir: string): Promise<void>;
  /** Creates (or truncates) `file` owner-only, writes `text` and fsyncs it before closing. */
  writeSynced(file: string, text: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  unlink(file: string): Promise<void>;
  /** fsyncs a directory, so that a rename in it survives a crash. */
  syncDir(dir: string): Promise<void>;
}

export const nodeStateFs: StateFs = {
  readFile: (file) => readFile(file, 'utf8'),
  mkdir: async (dir) => {
    await mkdir(dir, { recursive: true, mode: 0o700 });
  },
  async writeSynced(file, text) {
    const handle = await open(file, 'w', 0o600);
    try {
      await handle.writeFile(text);
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
  rename,
  unlink,
  async syncDir(dir) {
    const handle = await open(dir, 'r');
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  },
};

/**
 * Writes a temporary file, fsyncs it, renames it over the target, fsyncs the directory. When any
 * step fails the temporary file is removed and the target is as it was (a full disk leaves no
 * `.tmp` files behind).
 */
export async function writeFileAtomic(file: string, text: string, fs: StateFs = nodeStateFs): Promise<void> {
  const dir = dirname(file);
  await fs.mkdir(dir);
  const temp = `${file}.tmp-${process.pid}`;
  try {
    await fs.writeSynced(temp, text);
    await fs.rename(temp, file);
  } catch (err) {
    await fs.unlink(temp).catch(() => undefined);
    throw err;
  }
  // The new file is in place: a directory that cannot be fsynced only weakens its durability
  // across a power loss, and failing the change now would leave the engine and the file apart.
  await fs.syncDir(dir).catch(() => undefined);
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}

// ---- the configuration document ----

/** Where lvsd's configuration is read from at start and on reload, and saved to after each change. */
export class ConfigStore {
  readonly file: string;
  readonly rulesFile: string;
  /** The text last read or written: a save of the same text writes nothing. */
  private current: string | null = null;

  constructor(
    readonly stateDir: string,
    private readonly fs: StateFs = nodeStateFs,
  ) {
    this.file = join(stateDir, CONFIG_FILE_NAME);
    this.rulesFile = join(stateDir, RULES_FILE_NAME);
  }

  private async readOrNull(file: string): Promise<string | null> {
    try {
      return await this.fs.readFile(file);
    } catch (err) {
      if (isMissing(err)) return null;
      throw documentError(file, null, `cannot read it: ${(err as Error).message}`);
    }
  }

  /** The document, checked; null when there is none. Throws StateFileError naming the problem. */
  async readDocument(): Promise<LvsdConfig | null> {
    const text = await this.readOrNull(this.file);
    if (text === null) return null;
    // What the file holds, good or not: the next save must replace a document that was refused.
    this.current = text;
    try {
      return parseConfig(text);
    } catch (err) {
      if (err instanceof ConfigError) throw documentError(this.file, null, err.message);
      throw err;
    }
  }

  /**
   * What lvsd starts from: the document, or the ipvsadm rules file of an older lvsd converted to
   * one (`migrated` then says so: rename it with finishMigration once the document is saved).
   * Neither file is changed here.
   */
  async load(): Promise<{ config: LvsdConfig | null; migrated: boolean }> {
    const config = await this.readDocument();
    const rules = await this.readOrNull(this.rulesFile);
    if (config && rules !== null) {
      throw new StateFileError(
        this.rulesFile,
        null,
        `both it and ${this.file} exist`,
        `lvsd reads only ${CONFIG_FILE_NAME}. Move ${RULES_FILE_NAME} away (or, to start from it, move ` +
          `${CONFIG_FILE_NAME} away and it will be migrated again).`,
      );
    }
    if (config) return { config, migrated: false };
    if (rules === null) return { config: null, migrated: false };
    return { config: await rulesToConfig(rules, this.rulesFile), migrated: true };
  }

  /** Keeps the migrated rules file beside the document, renamed so that it is not read again. */
  async finishMigration(): Promise<string> {
    const target = this.rulesFile + MIGRATED_SUFFIX;
    await this.fs.rename(this.rulesFile, target);
    await this.fs.syncDir(this.stateDir);
    return target;
  }

  /** Saves the document atomically; nothing is written when it is what the file already holds. */
  async save(config: LvsdConfig): Promise<void> {
    const text = renderConfig(config);
    if (text === this.current) return;
    await writeFileAtomic(this.file, text, this.fs);
    this.current = text;
  }
}

// ---- the ipvsadm rules file of older lvsd versions ----

type RuleCommand = Extract<Command, { kind: 'execute' } | { kind: 'start-daemon' }>;

/** Parses every line first: a line that is not a change stops the migration before anything runs. */
function parseRules(text: string, file: string): Array<{ line: number; command: RuleCommand }> {
  const rules: Array<{ line: number; command: RuleCommand }> = [];
  text.split('\n').forEach((raw, i) => {
    if (raw.trim() === '' || raw.trimStart().startsWith('#')) return;
    const command = parseArgs(ruleWords(raw));
    if (command.kind === 'usage-error')
      throw new StateFileError(file, i + 1, command.text.trim(), RULES_ADVICE);
    if (command.kind !== 'execute' && command.kind !== 'start-daemon') {
      throw new StateFileError(
        file,
        i + 1,
        'only changes (-A, -a, --set, --start-daemon, ...) belong in a state file',
        RULES_ADVICE,
      );
    }
    rules.push({ line: i + 1, command });
  });
  return rules;
}

/**
 * Converts a rules file into the document by replaying it, through the ipvsadm codec, into a
 * director of its own (not the one that will run): so a refused line is reported with its line
 * number, and nothing of the running lvsd or the host is touched before the whole file is good.
 */
export async function rulesToConfig(text: string, file: string): Promise<LvsdConfig> {
  const rules = parseRules(text, file);
  const engine = new InProcessEngine(new Director({ clock: new ManualClock(), connCapacity: 16 }));
  const scratch = new ControlService(engine);
  for (const { line, command } of rules) {
    try {
      if (command.kind === 'execute') await scratch.execute(command.op);
      else await scratch.startSyncDaemon(command.config);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      const call = command.kind === 'execute' ? command.op.op : 'start-daemon';
      const reason =
        typeof code === 'string' ? refusalMessage(call, code, (err as Error).message) : String(err);
      throw new StateFileError(file, line, reason, RULES_ADVICE);
    }
  }
  return configFromSnapshot(await scratch.snapshot({ connections: false }), await scratch.syncDaemons());
}
