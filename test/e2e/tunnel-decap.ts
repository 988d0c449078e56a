// Run inside a real server's namespace by tunnel.test for the tunnel drivers the kernel lacks
// (CONFIG_NET_IPIP, CONFIG_NET_IPGRE_DEMUX and CONFIG_NET_FOU unset, as on this project's
// machines): it stands in for those drivers and nothing more. Arguments name what to stand in
// for: `ipip`, `gre`, `fou PORT`. It takes IPIP (protocol 4), GRE (47) and GUE (UDP to PORT)
// packets from raw sockets, which also keeps the kernel from answering them with "protocol
// unreachable" (for GUE a UDP socket bound to PORT does that), checks them as the drivers do
// (test/helpers/tunnels.ts: a bad GRE or UDP checksum is dropped), and hands the inner packet,
// unchanged, to a TUN device named as the kernel's fallback device: tunl0 for ipip and GUE (fou
// hands GUE's IPv4 to ipip), gre0 for gre. The real server's stack then receives it there exactly
// as from the kernel: the VIP on the device, rp_filter and arp sysctls as operators set them,
// nginx answering the client directly.
//
// Prints "ready", then runs until stdin closes; a line "stats" on stdin is answered with one line
// of JSON counting the packets handed over by kind ("gre+csum" for a checksummed one) and the
// packets dropped by reason.

import { createSocket } from 'node:dgram';
import koffi from 'koffi';
import { rawReceive } from '../../src/health/sockets.js';
import { TunDevice, TunDriver, VNET_HDR_LEN } from '../../src/dataplane/tun.js';
import { decapsulate } from '../helpers/tunnels.js';

const AF_INET = 2;
const SOCK_RAW = 3;
const SOCK_NONBLOCK = 0o4000;
const PROTOCOLS = { ipip: 4, gre: 47, fou: 17 } as const;
type Driver = keyof typeof PROTOCOLS;

const args = process.argv.slice(2);
const drivers = args.filter((a): a is Driver => a in PROTOCOLS);
const guePort = drivers.includes('fou') ? Number(args[args.indexOf('fou') + 1]) : 0;
// fou delivers into the ipip driver's tunl0: a stand-in for one needs the stand-in for the other.
if (drivers.includes('fou') && !drivers.includes('ipip'))
  throw new Error('a stand-in for fou needs the stand-in for ipip (tunl0)');

const socket = koffi.load('libc.so.6').func('int socket(int domain, int type, int protocol)');
const raw = drivers.map((driver) => {
  const fd = socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK, PROTOCOLS[driver]) as number;
  if (fd < 0) throw new Error(`socket(protocol ${PROTOCOLS[driver]}) failed: errno ${koffi.errno()}`);
  return fd;
});
if (guePort)
  createSocket('udp4')
    .on('message', () => {})
    .bind(guePort);
const devices = {
  tunl0: drivers.includes('ipip') ? TunDevice.open({ name: 'tunl0', mtu: 1480 }) : null,
  gre0: drivers.includes('gre') ? TunDevice.open({ name: 'gre0', mtu: 1476 }) : null,
};
const open = [devices.tunl0, devices.gre0].filter((d): d is TunDevice => d !== null);
const driver = new TunDriver(0);
// poll() needs only the descriptor.
const waitables = [...raw.map((fd) => ({ fd }) as TunDevice), ...open];
const counts: Record<string, number> = {};
const count = (what: string): void => void (counts[what] = (counts[what] ?? 0) + 1);

const packet = Buffer.alloc(65536);
const frame = new Uint8Array(65536 + VNET_HDR_LEN);
let running = true;
process.stdin.on('data', (data) => {
  if (data.toString().includes('stats')) process.stdout.write(`${JSON.stringify(counts)}\n`);
});
process.stdin.on('end', () => (running = false));
process.stdout.write('ready\n');

function pump(): void {
  driver.wait(waitables, 50);
  for (const fd of raw) {
    for (let n = rawReceive(fd, packet); n !== null; n = rawReceive(fd, packet)) {
      const found = decapsulate(packet.subarray(0, n), guePort);
      // Other UDP traffic is not GUE's: the kernel's fou would not see it either.
      if (found === 'udp port') continue;
      if (typeof found === 'string') {
        count(found);
        continue;
      }
      count(found.checksummed ? `${found.kind}+csum` : found.kind);
      // A plain virtio_net_hdr (zeros): the inner packet's checksums are complete.
      frame.fill(0, 0, VNET_HDR_LEN);
      frame.set(found.inner, VNET_HDR_LEN);
      (found.kind === 'gre' ? devices.gre0 : devices.tunl0)!.write(frame, VNET_HDR_LEN + found.inner.length);
    }
  }
  // Nothing is routed out through the devices (the VIP is a local address): drain what the kernel sends.
  for (const device of open) while (device.read(frame) > 0);
  if (running) setImmediate(pump);
  else {
    for (const device of open) device.close();
    process.exit(0);
  }
}
pump();
