// Run inside a real server's namespace by tunnel.test when the kernel has no ipip module
// (CONFIG_NET_IPIP unset, as on this project's machines): it stands in for that module and
// nothing more. It takes IPIP packets (protocol 4) from a raw socket, which also keeps the
// kernel from answering them with "protocol unreachable", and hands the inner packet, unchanged,
// to a TUN device named tunl0, so that the real server's stack receives it on tunl0 exactly as
// from the kernel's fallback tunnel: the VIP on tunl0, rp_filter and arp sysctls as operators set
// them, nginx answering the client directly. Prints "ready", runs until stdin closes.

import koffi from 'koffi';
import { rawReceive } from '../../src/health/sockets.js';
import { TunDevice, TunDriver, VNET_HDR_LEN } from '../../src/dataplane/tun.js';

const AF_INET = 2;
const SOCK_RAW = 3;
const SOCK_NONBLOCK = 0o4000;
const IPPROTO_IPIP = 4;

const socket = koffi.load('libc.so.6').func('int socket(int domain, int type, int protocol)');
const fd = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK, IPPROTO_IPIP) as number;
if (fd < 0) throw new Error(`socket(IPPROTO_IPIP) failed: errno ${koffi.errno()}`);
const tunl0 = TunDevice.open({ name: 'tunl0', mtu: Number(process.argv[2] ?? 1480) });
const driver = new TunDriver(0);
// poll() needs only the descriptor.
const rawDevice = { fd } as TunDevice;
const packet = Buffer.alloc(65536);
const frame = new Uint8Array(65536 + VNET_HDR_LEN);
let running = true;
process.stdin.resume();
process.stdin.on('end', () => (running = false));
process.stdout.write('ready\n');

function pump(): void {
  driver.wait([rawDevice, tunl0], 50);
  for (let n = rawReceive(fd, packet); n !== null; n = rawReceive(fd, packet)) {
    const outer = (packet[0]! & 0xf) * 4;
    if (n <= outer) continue;
    // A plain virtio_net_hdr (zeros): the inner packet's checksums are complete.
    frame.fill(0, 0, VNET_HDR_LEN);
    frame.set(packet.subarray(outer, n), VNET_HDR_LEN);
    tunl0.write(frame, VNET_HDR_LEN + n - outer);
  }
  // Nothing is routed out through tunl0 (the VIP is a local address): drain what the kernel sends.
  while (tunl0.read(frame) > 0);
  if (running) setImmediate(pump);
  else tunl0.close();
}
pump();
