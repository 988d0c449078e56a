// One side of the sync multicast test, run inside a network namespace:
//   node sync-peer.js backup CONFIG_JSON   joins the group, prints "ready", then one JSON line per
//                                          delivered batch; on SIGTERM prints {"stats": ...} and exits.
//   node sync-peer.js master CONFIG_JSON CONNS_JSON
//                                          sends a datagram with a wrong size field and a foreign syncid first (raw socket), and
//                                          a good one from SYNC_PEER_OFFLINK_ADDR (IPv4), then
//                                          drives the connections through the master's schedule
//                                          (packets 1..3 each), stops (sending what is pending) and
//                                          prints {"stats": ...}.

import { createSocket } from 'node:dgram';
import { formatAddr } from '../../src/core/inet.js';
import type { SyncDaemonConfig } from '../../src/core/ops.js';
import type { SyncConn } from '../../src/core/sync/conn.js';
import { encode } from '../../src/core/sync/message.js';
import { BackupSyncDaemon, MasterSyncDaemon } from '../../src/sync/daemon.js';

const [role, configText, connsText] = process.argv.slice(2);
const config = JSON.parse(configText!) as SyncDaemonConfig;

function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

/** Datagrams a real master never sends, straight to the group from a plain socket. */
async function sendForeign(conns: SyncConn[]): Promise<void> {
  const v6 = config.mcastGroup.af === 6;
  const socket = createSocket(v6 ? 'udp6' : 'udp4');
  await new Promise<void>((resolve) => socket.bind(0, resolve));
  socket.setMulticastInterface(v6 ? `::%${config.mcastInterface}` : process.env.SYNC_PEER_ADDR!);
  const group = v6
    ? `${formatAddr(config.mcastGroup)}%${config.mcastInterface}`
    : formatAddr(config.mcastGroup);
  const datagrams = [Uint8Array.of(0, 7, 0, 9, 1), encode({ syncId: (config.syncId + 1) & 0xff, conns })];
  const send = (from: typeof socket, d: Uint8Array) =>
    new Promise<void>((resolve, reject) =>
      from.send(d, config.mcastPort, group, (e) => (e ? reject(e) : resolve())),
    );
  for (const d of datagrams) await send(socket, d);
  socket.close();
  // A good message from an address on none of the backup's networks (IPv4 only): dropped unread.
  const offLink = process.env.SYNC_PEER_OFFLINK_ADDR;
  if (!v6 && offLink) {
    const stranger = createSocket('udp4');
    await new Promise<void>((resolve) => stranger.bind(0, offLink, resolve));
    stranger.setMulticastInterface(offLink);
    await send(stranger, encode({ syncId: config.syncId, conns }));
    stranger.close();
  }
}

if (role === 'backup') {
  const daemon = await BackupSyncDaemon.start(config, (conns) => print({ conns }));
  process.on('SIGTERM', () => {
    void daemon.stop().then(() => {
      print({ stats: daemon.stats() });
      process.exit(0);
    });
  });
  print({ ready: daemon.config });
} else {
  const conns = JSON.parse(connsText!) as SyncConn[];
  await sendForeign(conns);
  const daemon = await MasterSyncDaemon.start(config);
  for (const conn of conns) for (let p = 1; p <= 3; p++) daemon.handle({ kind: 'packet', conn, inPkts: p });
  await daemon.stop();
  print({ stats: daemon.stats() });
}
