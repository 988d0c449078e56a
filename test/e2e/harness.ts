// Shared by the e2e tests: a lab with the real data plane running in its director namespace,
// controlled with ipvsadm-style argument lists.

import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Snapshot } from '../../src/core/ops.js';
import type { DataplaneStats } from '../../src/dataplane/messages.js';
import { buildLab, type Lab } from '../../src/lab/lab.js';

export const isRoot = process.getuid?.() === 0;
export const ROOT_SKIP = isRoot ? false : 'needs root for network namespaces';

interface Reply {
  id: number;
  ok: boolean;
  value?: unknown;
  code?: string;
  message?: string;
}

export class DirectorProcess {
  private nextId = 1;
  private readonly waiters = new Map<number, (reply: Reply) => void>();
  private readonly child: ChildProcess;
  readonly ready: Promise<void>;

  constructor(lab: Lab, stateDir: string) {
    const script = new URL('./director-process.js', import.meta.url).pathname;
    this.child = lab.spawn(lab.ns.director, [process.execPath, script, stateDir], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    this.ready = new Promise((resolve, reject) => {
      this.waiters.set(0, (reply) => (reply.ok ? resolve() : reject(new Error(reply.message))));
      this.child.once('exit', (code) => reject(new Error(`director process exited (${code})`)));
    });
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      const reply = JSON.parse(line) as Reply;
      this.waiters.get(reply.id)?.(reply);
      this.waiters.delete(reply.id);
    });
  }

  private call(request: object): Promise<unknown> {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.waiters.set(id, (reply) =>
        reply.ok
          ? resolve(reply.value)
          : reject(Object.assign(new Error(reply.message), { code: reply.code })),
      );
      this.child.stdin!.write(`${JSON.stringify({ ...request, id })}\n`);
    });
  }

  /** One ipvsadm command, e.g. adm('-A -t 198.18.0.1:80 -s rr'). */
  async adm(args: string): Promise<void> {
    await this.call({ argv: args.split(/\s+/) });
  }

  snapshot(connections = false): Promise<Snapshot> {
    return this.call({ kind: 'snapshot', connections }) as Promise<Snapshot>;
  }

  stats(): Promise<DataplaneStats> {
    return this.call({ kind: 'stats' }) as Promise<DataplaneStats>;
  }

  get closed(): boolean {
    return this.child.exitCode !== null || this.child.signalCode !== null;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    await this.call({ kind: 'close' }).catch(() => undefined);
    await exited;
  }

  kill(): void {
    this.child.kill('SIGKILL');
  }
}

/** What lvsd may change in the director namespace, as text to compare before and after. */
export function hostState(lab: Lab): string {
  const script = [
    'ip -4 rule',
    'ip -6 rule',
    'ip -4 route show table all',
    // IPv6 link-local and multicast routes come and go with address autoconfiguration.
    "ip -6 route show table all | grep -vE 'fe80::|ff00::'",
    'ip neigh show proxy',
    'nft list ruleset',
    "sysctl -a 2>/dev/null | grep -E 'ip_forward|conf.all.forwarding|send_redirects|accept_local|rp_filter|proxy_ndp'",
  ].join('; ');
  return lab.run(lab.ns.director, ['sh', '-c', script]);
}

export interface Setup {
  lab: Lab;
  /** hostState() before the data plane started. */
  stateBefore: string;
  director: DirectorProcess;
  stateDir: string;
  /** curl from the client; returns the body. */
  curl(url: string, extra?: string[]): string;
  teardown(): Promise<void>;
}

export async function setupLab(options: { bulkFileMb?: number } = {}): Promise<Setup> {
  const lab = buildLab({ prefix: 'lvse2e', bulkFileMb: options.bulkFileMb ?? 0 });
  const stateDir = mkdtempSync(join(tmpdir(), 'lvse2e-state-'));
  const stateBefore = hostState(lab);
  const director = new DirectorProcess(lab, stateDir);
  try {
    await director.ready;
  } catch (error) {
    lab.teardown();
    throw error;
  }
  return {
    lab,
    stateBefore,
    director,
    stateDir,
    curl: (url, extra = []) => lab.run(lab.ns.client, ['curl', '-sS', '--max-time', '10', ...extra, url]),
    teardown: async () => {
      try {
        await director.close();
      } finally {
        director.kill();
        lab.teardown();
        rmSync(stateDir, { recursive: true, force: true });
      }
    },
  };
}
