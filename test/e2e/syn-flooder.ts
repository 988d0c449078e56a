// Run in the client namespace by flood.test: a bounded SYN flood to VIP:80 from random sources in
// 198.18.128.0/17. It writes the SYNs into a TUN device of its own, so the namespace's kernel
// forwards them to the director as if they came from hosts behind the client; nothing leaves the lab.
// Usage: node syn-flooder.js VIP MAX_PACKETS SECONDS PACKETS_PER_SECOND; prints "flooding", then the count sent.

import { execFileSync } from 'node:child_process';
import { TunDriver } from '../../src/dataplane/tun.js';
import { buildPacket, withVnet } from '../helpers/packets.js';

const SYN = 0x02;
const [vip, maxPackets, seconds, rate] = [
  process.argv[2]!,
  Number(process.argv[3]),
  Number(process.argv[4]),
  Number(process.argv[5]),
];
const device = new TunDriver(1500).open('flood0', 0);
for (const argv of [
  ['ip', 'link', 'set', 'flood0', 'up'],
  ['ip', 'route', 'add', '198.18.128.0/17', 'dev', 'flood0'],
  ['sysctl', '-qw', 'net.ipv4.ip_forward=1'],
  ['sysctl', '-qw', 'net.ipv4.conf.all.rp_filter=0'],
  ['sysctl', '-qw', 'net.ipv4.conf.flood0.rp_filter=0'],
]) {
  execFileSync(argv[0]!, argv.slice(1));
}
process.stdout.write('flooding\n');

const start = Date.now();
let sent = 0;
// Paced in 10 ms rounds, so the rate holds whatever the machine's speed, and stops by itself.
while (sent < maxPackets && Date.now() - start < seconds * 1000) {
  const due = Math.min(maxPackets, Math.ceil(((Date.now() - start) / 1000) * rate));
  for (; sent < due; sent++) {
    const host = Math.floor(Math.random() * 0x8000);
    const src = `198.18.${128 + (host >> 8)}.${host & 0xff}`;
    const packet = withVnet(
      buildPacket({
        src,
        dst: vip,
        protocol: 'tcp',
        sport: 1024 + Math.floor(Math.random() * 64512),
        dport: 80,
        tcpFlags: SYN,
      }),
    );
    device.write(packet, packet.length);
  }
  await new Promise((resolve) => setTimeout(resolve, 10));
}
device.close();
process.stdout.write(`${sent}\n`);
