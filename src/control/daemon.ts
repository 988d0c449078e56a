// lvsd's control side: locks the state directory, reads the configuration document (migrating
// an older ipvsadm rules file), builds the engine and applies the configuration to it through
// ControlService, serves the control socket (with a bound on what each client may queue), reloads
// on demand (SIGHUP), and shuts down cleanly, handing its connections over to the next run when
// asked (restart.ts). The engine is the seam where the data plane plugs in: lvsd's main says how
// to build one.

import { chmod, mkdir, unlink } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { dirname } from 'node:path';
import { isLvsError } from '../core/errors.js';
import type { Engine } from '../core/engine.js';
import type { Snapshot } from '../core/ops.js';
import { refusalMessage } from '../ipvsadm/messages.js';
import type { RefusedCall } from '../ipvsadm/messages.js';
import type { LvsdConfig } from './config.js';
import { ConnTableStore } from './conn-table.js';
import { lockStateDir } from './lock.js';
import type { Logger } from './log.js';
import { decodeRequest, encodeResponse, MAX_REQUEST_BYTES, ProtocolErrorCodes } from './protocol.js';
import type { Request, Response } from './protocol.js';
import { DEFAULT_RESTART_OPTIONS, handOverConnections, takeOverConnections } from './restart.js';
import type { RestartOptions } from './restart.js';
import { ConfigApplyError, ControlService, StateWriteError } from './service.js';
import { ConfigStore, documentError, nodeStateFs, StateFileError } from './state-file.js';
import type { StateFs } from './state-file.js';

/** What one control client may hold of lvsd's memory and time. */
export interface ClientLimits {
  /** Requests read but not yet answered, plus replies not yet taken by the client: past this, lvsd stops reading from it. */
  maxPendingReplies: number;
  /** Reply bytes queued for the client: past this, lvsd stops reading from it. */
  maxUnwrittenBytes: number;
  /** A client that neither sends nor takes anything for this long (while lvsd owes it nothing) is closed. */
  idleTimeoutMs: number;
}

export const DEFAULT_CLIENT_LIMITS: ClientLimits = {
  maxPendingReplies: 32,
  maxUnwrittenBytes: 1 << 20,
  idleTimeoutMs: 60_000,
};

/**
 * A source of configuration re-read on reload besides lvsd.json (the keepalived.conf reader
 * plugs in here): run in order after the document has been applied, each with the same
 * ControlService; a hook that throws is logged and the others still run.
 */
export interface ReloadHook {
  readonly name: string;
  reload(service: ControlService): Promise<void>;
}

export interface DaemonOptions {
  socketPath: string;
  stateDir: string;
  /** Called once the state directory is locked and its configuration read and checked. */
  createEngine: () => Promise<Engine>;
  log: Logger;
  /** The state directory's file operations (a faulty fake in tests). */
  fs?: StateFs;
  clientLimits?: Partial<ClientLimits>;
  reloadHooks?: readonly ReloadHook[];
  /**
   * The file that owns the configuration instead of lvsd.json (a keepalived.conf): lvsd.json is
   * neither read nor written, a reload only runs the hooks, and control clients may change only
   * runtime state (drain, maint, weights) and counters.
   */
  configOwner?: string;
  /** See ControlServiceOptions.annotateSnapshot. */
  annotateSnapshot?: (snapshot: Snapshot) => Snapshot;
  /** How restarts hand the connection table over (RunningDaemon.takeOver, close({ handOver })). */
  restart?: Partial<RestartOptions>;
}

export interface ReloadResult {
  /** False when the document could not be read or applied: then nothing changed. */
  ok: boolean;
  changes: number;
}

export interface RunningDaemon {
  readonly service: ControlService;
  /** The engine createEngine built (for its events: lvsd's main watches for a failed data plane). */
  readonly engine: Engine;
  /** Re-reads lvsd.json and applies what differs (then the reload hooks); never throws. */
  reload(): Promise<ReloadResult>;
  /**
   * Takes over the connection table the previous run handed over (connections.json), whole or
   * not at all, and ends the hold on the services' traffic it left. Call once, when the services
   * are in; never throws (what it did, or why it refused the table, is logged).
   */
  takeOver(): Promise<void>;
  /**
   * Stops serving, removes the socket file, closes the engine and drops the lock. With handOver
   * (a stop that a start will follow: SIGTERM), first holds the services' traffic and saves the
   * connection table for the next run.
   */
  close(options?: { handOver?: boolean }): Promise<void>;
}

export const DEFAULT_STATE_DIR = '/var/lib/lvsd';

/** How a refused entry of the document reads: the file, the entry, ipvsadm's message for the refusal. */
function refusedEntry(file: string, err: ConfigApplyError): StateFileError {
  const code = (err.cause as { code?: unknown }).code;
  const change = err.change;
  const call: RefusedCall =
    change.kind === 'execute' ? change.op.op : change.kind === 'start-sync' ? 'start-daemon' : 'stop-daemon';
  const message = (err.cause as Error).message ?? String(err.cause);
  return documentError(
    file,
    err.entry,
    typeof code === 'string' ? refusalMessage(call, code, message) : message,
  );
}

async function applyDocument(service: ControlService, config: LvsdConfig, file: string): Promise<number> {
  try {
    return (await service.apply(config)).length;
  } catch (err) {
    if (err instanceof ConfigApplyError) throw refusedEntry(file, err);
    throw err;
  }
}

/**
 * Starts lvsd's control side. Rejects (StateLockError, StateFileError among others) having
 * changed nothing: a second lvsd on the same state directory stops before it builds an engine or
 * touches the socket; a document that cannot be read stops it before the engine is built.
 */
export async function startDaemon(options: DaemonOptions): Promise<RunningDaemon> {
  const { socketPath, stateDir, log } = options;
  const limits = { ...DEFAULT_CLIENT_LIMITS, ...options.clientLimits };
  const lock = lockStateDir(stateDir);
  let engine: Engine | null = null;
  let startedService: ControlService | null = null;
  try {
    const store = new ConfigStore(stateDir, options.fs ?? nodeStateFs);
    const owner = options.configOwner ?? null;
    const { config, migrated } = owner ? { config: null, migrated: false } : await store.load();
    engine = await options.createEngine();
    const service = new ControlService(engine, {
      store: owner ? null : store,
      log,
      runSyncDaemons: true,
      ...(options.annotateSnapshot ? { annotateSnapshot: options.annotateSnapshot } : {}),
    });
    startedService = service;
    if (owner) log('info', `the configuration comes from ${owner}; ${store.file} is not used`);
    if (config) {
      await applyDocument(service, config, migrated ? store.rulesFile : store.file);
      if (migrated) {
        const kept = await store.finishMigration();
        log('info', `migrated ${store.rulesFile} to ${store.file}; the old file is kept as ${kept}`);
      } else {
        log('info', `restored configuration from ${store.file}`);
      }
    }

    await prepareSocketPath(socketPath);
    const sockets = new Set<Socket>();
    // Half-open: a client may send its requests, shut its side, and still read every reply.
    const server = createServer({ allowHalfOpen: true }, (socket) =>
      serveConnection(socket, service, log, sockets, limits, owner),
    );
    await listen(server, socketPath);
    await chmod(socketPath, 0o600);
    log('info', `listening on ${socketPath}, state in ${stateDir}`);

    const runningEngine = engine;
    const restart = { ...DEFAULT_RESTART_OPTIONS, ...options.restart };
    const connTable = new ConnTableStore(stateDir, options.fs ?? nodeStateFs);
    let closing: Promise<void> | null = null;
    const reloadDocument = async (): Promise<ReloadResult> => {
      log('info', `reloading ${store.file}`);
      try {
        const desired = await store.readDocument();
        const changes = desired ? await applyDocument(service, desired, store.file) : 0;
        log(
          'info',
          desired ? `reloaded ${store.file}: ${changes} changes` : `no ${store.file}: nothing to reload`,
        );
        return { ok: true, changes };
      } catch (err) {
        for (const line of (err as Error).message.split('\n')) log('error', line);
        log('error', 'reload refused: nothing was changed');
        return { ok: false, changes: 0 };
      }
    };
    return {
      service,
      engine: runningEngine,
      async reload() {
        const result = owner ? { ok: true, changes: 0 } : await reloadDocument();
        for (const hook of options.reloadHooks ?? []) {
          await hook
            .reload(service)
            .catch((err: unknown) => log('error', `reload of ${hook.name}: ${(err as Error).message}`));
        }
        return result;
      },
      takeOver: () => takeOverConnections(runningEngine, connTable, restart, log),
      close(closeOptions = {}) {
        closing ??= (async () => {
          const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
          for (const socket of sockets) socket.destroy();
          await stopped;
          await unlink(socketPath).catch(() => undefined);
          await service.close();
          if (closeOptions.handOver) await handOverConnections(runningEngine, connTable, restart, log);
          await runningEngine.close();
          lock.release();
          log('info', 'stopped');
        })();
        return closing;
      },
    };
  } catch (err) {
    await startedService?.close();
    await engine?.close();
    lock.release();
    throw err;
  }
}

/** Creates the socket's directory; removes a stale socket, refuses if another lvsd answers there. */
async function prepareSocketPath(socketPath: string): Promise<void> {
  await mkdir(dirname(socketPath), { recursive: true, mode: 0o755 });
  const alive = await new Promise<boolean>((resolve) => {
    const probe = createConnection(socketPath);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) throw new Error(`another lvsd is already listening on ${socketPath}`);
  await unlink(socketPath).catch(() => undefined);
}

function listen(server: Server, socketPath: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    // Created owner-only from the start, not just after the chmod.
    const previousUmask = process.umask(0o177);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
    process.umask(previousUmask);
  });
}

function serveConnection(
  socket: Socket,
  service: ControlService,
  log: Logger,
  sockets: Set<Socket>,
  limits: ClientLimits,
  owner: string | null,
): void {
  sockets.add(socket);
  socket.setEncoding('utf8');
  let buffered = '';
  /** Requests read and not yet answered. */
  let inFlight = 0;
  /** Replies handed to the socket and not yet taken by the client. */
  let unflushed = 0;
  let replies: Promise<void> = Promise.resolve();
  let clientDone = false;
  let refused = false;
  const full = () =>
    inFlight + unflushed >= limits.maxPendingReplies || socket.writableLength >= limits.maxUnwrittenBytes;
  const reply = (response: Response) => {
    if (socket.destroyed || !socket.writable) return;
    unflushed++;
    socket.write(encodeResponse(response), () => {
      unflushed--;
      pump();
    });
  };
  // Takes requests off the buffer while the client has room; reading stops while it has none,
  // so a client that pipelines without reading is held by its own socket, not by lvsd's memory.
  const pump = () => {
    if (socket.destroyed || refused) return;
    let start = 0;
    let newline: number;
    while (!full() && (newline = buffered.indexOf('\n', start)) >= 0) {
      const line = buffered.slice(start, newline);
      start = newline + 1;
      if (line.trim() === '') continue;
      if (Buffer.byteLength(line) > MAX_REQUEST_BYTES) {
        refused = true;
        refuseOversized(socket, reply, log);
        return;
      }
      dispatch(line);
    }
    buffered = buffered.slice(start);
    if (!buffered.includes('\n') && Buffer.byteLength(buffered) > MAX_REQUEST_BYTES) {
      refused = true;
      refuseOversized(socket, reply, log);
      return;
    }
    if (full()) socket.pause();
    else if (!clientDone) socket.resume();
    if (clientDone && inFlight === 0 && !buffered.includes('\n')) socket.end();
  };
  const dispatch = (line: string) => {
    const decoded = decodeRequest(line);
    let answer: Promise<Response>;
    if ('error' in decoded) {
      log('warn', `bad request: ${decoded.error}`);
      const error = { code: ProtocolErrorCodes.BAD_REQUEST, message: decoded.error };
      answer = Promise.resolve({ v: 1, id: decoded.id, ok: false, error });
    } else {
      answer = handle(decoded.request, service, log, owner);
    }
    // Replies go out in request order, whatever order they complete in.
    inFlight++;
    replies = replies
      .then(() => answer)
      .then((response) => {
        inFlight--;
        reply(response);
        pump();
      });
  };
  socket.on('data', (chunk: string) => {
    buffered += chunk;
    pump();
  });
  socket.on('end', () => {
    clientDone = true;
    pump();
  });
  socket.setTimeout(limits.idleTimeoutMs);
  socket.on('timeout', () => {
    // Waiting for lvsd itself (a long operation) is not idleness.
    if (inFlight > 0 && unflushed === 0) return;
    log(
      'warn',
      `control client idle for ${limits.idleTimeoutMs} ms with ${inFlight + unflushed} replies pending; closed`,
    );
    socket.destroy();
  });
  socket.on('error', () => socket.destroy());
  socket.on('close', () => sockets.delete(socket));
}

function refuseOversized(socket: Socket, reply: (r: Response) => void, log: Logger): void {
  log('warn', `request larger than ${MAX_REQUEST_BYTES} bytes; connection closed`);
  reply({
    v: 1,
    id: null,
    ok: false,
    error: { code: ProtocolErrorCodes.TOO_LARGE, message: `request larger than ${MAX_REQUEST_BYTES} bytes` },
  });
  socket.end();
  socket.pause();
}

/** Whether a request changes what the owner of the configuration (a keepalived.conf) decides. */
function changesConfiguration(request: Request): boolean {
  if (request.op === 'start-sync' || request.op === 'stop-sync') return true;
  return (
    request.op === 'execute' && request.command.op !== 'zero' && request.command.op !== 'set-dest-runtime'
  );
}

async function handle(
  request: Request,
  service: ControlService,
  log: Logger,
  owner: string | null,
): Promise<Response> {
  if (owner && changesConfiguration(request)) {
    const message = `the configuration comes from ${owner}: edit it and reload lvsd (SIGHUP); lvsadm may only drain, ready, maint, set weights and zero counters`;
    log(
      'info',
      `${request.op === 'execute' ? request.command.op : request.op}: refused: configuration owned by ${owner}`,
    );
    return { v: 1, id: request.id, ok: false, error: { code: ProtocolErrorCodes.CONFIG_OWNED, message } };
  }
  try {
    switch (request.op) {
      case 'execute':
        await service.execute(request.command);
        log('info', `${request.command.op}: done`);
        return { v: 1, id: request.id, ok: true };
      case 'snapshot':
        return {
          v: 1,
          id: request.id,
          ok: true,
          result: await service.snapshot({ connections: request.connections }),
        };
      case 'connections':
        return {
          v: 1,
          id: request.id,
          ok: true,
          result: await service.connections(request.from, request.limit),
        };
      case 'start-sync':
        await service.startSyncDaemon(request.config);
        log('info', `start-sync ${request.config.state}: running`);
        return { v: 1, id: request.id, ok: true };
      case 'stop-sync':
        await service.stopSyncDaemon(request.state);
        log('info', `stop-sync ${request.state}: done`);
        return { v: 1, id: request.id, ok: true };
      case 'sync-daemons':
        return { v: 1, id: request.id, ok: true, result: await service.syncDaemons() };
    }
  } catch (err) {
    if (isLvsError(err)) {
      log('info', `${request.op === 'execute' ? request.command.op : request.op}: refused: ${err.code}`);
      return { v: 1, id: request.id, ok: false, error: { code: err.code, message: err.message } };
    }
    if (err instanceof StateWriteError) {
      log('error', `${request.op === 'execute' ? request.command.op : request.op}: ${err.message}`);
      return { v: 1, id: request.id, ok: false, error: { code: err.code, message: err.message } };
    }
    log('error', `${request.op}: ${String(err).replace(/\s+/g, ' ')}`);
    return {
      v: 1,
      id: request.id,
      ok: false,
      error: { code: ProtocolErrorCodes.INTERNAL, message: (err as Error).message ?? String(err) },
    };
  }
}
