// lvsd's control side: restores the saved configuration into the engine it is given, serves
// the control socket, saves the configuration after each change, and shuts down cleanly.
// The engine is the seam where the data plane plugs in: lvsd's main picks which one to build.

import { chmod, mkdir, unlink } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { join, dirname } from 'node:path';
import { isLvsError } from '../core/errors.js';
import type { Engine } from '../core/engine.js';
import { decodeRequest, encodeResponse, MAX_REQUEST_BYTES, ProtocolErrorCodes } from './protocol.js';
import type { Request, Response } from './protocol.js';
import { ControlService } from './service.js';
import {
  readStateFile,
  renderStateFile,
  restoreStateFile,
  STATE_FILE_NAME,
  writeFileAtomic,
} from './state-file.js';

export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
export type Logger = (level: LogLevel, message: string) => void;

/** One line per event on stderr: time, level, message. */
export const stderrLogger: Logger = (level, message) => {
  process.stderr.write(`${new Date().toISOString()} ${level} ${message}\n`);
};

export interface DaemonOptions {
  socketPath: string;
  stateDir: string;
  engine: Engine;
  log: Logger;
}

export interface RunningDaemon {
  readonly service: ControlService;
  /** Stops serving, removes the socket file and closes the engine. */
  close(): Promise<void>;
}

export const DEFAULT_STATE_DIR = '/var/lib/lvsd';

/** Starts lvsd's control side; rejects (StateFileError among others) without leaving a socket behind. */
export async function startDaemon(options: DaemonOptions): Promise<RunningDaemon> {
  const { socketPath, stateDir, engine, log } = options;
  const service = new ControlService(engine);

  const saved = await readStateFile(stateDir);
  if (saved) {
    await restoreStateFile(saved.text, saved.file, service);
    log('info', `restored configuration from ${saved.file}`);
  }
  const stateFile = join(stateDir, STATE_FILE_NAME);
  service.afterChange = async (snapshot, daemons) => {
    await writeFileAtomic(stateFile, renderStateFile(snapshot, daemons));
  };

  await prepareSocketPath(socketPath);
  const sockets = new Set<Socket>();
  // Half-open: a client may send its requests, shut its side, and still read every reply.
  const server = createServer({ allowHalfOpen: true }, (socket) =>
    serveConnection(socket, service, log, sockets),
  );
  await listen(server, socketPath);
  await chmod(socketPath, 0o600);
  log('info', `listening on ${socketPath}, state in ${stateDir}`);

  let closing: Promise<void> | null = null;
  return {
    service,
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const socket of sockets) socket.destroy();
        await stopped;
        await unlink(socketPath).catch(() => undefined);
        await service.drain();
        await engine.close();
        log('info', 'stopped');
      })();
      return closing;
    },
  };
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

function serveConnection(socket: Socket, service: ControlService, log: Logger, sockets: Set<Socket>): void {
  sockets.add(socket);
  socket.setEncoding('utf8');
  let buffered = '';
  let inFlight = 0;
  let replies: Promise<void> = Promise.resolve();
  let clientDone = false;
  const finishIfDone = () => {
    if (clientDone && inFlight === 0 && !socket.destroyed) socket.end();
  };
  const reply = (response: Response) => {
    if (!socket.destroyed && socket.writable) socket.write(encodeResponse(response));
  };
  socket.on('data', (chunk: string) => {
    buffered += chunk;
    let newline: number;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, newline);
      buffered = buffered.slice(newline + 1);
      if (line.trim() === '') continue;
      if (Buffer.byteLength(line) > MAX_REQUEST_BYTES) {
        refuseOversized(socket, reply, log);
        return;
      }
      const decoded = decodeRequest(line);
      let answer: Promise<Response>;
      if ('error' in decoded) {
        log('warn', `bad request: ${decoded.error}`);
        const error = { code: ProtocolErrorCodes.BAD_REQUEST, message: decoded.error };
        answer = Promise.resolve({ v: 1, id: decoded.id, ok: false, error });
      } else {
        answer = handle(decoded.request, service, log);
      }
      // Replies go out in request order, whatever order they complete in.
      inFlight++;
      replies = replies
        .then(() => answer)
        .then((response) => {
          inFlight--;
          reply(response);
          finishIfDone();
        });
    }
    if (Buffer.byteLength(buffered) > MAX_REQUEST_BYTES) refuseOversized(socket, reply, log);
  });
  socket.on('end', () => {
    clientDone = true;
    finishIfDone();
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

async function handle(request: Request, service: ControlService, log: Logger): Promise<Response> {
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
      case 'start-sync':
        await service.startSyncDaemon(request.config);
        log('info', `start-sync ${request.config.state}: recorded (no sync traffic is sent yet)`);
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
    log('error', `${request.op}: ${String(err).replace(/\s+/g, ' ')}`);
    return {
      v: 1,
      id: request.id,
      ok: false,
      error: { code: ProtocolErrorCodes.INTERNAL, message: (err as Error).message ?? String(err) },
    };
  }
}
