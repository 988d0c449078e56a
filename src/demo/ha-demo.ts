// `lvsd demo --ha`: two lvsd directors under keepalived (VRRP only, the shipped notify script),
// a client with a long download and keep-alive connections through the VIP; the backup lists
// them; the master dies; the backup takes over and the same connections carry on. It prints
// each step, the failover time and the share of connections that survived.

import {
  clientVipMac,
  buildHaLab,
  failoverFigures,
  HaTraffic,
  sha256,
  startHaPair,
  until,
} from '../lab/ha-lab.js';
import { teardownOnSignals } from '../lab/lab.js';

const CONNS = 8;
const BULK_MB = 40;
const RATE = '4M';
const CLIENT_MS = 25_000;

const say = (line: string): void => {
  process.stdout.write(`${line}\n`);
};

export async function runHaDemo(): Promise<number> {
  const lab = buildHaLab({ prefix: 'lvsdemoha', bulkFileMb: BULK_MB });
  const untrap = teardownOnSignals({ teardown: () => void lab.teardown() });
  const [a, b] = lab.directors;
  const started = Date.now();
  const at = () => `${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s`;
  try {
    say(
      'lab: client 198.18.0.2; directors a (priority 150) and b (priority 100), each running lvsd --floating-vips\n' +
        '     and keepalived -P; VRRP moves the VIP 198.18.0.1 and the real servers gateway 198.18.1.1;\n' +
        '     real servers 198.18.1.11 and .12 (nginx); VRRP adverts and connection sync on the internal LAN\n',
    );
    await startHaPair(lab, say);
    const show = (d: typeof a, args: string): void => {
      say(`\n[${d.name}] $ lvsadm ${args}`);
      process.stdout.write(d.adm(args));
    };
    // The probes' fresh connections leave a TIME_WAIT entry each: show the open ones.
    const showOpen = (d: typeof a): void => {
      say(`\n[${d.name}] $ lvsadm -Lnc | grep ESTABLISHED`);
      say(
        d
          .adm('-Lnc')
          .split('\n')
          .filter((row) => row.includes('ESTABLISHED'))
          .join('\n'),
      );
    };
    show(a, '-L --daemon');
    show(b, '-L --daemon');

    say(
      `\n${at()}  client: downloads a ${BULK_MB} MB file at ${RATE}B/s and opens ${CONNS} keep-alive connections`,
    );
    const traffic = new HaTraffic(lab, { conns: CONNS, durationMs: CLIENT_MS, rate: RATE });
    const ports = await until('the keep-alive connections are open', () => traffic.ports(CONNS));
    await until('the backup lists the connections', () => {
      const rows = b.adm('-Lnc');
      return ports.every((port) => rows.includes(`:${port} `)) ? true : undefined;
    });
    say(`${at()}  the backup has them, over connection sync (it forwards nothing yet: the VIP is on a):`);
    showOpen(b);

    await new Promise((resolve) => setTimeout(resolve, 1000));
    say(`\n${at()}  *** director a dies: kill -9 of its lvsd and keepalived, its links down ***`);
    a.crash();
    // From here on, whatever reaches the client came through b.
    const killedAt = Date.now();
    await until('director b takes the VIP over', () => (b.holdsVip() ? true : undefined));
    say(
      `${at()}  director b: VRRP MASTER after ${Date.now() - killedAt} ms, holds the VIP ` +
        `(the client now sends to ${clientVipMac(lab) === b.publicMac() ? "b's" : "a's"} MAC)`,
    );
    await until('director b runs the master sync role', () =>
      b.syncRoles().join() === 'master' ? true : undefined,
    );
    show(b, '-L --daemon');
    await until('every keep-alive connection answers through b', () =>
      traffic.allAnsweredSince(killedAt, CONNS),
    );
    say(`\n${at()}  every keep-alive connection has answered through b, on the real server it had:`);
    showOpen(b);
    const download = await traffic.download;
    if (download.status !== 0) throw new Error(`the download failed: ${download.stderr}`);
    const intact = (await sha256(traffic.downloadPath)) === (await sha256(lab.bulkFile));
    say(
      `\n${at()}  download complete: ${intact ? 'byte for byte the real server file (SHA-256 equal)' : 'CORRUPT'}`,
    );
    await traffic.clientDone;
    const figures = failoverFigures(traffic.events, killedAt, CONNS);
    say(
      `\nfailover: ${figures.failoverMs ?? 'no reply'} ms from the kill to the first reply through b; ` +
        `${figures.survived} of ${figures.conns} keep-alive connections carried on` +
        `${figures.lost.length ? ` (lost: ${figures.lost.join('; ')})` : ''}`,
    );
    return intact && figures.survived === figures.conns ? 0 : 1;
  } catch (error) {
    process.stderr.write(`lvsd demo --ha: ${(error as Error).message}\n`);
    return 1;
  } finally {
    untrap();
    await lab.teardown();
  }
}
