// A real Prometheus server (Debian's) scrapes a real lvsd --http on loopback every second; its query
// API then returns node_exporter's node_ipvs_backend_weight with the labels Grafana panels select on.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { removeDir, runLvsadmBinary, spawnDaemon, tempDir } from '../cli/daemon-harness.js';
import type { SpawnedDaemon } from '../cli/daemon-harness.js';
import { fetchText, freePort } from '../http/helpers.js';

const HAVE_PROMETHEUS = spawnSync('prometheus', ['--version'], { stdio: 'ignore' }).status === 0;
const PROMETHEUS_SKIP = HAVE_PROMETHEUS
  ? false
  : "prometheus not installed (scripts/setup.sh installs Debian's prometheus)";
const SCRAPE_DEADLINE_MS = 60_000;

interface Series {
  metric: Record<string, string>;
  value: [number, string];
}

/** Asks Prometheus until `query` returns `count` series (bounded by SCRAPE_DEADLINE_MS). */
async function querySeries(api: string, query: string, count: number): Promise<Series[]> {
  const url = `${api}/api/v1/query?query=${encodeURIComponent(query)}`;
  let last = '';
  for (const end = Date.now() + SCRAPE_DEADLINE_MS; Date.now() < end;) {
    try {
      const reply = await fetchText(url);
      last = reply.body;
      if (reply.status === 200) {
        const result = (JSON.parse(reply.body) as { data: { result: Series[] } }).data.result;
        if (result.length === count) return result;
      }
    } catch (err) {
      last = String(err); // Prometheus still starting
    }
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
  throw new Error(`${query}: no ${count} series within ${SCRAPE_DEADLINE_MS} ms; last answer: ${last}`);
}

test(
  'Prometheus scrapes lvsd: node_ipvs_backend_weight with the right labels',
  { skip: PROMETHEUS_SKIP },
  async () => {
    const dir = await tempDir('lvsd-prom-');
    let daemon: SpawnedDaemon | null = null;
    let prometheus: ReturnType<typeof spawn> | null = null;
    let prometheusLog = '';
    try {
      const lvsdPort = await freePort();
      daemon = await spawnDaemon(dir, join(dir, 'state'), {
        args: ['--http', `127.0.0.1:${lvsdPort}`],
        ready: 'http: serving',
      });
      const env = { LVSD_SOCKET: daemon.socketPath };
      for (const args of [
        ['-A', '-t', '198.18.0.1:80', '-s', 'rr'],
        ['-a', '-t', '198.18.0.1:80', '-r', '198.18.1.11:80', '-m', '-w', '3'],
        ['-a', '-t', '198.18.0.1:80', '-r', '198.18.1.12:8080', '-m', '-w', '1'],
        ['-A', '-f', '23', '-s', 'wlc'],
        ['-a', '-f', '23', '-r', '198.18.1.13', '-m', '-w', '5'],
      ]) {
        assert.equal((await runLvsadmBinary(args, env)).code, 0, args.join(' '));
      }

      const promPort = await freePort();
      const config = join(dir, 'prometheus.yml');
      await writeFile(
        config,
        [
          'global:',
          '  scrape_interval: 1s',
          '  scrape_timeout: 1s',
          'scrape_configs:',
          '  - job_name: lvsd',
          '    static_configs:',
          `      - targets: ['127.0.0.1:${lvsdPort}']`,
          '',
        ].join('\n'),
      );
      prometheus = spawn(
        'prometheus',
        [
          `--config.file=${config}`,
          `--storage.tsdb.path=${join(dir, 'data')}`,
          `--web.listen-address=127.0.0.1:${promPort}`,
          '--log.level=warn',
        ],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      prometheus.stderr!.setEncoding('utf8').on('data', (chunk: string) => (prometheusLog += chunk));
      const api = `http://127.0.0.1:${promPort}`;
      const instance = `127.0.0.1:${lvsdPort}`;

      const up = await querySeries(api, 'up{job="lvsd"} == 1', 1);
      assert.equal(up[0]!.metric.instance, instance);

      const weights = await querySeries(api, 'node_ipvs_backend_weight', 3);
      // Prometheus drops empty labels: local_mark="" and the fwmark service's local_address="".
      const seen = weights
        .map(({ metric, value }): Record<string, string> => ({ ...metric, value: value[1] }))
        .sort((x, y) => x.remote_address!.localeCompare(y.remote_address!));
      const common = { __name__: 'node_ipvs_backend_weight', job: 'lvsd', instance };
      assert.deepEqual(seen, [
        {
          ...common,
          local_address: '198.18.0.1',
          local_port: '80',
          proto: 'TCP',
          remote_address: '198.18.1.11',
          remote_port: '80',
          value: '3',
        },
        {
          ...common,
          local_address: '198.18.0.1',
          local_port: '80',
          proto: 'TCP',
          remote_address: '198.18.1.12',
          remote_port: '8080',
          value: '1',
        },
        {
          ...common,
          local_mark: '00000017',
          local_port: '0',
          proto: 'FWM',
          remote_address: '198.18.1.13',
          remote_port: '0',
          value: '5',
        },
      ]);
      // A panel's selector, as written for node_exporter's series.
      const selected = await querySeries(
        api,
        'sum(node_ipvs_backend_weight{local_address="198.18.0.1",local_port="80",proto="TCP"})',
        1,
      );
      assert.equal(selected[0]!.value[1], '4');
      assert.equal(await daemon.stop(), 0);
    } catch (err) {
      throw new Error(`${(err as Error).message}\nprometheus said:\n${prometheusLog}`, { cause: err });
    } finally {
      if (prometheus && prometheus.exitCode === null) {
        prometheus.kill('SIGTERM');
        const timer = setTimeout(() => prometheus!.kill('SIGKILL'), 10_000);
        await once(prometheus, 'exit');
        clearTimeout(timer);
      }
      await daemon?.stop();
      await removeDir(dir);
    }
  },
);
