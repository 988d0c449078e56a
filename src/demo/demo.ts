// `lvsd demo`: builds the namespace lab, runs lvsd in the director namespace, configures a
// round-robin NAT service with lvsadm and shows curl from the client alternating between the
// real servers, each of which sees the client's own address. `--ha` runs ha-demo.ts instead.

import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { DEFAULT_DATAPLANE } from '../dataplane/forwarding.js';
import { buildLab, teardownOnSignals } from '../lab/lab.js';
import { runHaDemo } from './ha-demo.js';

const LVSD = fileURLToPath(new URL('../bin/lvsd.js', import.meta.url));
const LVSADM = fileURLToPath(new URL('../bin/lvsadm.js', import.meta.url));

function show(ns: string, argv: string[], label: string): string {
  // lvsadm runs as node + script + --socket: print it as the command a user would type.
  const shown = argv[1] === LVSADM ? ['lvsadm', ...argv.slice(4)] : argv;
  process.stdout.write(`\n[${label}] $ ${shown.join(' ')}\n`);
  const result = spawnSync('ip', ['netns', 'exec', ns, ...argv], { encoding: 'utf8', timeout: 15_000 });
  process.stdout.write(result.stdout + result.stderr);
  if (result.status !== 0) throw new Error(`${argv.join(' ')} failed (status ${result.status})`);
  return result.stdout;
}

async function waitFor(path: string, timeoutMs: number): Promise<boolean> {
  for (const end = Date.now() + timeoutMs; Date.now() < end;) {
    if (existsSync(path)) return true;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return false;
}

export async function runDemo(argv: readonly string[]): Promise<number> {
  let keep = argv.includes('--keep');
  const ha = argv.includes('--ha');
  const unknown = argv.filter((a) => a !== '--keep' && a !== '--ha');
  if (unknown.length > 0) {
    process.stderr.write(`lvsd demo: unknown argument ${unknown[0]} (usage: lvsd demo [--keep | --ha])\n`);
    return 2;
  }
  if (keep && ha) {
    process.stderr.write(
      'lvsd demo: --ha tears its lab down at the end: --keep is for the one-director demo\n',
    );
    return 2;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write(
      'lvsd demo needs root: it creates network namespaces, a TUN device and nftables rules\n',
    );
    return 1;
  }
  if (ha) return runHaDemo();

  const lab = buildLab({ prefix: 'lvsdemo' });
  const untrap = teardownOnSignals(lab);
  const socket = join(lab.tmpDir, 'lvsd.sock');
  const stateDir = join(lab.tmpDir, 'state');
  mkdirSync(stateDir);
  const logPath = join(lab.tmpDir, 'lvsd.log');
  const log = openSync(logPath, 'a');
  const lvsd = spawn(
    'ip',
    ['netns', 'exec', lab.ns.director, process.execPath, LVSD, '--socket', socket, '--state-dir', stateDir],
    {
      stdio: ['ignore', log, log],
      detached: keep,
    },
  );
  const vip = `${lab.addr.vip}:80`;
  const adm = (args: string): string[] => [process.execPath, LVSADM, '--socket', socket, ...args.split(' ')];
  try {
    process.stdout.write(
      `lab: client ${lab.addr.client} -> director ${lab.addr.vip} (VIP) -> real servers ${lab.addr.realServers.join(', ')}\n` +
        `namespaces: ${[lab.ns.client, lab.ns.director, ...lab.ns.realServers].join(' ')}\n` +
        `director: lvsd on its default data plane, ${DEFAULT_DATAPLANE} (docs/host.md)\n`,
    );
    if (!(await waitFor(socket, 10_000)))
      throw new Error(`lvsd did not start:\n${readFileSync(logPath, 'utf8')}`);
    const director = lab.ns.director;
    show(director, adm(`-A -t ${vip} -s rr`), 'director');
    for (const rs of lab.addr.realServers) show(director, adm(`-a -t ${vip} -r ${rs}:80 -m`), 'director');
    show(director, adm('-Ln'), 'director');
    for (let i = 0; i < 4; i++) {
      show(lab.ns.client, ['curl', '-sS', '--max-time', '5', `http://${lab.addr.vip}/`], 'client');
    }
    show(director, adm('-Ln --stats'), 'director');
    show(director, adm('-Lnc'), 'director');
    if (keep) {
      untrap();
      lvsd.unref();
      const exec = (ns: string) => `ip netns exec ${ns}`;
      process.stdout.write(
        `\nThe lab stays up (lvsd pid ${lvsd.pid}, log ${logPath}). Try:\n` +
          `  ${exec(lab.ns.client)} curl http://${lab.addr.vip}/\n` +
          `  ${exec(director)} node ${LVSADM} --socket ${socket} -Lnc\n` +
          `Tear it down:\n` +
          `  kill ${lvsd.pid}; sleep 1; for ns in ${lab.ns.client} ${director} ${lab.ns.realServers.join(' ')}; do ` +
          `ip netns pids $ns | xargs -r kill; ip netns del $ns; done; rm -rf ${lab.tmpDir}\n` +
          `(the next \`lvsd demo\` also removes it)\n`,
      );
      return 0;
    }
    return 0;
  } catch (error) {
    process.stderr.write(`lvsd demo: ${(error as Error).message}\n`);
    keep = false;
    return 1;
  } finally {
    if (!keep) {
      untrap();
      // lvsd undoes its kernel changes on SIGTERM (`ip netns exec` execs it: same pid).
      if (lvsd.exitCode === null) {
        const exited = once(lvsd, 'exit');
        lvsd.kill('SIGTERM');
        await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))]);
      }
      lab.teardown();
    }
  }
}
