// Run inside a network namespace by tun-worker.test: a WorkerEngine with a real TUN device and
// the UDP-reflecting stub director. Prints "ready", serves until stdin closes, prints its stats.

import { execFileSync } from 'node:child_process';
import { WorkerEngine } from '../../src/dataplane/worker-engine.js';

const engine = await WorkerEngine.start({
  tun: { name: 'lvs0', mtu: Number(process.argv[2] ?? 65535) },
  host: null,
  directorModule: new URL('../dataplane/stub-director.js', import.meta.url).href,
  idlePollMs: 10,
});
execFileSync('ip', ['addr', 'add', '198.18.9.1/24', 'dev', 'lvs0']);
process.stdout.write('ready\n');
process.stdin.resume();
process.stdin.on('end', () => {
  void engine.stats().then(async (stats) => {
    process.stdout.write(`${JSON.stringify(stats)}\n`);
    await engine.close();
  });
});
