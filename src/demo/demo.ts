// `lvsd demo`: the seed tutorial's LVS-NAT lab, built in network namespaces and driven with the
// tutorial's own ipvsadm commands through lvsadm, so a newcomer sees the director at work.

import { execFileSync, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildLab, teardownOnSignals, type Lab } from '../lab/lab.js';

const LVSD = fileURLToPath(new URL('../bin/lvsd.js', import.meta.url));
const LVSADM = fileURLToPath(new URL('../bin/lvsadm.js', import.meta.url));
const TOOLS: [string, string][] = [
  ['ip', 'iproute2'],
  ['nft', 'nftables'],
  ['nginx', 'nginx-light'],
  ['curl', 'curl'],
];

function missingPackages(): string[] {
  return TOOLS.filter(([tool]) => {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
      return false;
    } catch {
      return true;
    }
  }).map(([, pkg]) => pkg);
}

function say(text: string): void {
  process.stdout.write(`${text}\n`);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function waitForSocket(path: string, lvsd: ChildProcess, logPath: string): Promise<void> {
  for (let waited = 0; waited < 15_000; waited += 100) {
    if (existsSync(path)) return;
    if (lvsd.exitCode !== null) break;
    await sleep(100);
  }
  throw new Error(`lvsd did not start; its log is ${logPath}`);
}

async function stopLvsd(lvsd: ChildProcess): Promise<void> {
  if (lvsd.exitCode !== null) return;
  const exited = new Promise((resolve) => lvsd.once('exit', resolve));
  lvsd.kill('SIGTERM');
  await Promise.race([exited, sleep(10_000)]);
}

export async function runDemo(argv: string[]): Promise<number> {
  const keep = argv.includes('--keep');
  const unknown = argv.filter((a) => a !== '--keep');
  if (unknown.length > 0) {
    process.stderr.write(`lvsd demo: unknown argument ${unknown[0]} (usage: lvsd demo [--keep])\n`);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write(
      'lvsd demo needs root: it creates network namespaces, a TUN device, routes and nftables rules.\n',
    );
    return 1;
  }
  const missing = missingPackages();
  if (missing.length > 0) {
    process.stderr.write(`lvsd demo needs: apt-get install -y ${missing.join(' ')}\n`);
    return 1;
  }

  say('Building the lab: client, director (public pub0 + internal br0), two nginx real servers ...');
  const lab = buildLab({ prefix: 'lvsdemo' });
  const untrap = teardownOnSignals(lab);
  let lvsd: ChildProcess | null = null;
  try {
    const stateDir = join(lab.tmpDir, 'state');
    const socket = join(lab.tmpDir, 'lvsd.sock');
    const logPath = join(lab.tmpDir, 'lvsd.log');
    mkdirSync(stateDir, { recursive: true });
    describeLab(lab);

    const log = createWriteStream(logPath);
    lvsd = lab.spawn(lab.ns.director, [process.execPath, LVSD, '--socket', socket, '--state-dir', stateDir], {
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    lvsd.stderr?.pipe(log);
    await waitForSocket(socket, lvsd, logPath);
    say(`\nlvsd is running in the director (log: ${logPath}). The seed tutorial's commands:`);

    const vip = `${lab.addr.vip}:80`;
    const lvsadm = (...args: string[]): void => {
      say(`\ndirector# ipvsadm ${args.join(' ')}`);
      const out = lab.run(lab.ns.director, [process.execPath, LVSADM, '--socket', socket, ...args]);
      if (out) process.stdout.write(out);
    };
    lvsadm('-A', '-t', vip, '-s', 'rr');
    for (const rip of lab.addr.realServers) lvsadm('-a', '-t', vip, '-r', rip, '-m');
    lvsadm('-Ln');

    for (let i = 0; i < 4; i++) {
      say(`\nclient$ curl http://${lab.addr.vip}/`);
      process.stdout.write(
        lab.run(lab.ns.client, ['curl', '-s', '--max-time', '5', `http://${lab.addr.vip}/`]),
      );
    }
    say('\nThe real servers logged the client as it is (only the destination was rewritten):');
    lab.addr.realServers.forEach((rip, i) => {
      for (const line of lab.accessLog(i)) say(`  ${rip}: ${line}`);
    });
    lvsadm('-Ln');
    lvsadm('-Lnc');
    lvsadm('-Ln', '--stats');

    if (!keep) return 0;
    untrap();
    say(`\nThe lab stays up until you press Ctrl-C. Try:
  ip netns exec ${lab.ns.client} curl http://${lab.addr.vip}/
  ip netns exec ${lab.ns.director} ${process.execPath} ${LVSADM} --socket ${socket} -Lnc
  ip netns exec ${lab.ns.director} ${process.execPath} ${LVSADM} --socket ${socket} -e -t ${vip} -r ${lab.addr.realServers[0]}:80 -m -w 3`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
    return 0;
  } catch (error) {
    process.stderr.write(`lvsd demo: ${(error as Error).message}\n`);
    return 1;
  } finally {
    if (lvsd) await stopLvsd(lvsd);
    lab.teardown();
    untrap();
  }
}

function describeLab(lab: Lab): void {
  say(`  client    ${lab.ns.client}: ${lab.addr.client}, default gateway ${lab.addr.vip}`);
  say(`  director  ${lab.ns.director}: VIP ${lab.addr.vip} (its own public address), DIP ${lab.addr.dip}`);
  lab.addr.realServers.forEach((rip, i) => {
    say(`  rs${i + 1}       ${lab.ns.realServers[i]}: ${rip}, default gateway ${lab.addr.dip}, nginx`);
  });
}
