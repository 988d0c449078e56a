// The data-plane thread: owns the director (and so the connection table) and runs the packet
// loop. poll() blocks synchronously, so the thread's event loop never turns: control requests
// are pulled with receiveMessageOnPort between turns and answered with postMessage.

import { performance } from 'node:perf_hooks';
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import type { Clock } from '../core/clock.js';
import {
  serializeError,
  type PacketDirector,
  type Reply,
  type Request,
  type Startup,
  type WorkerEventMessage,
  type WorkerSettings,
} from './messages.js';
import { RealSystem } from './host.js';
import { PacketLoop } from './packet-loop.js';
import { AfPacketDriver } from './af-packet.js';
import { LinkMtus, NetlinkLinks } from './links.js';
import { Neighbours, NetlinkNeighbours } from './neighbours.js';
import { IpRouteLookup, NetlinkNextHops, NextHopCache, ROUTE_CACHE_MS } from './routes.js';
import { TUN_FRAME_MAX, TunDriver } from './tun.js';

const settings = workerData as WorkerSettings;
const port = settings.port;
const clock: Clock = { now: () => performance.now() };

async function start(): Promise<void> {
  let loop: PacketLoop;
  try {
    const { Director } = (await import(settings.directorModule)) as {
      Director: new (
        options: Pick<WorkerSettings, 'connCapacity' | 'defense' | 'expiry' | 'forwarding'> & {
          clock: Clock;
        },
      ) => PacketDirector;
    };
    loop = new PacketLoop({
      director: new Director({
        clock,
        connCapacity: settings.connCapacity,
        defense: settings.defense,
        expiry: settings.expiry,
        forwarding: settings.forwarding,
      }),
      driver: new TunDriver(settings.tun?.mtu ?? 0),
      clock,
      frameMax: TUN_FRAME_MAX,
      mainDevice: settings.tun?.name ?? null,
      idlePollMs: settings.idlePollMs,
      tickMs: settings.tickMs,
      report: (event) => port.postMessage({ event } satisfies WorkerEventMessage),
      routes: new IpRouteLookup(new RealSystem()),
      link: settings.link
        ? {
            driver: new AfPacketDriver(),
            neighbours: new Neighbours(new NetlinkNeighbours(), clock),
            links: new LinkMtus(new NetlinkLinks()),
            nextHops: new NextHopCache(new NetlinkNextHops(), clock, ROUTE_CACHE_MS),
          }
        : undefined,
    });
  } catch (error) {
    parentPort!.postMessage({ kind: 'failed', error: serializeError(error) } satisfies Startup);
    return;
  }
  parentPort!.postMessage({ kind: 'ready', tunName: loop.mainDeviceName } satisfies Startup);
  run(loop);
  port.close();
}

function run(loop: PacketLoop): void {
  let running = true;
  const serve = (request: Request): unknown => {
    switch (request.kind) {
      case 'execute':
        return loop.execute(request.op);
      case 'snapshot':
        return loop.snapshot(request.connections);
      case 'connections':
        return loop.director.connections(request.from, request.limit);
      case 'stats':
        return loop.counters();
      case 'link-plan':
        return loop.setLinkPlan(request.plan);
      case 'sync-source':
        if (request.tuning) loop.director.startSyncSource(request.tuning);
        else loop.director.stopSyncSource();
        return undefined;
      case 'sync-page':
        return loop.director.syncPage(request.request);
      case 'sync-import':
        return loop.director.importSynced(request.conns);
      case 'export-conns':
        return loop.director.exportConnections();
      case 'import-conns':
        return loop.director.importConnections(request.records);
      case 'stop':
        running = false;
        loop.close();
        return undefined;
    }
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
    if (running) loop.turn();
  }
}

void start();
