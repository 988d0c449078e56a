// The data-plane thread: owns the director (and so the connection table) and runs the packet
// loop. poll() blocks synchronously, so the thread's event loop never turns: control requests
// are pulled with receiveMessageOnPort between batches and answered with postMessage.

import { performance } from 'node:perf_hooks';
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import type { Clock } from '../core/clock.js';
import {
  serializeError,
  zeroDataplaneStats,
  type PacketDirector,
  type Reply,
  type Request,
  type Startup,
  type WorkerSettings,
} from './messages.js';
import { sleepMs, TunDevice, TUN_FRAME_MAX } from './tun.js';

/** Frames handled before control requests and the tick get their turn. */
const BATCH = 64;

const settings = workerData as WorkerSettings;
const port = settings.port;
const clock: Clock = { now: () => performance.now() };

async function start(): Promise<void> {
  let tun: TunDevice | null = null;
  let director: PacketDirector;
  try {
    const { Director } = (await import(settings.directorModule)) as {
      Director: new (options: { clock: Clock; connCapacity?: number }) => PacketDirector;
    };
    director = new Director({ clock, connCapacity: settings.connCapacity });
    if (settings.tun) tun = TunDevice.open(settings.tun);
  } catch (error) {
    parentPort!.postMessage({ kind: 'failed', error: serializeError(error) } satisfies Startup);
    return;
  }
  parentPort!.postMessage({ kind: 'ready', tunName: tun?.name ?? null } satisfies Startup);
  run(director, tun);
  port.close();
}

function run(director: PacketDirector, tun: TunDevice | null): void {
  const stats = zeroDataplaneStats();
  const frame = new Uint8Array(TUN_FRAME_MAX);
  let lastTick = clock.now();
  let running = true;

  const serve = (request: Request): unknown => {
    switch (request.kind) {
      case 'execute':
        return director.execute(request.op);
      case 'snapshot':
        return director.snapshot({ connections: request.connections });
      case 'stats':
        return structuredClone(stats);
      case 'stop':
        running = false;
        tun?.close();
        return undefined;
    }
  };

  const send = (device: TunDevice, buf: Uint8Array, length: number): void => {
    if (device.write(buf, length)) {
      stats.txPackets++;
      stats.txBytes += length;
    } else stats.drops.writeFailed++;
  };

  while (running) {
    for (let m = receiveMessageOnPort(port); m; m = running ? receiveMessageOnPort(port) : undefined) {
      const request = m.message as Request;
      let reply: Reply;
      try {
        reply = { id: request.id, ok: true, value: serve(request) };
      } catch (error) {
        reply = { id: request.id, ok: false, error: serializeError(error) };
      }
      port.postMessage(reply);
    }
    if (!running) break;

    if (tun) {
      let handled = 0;
      for (; handled < BATCH; handled++) {
        const n = tun.read(frame);
        if (n === 0) break;
        stats.rxPackets++;
        stats.rxBytes += n;
        let out: number;
        try {
          out = director.process(frame, 0, n);
        } catch {
          stats.drops.exception++;
          continue;
        }
        if (out === 0) stats.drops.verdict++;
        else send(tun, frame, out);
        if (director.pending.length > 0) {
          for (const extra of director.pending.splice(0)) send(tun, extra, extra.length);
        }
      }
      if (handled === 0) tun.poll(settings.idlePollMs);
    } else {
      sleepMs(settings.idlePollMs);
    }

    const now = clock.now();
    if (now - lastTick >= settings.tickMs) {
      lastTick = now;
      director.tick();
    }
  }
}

void start();
