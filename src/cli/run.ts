// lvsadm's behaviour for one invocation, given a ControlApi and its I/O: what ipvsadm's main,
// process_options and restore_table do, with the kernel replaced by lvsd.

import type { ControlApi } from '../control/api.js';
import { ProtocolErrorCodes } from '../control/protocol.js';
import { ErrorCodes } from '../core/errors.js';
import { ruleWords } from '../ipvsadm/rules.js';
import { addrEquals } from '../core/inet.js';
import type { Addr } from '../core/inet.js';
import { MAX_CONN_PAGE, type Snapshot } from '../core/ops.js';
import { DaemonUnreachableError } from './client.js';
import { runDoctor } from './doctor.js';
import {
  formatConnectionRows,
  formatConnectionsHeader,
  formatJson,
  formatRules,
  formatServiceList,
  formatSyncDaemons,
  formatSyncDaemonsJson,
  formatTimeouts,
  NUMERIC_NAMES,
  serviceKeyEquals,
} from '../ipvsadm/format.js';
import type { NameTable } from '../ipvsadm/format.js';
import { lvsadmHelpText, usageText, versionText } from './help.js';
import {
  FAIL_EXIT,
  LIST_EXIT,
  REFUSED_EXIT,
  refusalMessage,
  unreachableMessage,
} from '../ipvsadm/messages.js';
import type { RefusedCall } from '../ipvsadm/messages.js';
import { emptyListFormat, NO_NAMES, parseArgs, tryHelpText } from '../ipvsadm/parse.js';
import type { Command, ListFormat, NameLookup } from '../ipvsadm/parse.js';

export interface CliContext {
  api: ControlApi;
  program: string;
  stdout(text: string): void;
  stderr(text: string): void;
  /** Lines of standard input, for -R. */
  stdinLines(): AsyncIterable<string>;
  /** Names for parsing host:service arguments. */
  names?: NameLookup;
  /** Names for listings without -n; numeric when absent. */
  resolveNames?(addrs: readonly Addr[]): Promise<NameTable>;
  socketPath?: string;
}

/** An exit status, and whether it ends a restore (fail(), exit()) or lets it go on (a refusal). */
interface Outcome {
  exit: number;
  abort: boolean;
}

const OK: Outcome = { exit: 0, abort: false };

/** Runs lvsadm with `argv` (without the program name); resolves to the exit status. */
export async function runLvsadm(argv: readonly string[], ctx: CliContext): Promise<number> {
  try {
    // A bare word is never an ipvsadm command, so this one leaves ipvsadm's grammar as it is.
    if (argv[0] === 'doctor') return await runDoctor(argv.slice(1), ctx);
    if (argv.length === 0) {
      return (await runCommand({ kind: 'list', what: 'services', format: emptyListFormat() }, ctx, false))
        .exit;
    }
    return (await runLine(argv, ctx, false)).exit;
  } catch (err) {
    if (err instanceof DaemonUnreachableError) {
      ctx.stderr(unreachableMessage(err.socketPath, err.message) + '\n');
      return FAIL_EXIT;
    }
    throw err;
  }
}

async function runLine(argv: readonly string[], ctx: CliContext, readingStdin: boolean): Promise<Outcome> {
  const command = parseArgs(argv, {
    program: ctx.program,
    names: ctx.names ?? NO_NAMES,
    warn: (text) => ctx.stderr(text + '\n'),
  });
  if (command.kind === 'usage-error') {
    ctx.stderr(command.text + '\n');
    return { exit: command.exit, abort: command.endsRestore };
  }
  return runCommand(command, ctx, readingStdin);
}

async function runCommand(command: Command, ctx: CliContext, readingStdin: boolean): Promise<Outcome> {
  switch (command.kind) {
    case 'help':
      ctx.stdout(command.lvsadm ? lvsadmHelpText(ctx.program) : usageText(ctx.program));
      return { exit: 0, abort: true };
    case 'version':
      ctx.stdout(versionText());
      return { exit: 0, abort: true };
    case 'restore':
      if (readingStdin) {
        ctx.stderr(tryHelpText(ctx.program) + '\n');
        return { exit: REFUSED_EXIT, abort: true };
      }
      return restore(ctx);
    case 'execute':
      return refusable(command.op.op, ctx, () => ctx.api.execute(command.op));
    case 'start-daemon':
      return refusable('start-daemon', ctx, () => ctx.api.startSyncDaemon(command.config));
    case 'stop-daemon':
      return refusable('stop-daemon', ctx, () => ctx.api.stopSyncDaemon(command.state));
    case 'save': {
      const snapshot = await ctx.api.snapshot({ connections: false });
      if (command.format.json) ctx.stdout(formatJson(snapshot, { counters: false }));
      else ctx.stdout(formatRules(snapshot, command.format, await namesFor(snapshot, command.format, ctx)));
      return OK;
    }
    case 'list':
      return list(command, ctx);
    case 'runtime':
      return runtime(command, ctx);
  }
}

/** --drain and the others; with --json, the real server as `-L --json` lists it afterwards. */
async function runtime(command: Extract<Command, { kind: 'runtime' }>, ctx: CliContext): Promise<Outcome> {
  const { op } = command;
  const outcome = await refusable(op.op, ctx, () => ctx.api.execute(op));
  if (outcome.exit !== 0 || !command.json) return outcome;
  const snapshot = await ctx.api.snapshot({ connections: false });
  const services = snapshot.services
    .filter((s) => serviceKeyEquals(s.key, op.key))
    .map((s) => ({
      ...s,
      dests: s.dests.filter((d) => d.port === op.port && addrEquals(d.addr, op.addr)),
    }));
  ctx.stdout(formatJson({ ...snapshot, services }, { counters: true }));
  return outcome;
}

async function refusable(call: RefusedCall, ctx: CliContext, action: () => Promise<void>): Promise<Outcome> {
  try {
    await action();
    return OK;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (err instanceof DaemonUnreachableError || typeof code !== 'string') throw err;
    // A request lvsd's protocol check refuses is one the kernel would refuse with EINVAL; its
    // text names lvsd's internal fields, so it is not shown.
    const known = code === ProtocolErrorCodes.BAD_REQUEST ? ErrorCodes.INVALID : code;
    ctx.stderr(refusalMessage(call, known, (err as Error).message) + '\n');
    return { exit: REFUSED_EXIT, abort: false };
  }
}

/** Every address a listing may name. */
function addressesOf(snapshot: Snapshot): Addr[] {
  const addrs: Addr[] = [];
  for (const svc of snapshot.services) {
    if (!svc.key.fwmark) addrs.push(svc.key.addr);
    for (const d of svc.dests) addrs.push(d.addr);
  }
  return addrs;
}

async function namesFor(snapshot: Snapshot, format: ListFormat, ctx: CliContext): Promise<NameTable> {
  if (format.numeric || !ctx.resolveNames) return NUMERIC_NAMES;
  return ctx.resolveNames(addressesOf(snapshot));
}

async function list(command: Extract<Command, { kind: 'list' }>, ctx: CliContext): Promise<Outcome> {
  const format = command.format;
  switch (command.what) {
    case 'timeout':
      ctx.stdout(formatTimeouts((await ctx.api.snapshot({ connections: false })).timeouts));
      return OK;
    case 'daemon': {
      const daemons = await ctx.api.syncDaemons();
      ctx.stdout(format.json ? formatSyncDaemonsJson(daemons) : formatSyncDaemons(daemons));
      // The listing stays ipvsadm's; two masters on one syncid are said on stderr.
      for (const d of daemons) {
        const peer = d.stats?.peerMasters;
        if (peer?.active)
          ctx.stderr(
            `warning: split brain: another ${d.state} sync daemon at ${peer.last} sends on syncid ${d.syncId}\n`,
          );
      }
      return OK;
    }
    case 'connections': {
      // A page at a time, printed as it comes: a million entries never sit in memory at once.
      ctx.stdout(formatConnectionsHeader(format));
      for (let from = 0; from >= 0;) {
        const page = await ctx.api.connections(from, MAX_CONN_PAGE);
        const names =
          format.numeric || !ctx.resolveNames
            ? NUMERIC_NAMES
            : await ctx.resolveNames(page.entries.flatMap((c) => [c.caddr, c.vaddr, c.daddr]));
        ctx.stdout(formatConnectionRows(page.entries, format, names));
        from = page.next;
      }
      return OK;
    }
    case 'services': {
      const snapshot = await ctx.api.snapshot({ connections: false });
      const only = command.service;
      if (only && !snapshot.services.some((s) => serviceKeyEquals(s.key, only))) {
        ctx.stderr(refusalMessage('get-service', 'LVS_ERR_NO_SERVICE', 'No such service') + '\n');
        return { exit: LIST_EXIT, abort: true };
      }
      if (format.json) {
        const selected = only
          ? { ...snapshot, services: snapshot.services.filter((s) => serviceKeyEquals(s.key, only)) }
          : snapshot;
        ctx.stdout(formatJson(selected, { counters: true, nosort: format.nosort }));
        return OK;
      }
      ctx.stdout(formatServiceList(snapshot, format, await namesFor(snapshot, format, ctx), only));
      return OK;
    }
  }
}

/** -R: each stdin line through the same parser; fail() ends it, refusals are printed and it goes on. */
async function restore(ctx: CliContext): Promise<Outcome> {
  let last: Outcome = OK;
  for await (const line of ctx.stdinLines()) {
    const words = ruleWords(line);
    if (words.length === 0) continue;
    last = await runLine(words, ctx, true);
    if (last.abort) return last;
  }
  return { exit: last.exit, abort: false };
}
