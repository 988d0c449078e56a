// Bulk throughput and connection rate through lvsd versus the kernel's own NAT (nftables
// `dnat to numgen inc mod 2 map`), in the namespace lab. Every load is bounded in time.
// Run as root: node dist/src/lab/bench.js [seconds]

import { once } from 'node:events';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildLab, teardownOnSignals, type Lab } from './lab.js';

const LVSD = fileURLToPath(new URL('../bin/lvsd.js', import.meta.url));
const LVSADM = fileURLToPath(new URL('../bin/lvsadm.js', import.meta.url));
const seconds = Math.min(Math.max(Number(process.argv[2] ?? 5), 1), 30);

interface Figures {
  upMbps: number;
  downMbps: number;
  connPerSec: number;
}

function iperf(lab: Lab, reverse: boolean): number {
  const args = ['iperf3', '-c', lab.addr.vip, '-t', `${seconds}`, '-J', ...(reverse ? ['-R'] : [])];
  const result = JSON.parse(lab.run(lab.ns.client, args, { timeoutMs: (seconds + 20) * 1000 })) as {
    end: { sum_received: { bits_per_second: number } };
  };
  return Math.round(result.end.sum_received.bits_per_second / 1e6);
}

function connectionRate(lab: Lab): number {
  const out = lab.run(
    lab.ns.client,
    [
      'wrk',
      '-t',
      '2',
      '-c',
      '100',
      '-d',
      `${seconds}s`,
      '-H',
      'Connection: close',
      `http://${lab.addr.vip}/`,
    ],
    { timeoutMs: (seconds + 20) * 1000 },
  );
  return Math.round(Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1] ?? 0));
}

function measure(lab: Lab): Figures {
  return { upMbps: iperf(lab, false), downMbps: iperf(lab, true), connPerSec: connectionRate(lab) };
}

async function throughLvsd(lab: Lab): Promise<Figures> {
  const socket = join(lab.tmpDir, 'lvsd.sock');
  const stateDir = join(lab.tmpDir, 'state');
  mkdirSync(stateDir);
  const lvsd = lab.spawn(
    lab.ns.director,
    [process.execPath, LVSD, '--socket', socket, '--state-dir', stateDir],
    {
      stdio: 'inherit',
    },
  );
  try {
    for (let i = 0; i < 200 && !existsSync(socket); i++)
      await new Promise((resolve) => setTimeout(resolve, 50));
    const adm = (args: string) =>
      lab.run(lab.ns.director, [process.execPath, LVSADM, '--socket', socket, ...args.split(' ')]);
    adm(`-A -t ${lab.addr.vip}:80 -s rr`);
    // iperf3's control and data connections must meet on one server.
    adm(`-A -t ${lab.addr.vip}:5201 -s rr -p 60`);
    for (const rs of lab.addr.realServers) adm(`-a -t ${lab.addr.vip}:80 -r ${rs}:80 -m`);
    adm(`-a -t ${lab.addr.vip}:5201 -r ${lab.addr.realServers[0]}:5201 -m`);
    return measure(lab);
  } finally {
    const exited = once(lvsd, 'exit');
    lvsd.kill('SIGTERM');
    await exited;
  }
}

function throughKernelNat(lab: Lab): Figures {
  const [rs1, rs2] = lab.addr.realServers;
  const ruleset = `table ip lvsbench {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    ip daddr ${lab.addr.vip} tcp dport 80 dnat to numgen inc mod 2 map { 0 : ${rs1}, 1 : ${rs2} }
    ip daddr ${lab.addr.vip} tcp dport 5201 dnat to ${rs1}
  }
}
`;
  lab.run(lab.ns.director, ['sysctl', '-qw', 'net.ipv4.ip_forward=1']);
  lab.run(lab.ns.director, ['nft', '-f', '-'], { input: ruleset });
  try {
    return measure(lab);
  } finally {
    lab.run(lab.ns.director, ['nft', 'delete', 'table', 'ip', 'lvsbench']);
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) {
    process.stderr.write('the lab benchmark needs root (network namespaces)\n');
    process.exitCode = 1;
    return;
  }
  const lab = buildLab({ prefix: 'lvsnatbench' });
  teardownOnSignals(lab);
  try {
    lab.spawn(lab.ns.realServers[0]!, ['iperf3', '-s']);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const lvsd = await throughLvsd(lab);
    const kernel = throughKernelNat(lab);
    const row = (name: string, f: Figures) =>
      `${name.padEnd(26)} ${String(f.upMbps).padStart(8)} ${String(f.downMbps).padStart(8)} ${String(f.connPerSec).padStart(9)}`;
    process.stdout.write(
      `${'path'.padEnd(26)} ${'up Mb/s'.padStart(8)} ${'down'.padStart(8)} ${'conn/s'.padStart(9)}   (${seconds} s each)\n` +
        `${row('lvsd (TUN + worker)', lvsd)}\n${row('kernel nftables dnat', kernel)}\n`,
    );
  } finally {
    lab.teardown();
  }
}

await main();
