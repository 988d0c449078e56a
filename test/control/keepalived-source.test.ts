// KeepalivedSource over an in-process director, an in-memory keepalived.conf and fake checkers on
// a virtual clock: what `-Ln` would list as checks fail and recover, the sorry server following
// the quorum, inhibit_on_failure, reloads that keep health and drains, refused keywords.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../src/core/clock.js';
import { Director } from '../../src/core/director.js';
import { formatAddr } from '../../src/core/inet.js';
import type { ControlOp } from '../../src/core/ops.js';
import { InProcessEngine } from '../../src/control/in-process-engine.js';
import { KeepalivedConfError, KeepalivedSource } from '../../src/control/keepalived-source.js';
import { ControlService } from '../../src/control/service.js';
import type { Checker, CheckResult } from '../../src/health/checker.js';
import type { CheckerConfig } from '../../src/health/config.js';
import type { NotifyFifo } from '../../src/health/fifo.js';
import { readKeepalivedConf } from '../../src/keepalived/read.js';
import { VirtualTime } from '../health/virtual-time.js';
import { fakeFiles } from '../keepalived/fake-files.js';

const FILE = '/etc/keepalived/keepalived.conf';

function conf(body: string, vsExtra = ''): string {
  return `virtual_server 198.18.0.1 80 {
    delay_loop 1
    lb_algo rr
    protocol TCP
    ${vsExtra}
    ${body}
}
`;
}

function realServer(addr: string, weight: number, extra = ''): string {
  return `real_server ${addr} 80 {
        weight ${weight}
        ${extra}
        TCP_CHECK {
            connect_timeout 1
            retry 0
        }
    }`;
}

/** An engine that remembers every real server the scheduler could pick after any operation. */
class WatchedEngine extends InProcessEngine {
  readonly everScheduled = new Set<string>();

  constructor(private readonly watched: Director) {
    super(watched);
  }

  override async execute(op: ControlOp): Promise<void> {
    await super.execute(op);
    for (const svc of this.watched.snapshot({ connections: false }).services)
      for (const d of svc.dests) if (d.scheduled) this.everScheduled.add(`${formatAddr(d.addr)}:${d.port}`);
  }
}

/** A lvsd run from `text`, whose checks pass for the addresses in `healthy`. */
async function harness(text: string) {
  const started: string[][] = [];
  const files: Record<string, string> = { [FILE]: text };
  const time = new VirtualTime();
  const healthy = new Set<string>(['198.18.1.11', '198.18.1.12']);
  /** What a misc_dynamic script asks for (exit status - 2); 'configured' for exit 0. */
  let miscWeight: number | 'configured' = 'configured';
  const logs: string[] = [];
  /** The fake notify FIFOs: what was written to each path, and which opens fail. */
  const fifos = {
    lines: new Map<string, string[]>(),
    open: new Set<string>(),
    unopenable: new Set<string>(),
  };
  const openFifo = (path: string): NotifyFifo => {
    if (fifos.unopenable.has(path)) throw new Error(`cannot make the notify FIFO ${path}: EACCES`);
    fifos.open.add(path);
    if (!fifos.lines.has(path)) fifos.lines.set(path, []);
    return {
      path,
      write: (line) => {
        assert.ok(fifos.open.has(path), 'written while open');
        fifos.lines.get(path)!.push(line);
      },
      close: () => fifos.open.delete(path),
    };
  };
  const createChecker = (config: CheckerConfig): Checker => {
    const addr = 'target' in config ? formatAddr(config.target.addr) : '';
    return {
      kind: config.kind,
      timeoutMs: config.connectTimeoutMs,
      check: async (): Promise<CheckResult> =>
        config.kind === 'MISC_CHECK'
          ? { ok: true, code: 'PROCOK', reason: 'exit status 7', durationMs: 0, weight: miscWeight }
          : healthy.has(addr)
            ? { ok: true, code: 'L4OK', reason: 'connected', durationMs: 0 }
            : { ok: false, code: 'L4CON', reason: 'connection refused', durationMs: 0 },
    };
  };
  const source = new KeepalivedSource({
    file: FILE,
    read: () => readKeepalivedConf(fakeFiles(files), FILE, { configId: 'lvsd' }),
    log: (_level, line) => logs.push(line),
    monitor: { clock: time.clock, timers: time, random: () => 0, createChecker },
    scripts: { run: (script) => started.push(script.argv) },
    openFifo,
  });
  const engine = new WatchedEngine(new Director({ clock: new ManualClock(), connCapacity: 16 }));
  const service = new ControlService(engine, { annotateSnapshot: (snapshot) => source.annotate(snapshot) });
  await source.start(service);
  /** Real servers in scheduling, as `-Ln` lists them: "addr:port weight". */
  const listed = async () => {
    const snapshot = await service.snapshot({ connections: false });
    return snapshot.services
      .flatMap((s) =>
        s.dests.filter((d) => d.scheduled).map((d) => `${formatAddr(d.addr)}:${d.port} ${d.weight}`),
      )
      .sort();
  };
  const advance = async (ms: number) => {
    await time.advance(ms);
    await source.settled();
  };
  const reload = async (next: string) => {
    files[FILE] = next;
    await source.reload(service);
  };
  const setMiscWeight = (weight: number | 'configured') => (miscWeight = weight);
  return { source, service, engine, fifos, healthy, listed, advance, reload, logs, setMiscWeight, started };
}

describe('KeepalivedSource', () => {
  it('takes a failed real server out of scheduling and brings it back when its check passes', async () => {
    const h = await harness(conf(realServer('198.18.1.11', 2) + realServer('198.18.1.12', 1)));
    await h.advance(2000);
    assert.deepEqual(await h.listed(), ['198.18.1.11:80 2', '198.18.1.12:80 1']);
    h.healthy.delete('198.18.1.11');
    await h.advance(2000);
    assert.deepEqual(await h.listed(), ['198.18.1.12:80 1']);
    assert.ok(h.logs.some((l) => /^RS \[198\.18\.1\.11\]:tcp:80 .* DOWN/.test(l)));
    const failed = (await h.service.snapshot({ connections: false })).services[0]!.dests.find(
      (d) => formatAddr(d.addr) === '198.18.1.11',
    )!;
    assert.equal(failed.health, 'down');
    assert.equal(failed.checks?.alive, false);
    assert.deepEqual(
      failed.checks?.checkers.map((c) => [c.kind, c.up, c.last?.code]),
      [['TCP_CHECK', false, 'L4CON']],
    );
    assert.equal(failed.checks?.lastChange?.up, false);
    assert.match(failed.checks?.lastChange?.reason ?? '', /TCP_CHECK L4CON connection refused/);
    h.healthy.add('198.18.1.11');
    await h.advance(2000);
    assert.deepEqual(await h.listed(), ['198.18.1.11:80 2', '198.18.1.12:80 1']);
    await h.source.close();
  });

  it('never lets the scheduler pick an alpha server before its first successful check, at start or reload', async () => {
    const h = await harness(
      conf(
        realServer('198.18.1.11', 1, 'alpha') + realServer('198.18.1.12', 1),
        'sorry_server 198.18.1.99 80',
      ),
    );
    h.healthy.delete('198.18.1.11');
    await h.advance(3000);
    assert.deepEqual(await h.listed(), ['198.18.1.12:80 1']);
    await h.reload(
      conf(
        realServer('198.18.1.11', 1, 'alpha') +
          realServer('198.18.1.12', 1) +
          realServer('198.18.1.13', 1, 'alpha'),
        'sorry_server 198.18.1.99 80',
      ),
    );
    await h.advance(3000);
    assert.deepEqual(await h.listed(), ['198.18.1.12:80 1']);
    // Neither failed alpha server, nor the sorry server of a service with its quorum, ever was.
    assert.deepEqual([...h.engine.everScheduled].sort(), ['198.18.1.12:80']);
    h.healthy.add('198.18.1.11');
    await h.advance(2000);
    assert.deepEqual(await h.listed(), ['198.18.1.11:80 1', '198.18.1.12:80 1']);
    await h.source.close();
  });

  it('keeps a failed inhibit_on_failure server at weight 0', async () => {
    const h = await harness(
      conf(realServer('198.18.1.11', 2, 'inhibit_on_failure') + realServer('198.18.1.12', 1)),
    );
    h.healthy.delete('198.18.1.11');
    await h.advance(2000);
    assert.deepEqual(await h.listed(), ['198.18.1.11:80 0', '198.18.1.12:80 1']);
    await h.source.close();
  });

  it('brings the sorry server in when the quorum is lost and takes it out when it is back', async () => {
    const h = await harness(conf(realServer('198.18.1.11', 1), 'sorry_server 198.18.1.99 80'));
    await h.advance(2000);
    assert.deepEqual(await h.listed(), ['198.18.1.11:80 1']);
    h.healthy.delete('198.18.1.11');
    await h.advance(2000);
    assert.deepEqual(await h.listed(), ['198.18.1.99:80 1']);
    h.healthy.add('198.18.1.11');
    await h.advance(2000);
    assert.deepEqual(await h.listed(), ['198.18.1.11:80 1']);
    await h.source.close();
  });

  it('reloads: a failed server stays out, a weight change applies, a drain survives, a broken file changes nothing', async () => {
    const h = await harness(conf(realServer('198.18.1.11', 1) + realServer('198.18.1.12', 1)));
    await h.advance(2000);
    h.healthy.delete('198.18.1.11');
    await h.advance(2000);
    const key = (await h.service.snapshot({ connections: false })).services[0]!.key;
    const rs2 = (await h.service.snapshot({ connections: false })).services[0]!.dests.find(
      (d) => formatAddr(d.addr) === '198.18.1.12',
    )!;
    await h.service.execute({
      op: 'set-dest-runtime',
      key,
      addr: rs2.addr,
      port: 80,
      change: { admin: 'drain' },
    });
    await h.reload(conf(realServer('198.18.1.11', 4) + realServer('198.18.1.12', 3)));
    assert.deepEqual(await h.listed(), ['198.18.1.12:80 0']);
    await h.reload(conf(realServer('198.18.1.11', 5) + 'real_server {'));
    assert.ok(h.logs.some((l) => /reload of .* refused: nothing was changed/.test(l)));
    h.healthy.add('198.18.1.11');
    await h.advance(2000);
    assert.deepEqual(await h.listed(), ['198.18.1.11:80 4', '198.18.1.12:80 0']);
    await h.source.close();
  });

  it('applies misc_dynamic weights as the dynamic weight, below an operator weight', async () => {
    const misc = `real_server 198.18.1.11 80 {
        weight 2
        MISC_CHECK {
            misc_path "/usr/local/bin/weigh"
            misc_dynamic
        }
    }`;
    const h = await harness(conf(misc));
    h.setMiscWeight(5);
    await h.advance(2000);
    assert.deepEqual(await h.listed(), ['198.18.1.11:80 5']);
    const key = (await h.service.snapshot({ connections: false })).services[0]!.key;
    const addr = (await h.service.snapshot({ connections: false })).services[0]!.dests[0]!.addr;
    await h.service.execute({ op: 'set-dest-runtime', key, addr, port: 80, change: { operatorWeight: 9 } });
    assert.deepEqual(await h.listed(), ['198.18.1.11:80 9']);
    await h.service.execute({
      op: 'set-dest-runtime',
      key,
      addr,
      port: 80,
      change: { operatorWeight: null },
    });
    h.setMiscWeight('configured');
    await h.advance(2000);
    assert.deepEqual(await h.listed(), ['198.18.1.11:80 2']);
    await h.source.close();
  });

  it('runs notify_up/notify_down and quorum_up/quorum_down with their words, and at shutdown with omega', async () => {
    const scripts = 'notify_up "/usr/local/bin/rs up"\n notify_down "/usr/local/bin/rs down"';
    const h = await harness(
      conf(
        realServer('198.18.1.11', 1, scripts),
        'quorum_up "/usr/local/bin/q up"\n quorum_down /usr/local/bin/qd\n omega',
      ),
    );
    await h.advance(2000);
    assert.deepEqual(h.started, []);
    h.healthy.delete('198.18.1.11');
    await h.advance(2000);
    assert.deepEqual(h.started, [['/usr/local/bin/rs', 'down'], ['/usr/local/bin/qd']]);
    h.healthy.add('198.18.1.11');
    await h.advance(2000);
    assert.deepEqual(h.started.slice(2), [
      ['/usr/local/bin/rs', 'up'],
      ['/usr/local/bin/q', 'up'],
    ]);
    await h.source.close();
    assert.deepEqual(h.started.slice(4), [['/usr/local/bin/rs', 'down'], ['/usr/local/bin/qd']]);
  });

  it("writes keepalived's RS and VS lines to notify_fifo and lvs_notify_fifo, starting their scripts with the path", async () => {
    const fifos = (notify: string, lvs: string) =>
      `global_defs {\n notify_fifo ${notify}\n notify_fifo_script "/bin/reader -v"\n lvs_notify_fifo ${lvs}\n}\n`;
    const body = conf(realServer('198.18.1.11', 1) + realServer('198.18.1.12', 1), 'quorum 2');
    const h = await harness(fifos('/run/all.fifo', '/run/lvs.fifo') + body);
    assert.deepEqual(h.started, [['/bin/reader', '-v', '/run/all.fifo']]);
    await h.advance(2000);
    h.healthy.delete('198.18.1.11');
    await h.advance(2000);
    h.healthy.add('198.18.1.11');
    await h.advance(2000);
    const expected = [
      'RS [198.18.1.11]:tcp:80 [198.18.0.1]:tcp:80 DOWN',
      'VS [198.18.0.1]:tcp:80 DOWN',
      'RS [198.18.1.11]:tcp:80 [198.18.0.1]:tcp:80 UP',
      'VS [198.18.0.1]:tcp:80 UP',
    ];
    assert.deepEqual(h.fifos.lines.get('/run/all.fifo'), expected);
    assert.deepEqual(h.fifos.lines.get('/run/lvs.fifo'), expected);

    // A reload keeps an unchanged FIFO open and its script running; a changed one is swapped.
    await h.reload(fifos('/run/all.fifo', '/run/lvs2.fifo') + body);
    assert.deepEqual([...h.fifos.open].sort(), ['/run/all.fifo', '/run/lvs2.fifo']);
    assert.equal(h.started.length, 1);
    // One that cannot be opened refuses the reload: nothing changes.
    h.fifos.unopenable.add('/run/bad.fifo');
    await h.reload(fifos('/run/bad.fifo', '/run/lvs3.fifo') + body);
    assert.ok(h.logs.some((l) => /cannot make the notify FIFO \/run\/bad\.fifo/.test(l)));
    assert.ok(h.logs.some((l) => /reload of .* refused: nothing was changed/.test(l)));
    assert.deepEqual([...h.fifos.open].sort(), ['/run/all.fifo', '/run/lvs2.fifo']);
    await h.source.close();
    assert.deepEqual([...h.fifos.open], [], 'closed with lvsd');
  });

  it('refuses at start what it cannot carry out, naming the file or line', async () => {
    const refused = async (text: string, pattern: RegExp) =>
      assert.rejects(harness(text), (err: unknown) => {
        assert.ok(err instanceof KeepalivedConfError);
        assert.match(err.message, pattern);
        return true;
      });
    await refused(
      'global_defs {\n enable_script_security\n}\n' + conf(realServer('198.18.1.11', 1)),
      /^\/etc\/keepalived\/keepalived\.conf: enable_script_security is not supported/,
    );
    await refused(
      conf(realServer('198.18.1.11', 1, 'notify_up "/bin/true" nosuchuser-lvsd')),
      /^\/etc\/keepalived\/keepalived\.conf:\d+: notify_up user nosuchuser-lvsd: no such user/,
    );
  });
});
